"""Matrix products: Gemm (Y = alpha * A' * B' + beta * C, optional transposes, C broadcast to
(M, N)) and MatMul (numpy matmul: 1-D operands promoted and squeezed back, batch dims
broadcast). Operands may be runtime tensors or constants (weights in flash) alike.

The templates index A, B and C through strides baked in here, so transposes and broadcasting
(stride 0) cost nothing at run time; references accumulate in float64.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from . import Op, register


def strides(shape) -> list[int]:
    return [int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape))]


# -- Gemm ------------------------------------------------------------------------------------
@register("Gemm")
class Gemm(Op):
    """Opsets 1-6: C is broadcast only with `broadcast=1`, else it must be exactly (M, N)."""
    template = "ops/gemm.c.j2"
    unidirectional = False
    accepts_activation = True  # gemm.c.j2 applies it before the store

    def parse(self):
        self.alpha = float(self.attr("alpha", 1.0))
        self.beta = float(self.attr("beta", 1.0))
        self.trans_a = int(self.attr("transA", 0)) != 0
        self.trans_b = int(self.attr("transB", 0)) != 0

    def dims(self, a_shape, b_shape, c_shape=None) -> tuple[int, int, int]:
        """-> (M, N, K), checking every operand's shape."""
        if len(a_shape) != 2 or len(b_shape) != 2:
            raise ShapeError(f"A {tuple(a_shape)} and B {tuple(b_shape)} must be 2-D")
        m, k = a_shape[::-1] if self.trans_a else a_shape
        kb, n = b_shape[::-1] if self.trans_b else b_shape
        if k != kb:
            raise ShapeError(f"inner dims differ: A' is {m}x{k}, B' is {kb}x{n}")
        if c_shape is not None:
            self.c_strides(c_shape, m, n)
        return m, n, k

    def c_strides(self, c_shape, m: int, n: int) -> tuple[int, int]:
        """Strides of C's rows and columns once broadcast to (M, N): 0 along broadcast dims."""
        broadcast = self.unidirectional or int(self.attr("broadcast", 0)) != 0
        if not broadcast and tuple(c_shape) != (m, n):
            raise ShapeError(f"C {tuple(c_shape)} must be ({m}, {n}) without broadcast=1")
        if len(c_shape) > 2:
            raise ShapeError(f"C {tuple(c_shape)} has more than 2 dims")
        cm, cn = (1,) * (2 - len(c_shape)) + tuple(c_shape)
        if cm not in (1, m) or cn not in (1, n):
            raise ShapeError(f"C {tuple(c_shape)} does not broadcast to ({m}, {n})")
        return (cn if cm == m and m > 1 else 0), (1 if cn == n and n > 1 else 0)

    def uses_c(self, c) -> bool:
        # As onnxruntime does, beta == 0 skips C altogether (even an inf/nan C).
        return c is not None and self.beta != 0.0

    def infer(self, a, b, c=None):
        m, n, _ = self.dims(a.shape, b.shape, None if c is None else c.shape)
        return [((m, n), "float32")]

    def reference(self, a, b, c=None):
        self.dims(a.shape, b.shape, None if c is None else c.shape)
        a = a.astype(np.float64).T if self.trans_a else a.astype(np.float64)
        b = b.astype(np.float64).T if self.trans_b else b.astype(np.float64)
        y = self.alpha * (a @ b)
        if self.uses_c(c):
            y = y + self.beta * np.broadcast_to(c.astype(np.float64).reshape(
                (1,) * (2 - c.ndim) + c.shape), y.shape)
        return [self.epilogue(y.astype(np.float32))]

    def macs(self, ins, outs):
        m, n, k = self.dims(ins[0].shape, ins[1].shape)
        return m * n * k

    def context(self, ins, outs):
        a, b = ins[0], ins[1]
        c = ins[2] if len(ins) > 2 else None
        m, n, k = self.dims(a.shape, b.shape, None if c is None else c.shape)
        # Element (m, k) of A' is A[k, m] when transposed: swap the strides, not the data.
        a_sm, a_sk = (1, m) if self.trans_a else (k, 1)
        b_sk, b_sn = (1, k) if self.trans_b else (n, 1)
        c_sm, c_sn = self.c_strides(c.shape, m, n) if c is not None else (0, 0)
        return {"M": m, "N": n, "K": k, "a_sm": a_sm, "a_sk": a_sk, "b_sk": b_sk, "b_sn": b_sn,
                "alpha": self.alpha, "beta": self.beta, "has_c": self.uses_c(c),
                "c_passed": c is not None, "c_sm": c_sm, "c_sn": c_sn,
                # outputs computed at once along N: each loaded A value feeds nb MACs
                "nb": next(b for b in (4, 2, 1) if n % b == 0)}


@register("Gemm", since=7)
class Gemm_7(Gemm):
    """Opset 7+: C broadcasts unidirectionally to (M, N); optional from opset 11."""
    unidirectional = True


# -- MatMul ----------------------------------------------------------------------------------
class MatMulShapes:
    """numpy matmul shape rules: batch dims of A and B broadcast, 1-D operands promoted."""

    def __init__(self, a_shape, b_shape):
        if not a_shape or not b_shape:
            raise ShapeError("MatMul operands must have rank >= 1")
        self.a = (1, *a_shape) if len(a_shape) == 1 else tuple(a_shape)
        self.b = (*b_shape, 1) if len(b_shape) == 1 else tuple(b_shape)
        self.m, self.k = self.a[-2:]
        kb, self.n = self.b[-2:]
        if self.k != kb:
            raise ShapeError(f"inner dims differ: {tuple(a_shape)} @ {tuple(b_shape)}")
        try:
            self.batch = tuple(np.broadcast_shapes(self.a[:-2], self.b[:-2]))
        except ValueError:
            raise ShapeError(f"batch dims of {tuple(a_shape)} and {tuple(b_shape)} do not "
                             "broadcast") from None
        out = [*self.batch, self.m, self.n]
        if len(b_shape) == 1:
            out.pop(-1)
        if len(a_shape) == 1:
            out.pop(-2 if len(b_shape) > 1 else -1)
        self.out = tuple(out)

    def batch_loops(self) -> list[dict]:
        """One loop per broadcast batch dim with the A and B matrix strides (0 when broadcast)."""
        nb = len(self.batch)
        a = (1,) * (nb - len(self.a[:-2])) + self.a[:-2]
        b = (1,) * (nb - len(self.b[:-2])) + self.b[:-2]
        sa = strides(a + (self.m * self.k,))[:-1]
        sb = strides(b + (self.k * self.n,))[:-1]
        loops = [{"n": d, "sa": sa[i] if a[i] > 1 else 0, "sb": sb[i] if b[i] > 1 else 0}
                 for i, d in enumerate(self.batch) if d > 1]
        return loops


@register("MatMul")
class MatMul(Op):
    """y = a @ b with numpy semantics."""
    template = "ops/matmul.c.j2"
    accepts_activation = True  # matmul.c.j2 applies it before the store

    def infer(self, a, b):
        return [(MatMulShapes(a.shape, b.shape).out, "float32")]

    def reference(self, a, b):
        MatMulShapes(a.shape, b.shape)
        return [self.epilogue(np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.float32))]

    def macs(self, ins, outs):
        s = MatMulShapes(ins[0].shape, ins[1].shape)
        return int(np.prod(s.batch, dtype=np.int64)) * s.m * s.n * s.k

    def context(self, ins, outs):
        s = MatMulShapes(ins[0].shape, ins[1].shape)
        return {"M": s.m, "N": s.n, "K": s.k, "loops": s.batch_loops()}
