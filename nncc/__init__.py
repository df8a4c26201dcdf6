"""nncc: an ahead-of-time compiler from ONNX models to portable C inference code."""

__version__ = "0.1.0"
