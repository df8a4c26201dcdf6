"""Post-training quantization (the [quantize] stage between the passes and the memory plan).

calibrate.py runs the float reference over calibration samples and records per-tensor ranges,
fixed_point.py turns real scales into integer multipliers and shifts (the formulas of TFLite and
CMSIS-NN, mirrored bit-exactly in runtime_c/nncc_fixed.h), rewrite.py turns the float IR into the
integer IR of nncc/ops/quantized.py. Without calibration data (`--calib none`), datafree.py
takes calibrate.py's place: equalize.py rescales layer pairs, estimate.py derives the ranges from
the BatchNorm statistics, and biases are corrected for the weights' rounding.
"""
