"""Frontends: model files -> IR."""
from .onnx import import_onnx, load_model, parse_input_shapes

__all__ = ["import_onnx", "load_model", "parse_input_shapes"]
