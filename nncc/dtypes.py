"""Element types: the C type nncc emits for each tensor dtype, and the value range of an integer
type, named as a dtype ("int8") or as its C type ("int8_t")."""
from __future__ import annotations

import numpy as np

CTYPES = {"float32": "float", "int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t",
          "int32": "int32_t", "int64": "int64_t"}


def int_range(name: str) -> tuple[int, int]:
    info = np.iinfo(str(name).removesuffix("_t"))
    return int(info.min), int(info.max)
