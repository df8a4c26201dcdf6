"""Import of already-quantized ONNX models onto the integer kernels of nncc/ops/quantized.py.

Two formats, as onnxruntime's quantize_static writes them: QDQ (QuantizeLinear/DequantizeLinear
pairs around float ops; also what PyTorch QAT exports) and QOperator (QLinearConv,
QLinearMatMul, com.microsoft QLinearAdd; MaxPool/Reshape/... directly on 8-bit tensors). The
frontend calls `import_quantized` when a model contains such nodes. Scales and zero points are
taken as given (no calibration):
- DQ(x_q) -> Conv / Gemm / MatMul / Add / MaxPool / AveragePool / views [-> Relu / Clip] -> Q
  becomes one QConv / QGemm / QAdd / QMaxPool / QAveragePool / QView whose output carries the
  Q's scale and zero point; a Relu / Clip between the op and its Q is the kernel's clamp. Weights
  come from DQ(int8 initializer) (per tensor, or per output channel), biases from DQ(int32).
- uint8 (QUInt8) tensors become int8 by shifting values and zero points by -128, which is
  exact (real = s * (q - zp) is unchanged), so the int8 kernels serve both. Weights must have
  zero point 0 after that shift unless q - zp still fits int8 (uint8 weights with zp 128 do).
- Requantization follows onnxruntime's QLinearConv: the multiplier s_x * s_w / s_y is formed in
  float32 as ORT does, then stored as TFLite's int32 multiplier + shift (31-bit mantissa). ORT
  rounds acc * M half to even in float; we round the exact product half away from zero: the
  two differ only within ~2^-24 of a tie, by one step (tests/quant/test_qdq_import.py).
- The graph input's QuantizeLinear becomes the int8 C input (its scale / zero point in
  report.json) and a DequantizeLinear at a graph output the int8 C output; `nncc run`
  converts (nncc.quant.quantize.host_codec) with ties away from zero where ORT rounds to even.
- Anything else (Softmax, a Sigmoid, an op whose pattern does not match, e.g. MaxPool with a
  different output scale) runs in float between a Dequantize and a Quantize node, exactly as the
  QDQ model defines it.
Refused with UnsupportedOp: per-channel activation scales, int16/uint16/4-bit/float8 types and
blocked quantization (those three in nncc/ops/qlinear.py), asymmetric int8 weights, 8-bit
tensors read by float ops.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UnsupportedOp
from ..ir import Graph, Node, QuantParams, TensorInfo, verify
from ..ops import make_op
from ..passes._util import fresh_name
from . import fixed_point as fp
from .qdq_patterns import HANDLERS

QMIN, QMAX = -128, 127


@dataclass
class ConstQ:
    """A quantized constant (a DequantizeLinear of an initializer), values in the int8 domain
    for 8-bit types (uint8 shifted by -128), zero points likewise; axis None: per tensor."""
    q: np.ndarray
    scale: np.ndarray  # float32, size 1 or the length of `axis`
    zp: np.ndarray     # int64, same size as scale
    axis: int | None

    def centered(self, axis: int) -> np.ndarray:
        """q - zp (int64), the zero point broadcast along `axis` when per channel."""
        if self.axis is None:
            return self.q - self.zp.reshape(())
        shape = [1] * self.q.ndim
        shape[axis] = -1
        return self.q - self.zp.reshape(shape)

    def real(self) -> np.ndarray:
        c = self.centered(self.axis if self.axis is not None else 0).astype(np.float32)
        if self.axis is None:
            return c * self.scale.reshape(())
        shape = [1] * self.q.ndim
        shape[self.axis] = -1
        return (c * self.scale.reshape(shape)).astype(np.float32)


def to_int8_domain(values, dtype: str) -> np.ndarray:
    v = np.asarray(values).astype(np.int64)
    return v - 128 if dtype == "uint8" else v


class QdqImporter:
    def __init__(self, src: Graph):
        self.src = src
        self.g = Graph(src.name)
        self.q: dict[str, str] = {}       # src 8-bit tensor -> int8 tensor of g
        self.dq: dict[str, str] = {}      # src float tensor = DQ(runtime) -> src 8-bit tensor
        self.cdq: dict[str, ConstQ] = {}  # src float tensor = DQ(initializer)
        self.fl: dict[str, str] = {}      # src float tensor -> float tensor of g
        self.absorbed: set[str] = set()
        self.rename: dict[str, str] = {}  # src 8-bit tensor -> graph output name it becomes

    # -- parameters ---------------------------------------------------------------------------
    def params(self, node: Node, dtype: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scale float32, zero point int8-domain) of a Q / DQ node's inputs 1 and 2."""
        s = np.asarray(self.src.const(node.inputs[1]), np.float32).ravel()
        zname = node.inputs[2] if len(node.inputs) > 2 else ""
        if zname:
            zdt = self.src.tensors[zname].dtype
            z = to_int8_domain(self.src.const(zname).ravel(), zdt)
        else:
            zdt, z = "uint8", np.full(s.size, -128, np.int64)
        if dtype is not None and zdt != dtype and zname:
            raise UnsupportedOp(f"{node.op} (node {node.name!r}): zero point {zdt} for {dtype} data")
        return s, np.broadcast_to(z, s.shape).astype(np.int64)

    def tensor_params(self, node: Node, what: str) -> tuple[float, int]:
        s, z = self.params(node)
        if s.size != 1:
            raise UnsupportedOp(f"{node.op} (node {node.name!r}): per-channel scales on {what} "
                                "(only weights may be quantized per channel)")
        if not (s[0] > 0 and np.isfinite(s[0])):
            raise UnsupportedOp(f"{node.op} (node {node.name!r}): scale {s[0]} (must be > 0)")
        return float(s[0]), int(z[0])

    def qp(self, t: str) -> QuantParams:
        return self.g.tensors[t].quant

    # -- tensors of the new graph -------------------------------------------------------------
    def new_int(self, src_name: str, shape, scale: float, zp: int) -> str:
        name = self.rename.get(src_name, src_name)
        if name in self.g.tensors:
            name = fresh_name(self.g, name)
        self.g.add_tensor(TensorInfo(name, tuple(shape), "int8",
                                     quant=QuantParams((float(np.float32(scale)),), (int(zp),))))
        self.q[src_name] = name
        return name

    def const(self, base: str, value, dtype: str) -> str:
        name = fresh_name(self.g, fresh_name(self.src, base))
        value = np.ascontiguousarray(value, dtype)
        self.g.add_tensor(TensorInfo(name, tuple(value.shape), dtype, value))
        return name

    def add(self, node: Node) -> None:
        """Add a node whose output tensors are already in g, checking them with infer()."""
        outs = make_op(node).infer(*[self.g.tensors[t] if t else None for t in node.inputs])
        for name, (shape, dtype) in zip(node.outputs, outs):
            have = self.g.tensors[name]
            if tuple(shape) != have.shape or dtype != have.dtype:
                raise UnsupportedOp(f"{node.op} (node {node.name!r}): infers {shape} {dtype}, "
                                    f"expected {have.shape} {have.dtype}")
        self.g.add_node(node)

    def int_of(self, t: str) -> str | None:
        """The int8 tensor of g behind src tensor t (a DQ output or, QOperator, 8-bit itself)."""
        if t in self.dq:
            return self.q[self.dq[t]]
        return self.q.get(t)

    def float_in(self, t: str) -> str:
        """src tensor t as a float (or constant) tensor of g, dequantizing on demand."""
        if not t or t in self.fl:
            return self.fl.get(t, t)
        src = self.src
        if t in self.cdq:
            name = self.const(t, self.cdq[t].real(), "float32")
        elif src.is_const(t):
            name = self.const(t, src.const(t), src.tensors[t].dtype)
        elif t in self.dq:
            x = self.int_of(t)
            name = fresh_name(self.g, t)
            qp = self.qp(x)
            self.g.add_tensor(TensorInfo(name, self.g.tensors[x].shape, "float32"))
            self.g.add_node(Node(fresh_node(self.g, f"{t}/dequantize"), "Dequantize", [x], [name],
                                 {"scale": qp.scale[0], "zero_point": qp.zero_point[0]}))
        else:
            raise UnsupportedOp(f"tensor {t!r}: an 8-bit tensor read by a float operator")
        self.fl[t] = name
        return name

    # -- driver -------------------------------------------------------------------------------
    def run(self) -> Graph:
        self.plan_outputs()
        self.plan_inputs()
        refused = []
        for node in self.src.nodes():
            if node.name in self.absorbed:
                continue
            try:
                handler = HANDLERS.get(node.op)
                if handler is None or not handler(self, node):
                    self.float_node(node)
            except UnsupportedOp as e:
                refused.append(str(e))
        if refused:
            raise UnsupportedOp("cannot import the quantized model: " + "; ".join(refused))
        self.finish_outputs()
        verify(self.g)
        return self.g

    def plan_outputs(self) -> None:
        """A graph output DQ(t) makes t's int8 tensor carry the output's name (no copy)."""
        for o in self.src.outputs:
            p = self.src.producer(o)
            if p is None or p.op != "DequantizeLinear" or self.src.is_const(p.inputs[0]):
                continue
            t = p.inputs[0]
            if t not in self.src.inputs and t not in self.src.outputs and t not in self.rename:
                self.rename[t] = o

    def plan_inputs(self) -> None:
        """A graph input read only by QuantizeLinear nodes of one scale becomes an int8 input."""
        for x in self.src.inputs:
            info = self.src.tensors[x]
            users = self.src.consumers(x)
            qs = [n for n in users if n.op == "QuantizeLinear" and n.inputs[0] == x]
            params = {self.tensor_params(n, f"input {x!r}") for n in qs}
            if users and len(qs) == len(users) and len(params) == 1 and x not in self.src.outputs:
                (s, z), = params
                self.g.add_tensor(TensorInfo(x, info.shape, "int8",
                                             quant=QuantParams((float(np.float32(s)),), (z,))))
                for n in qs:
                    self.q[n.outputs[0]] = x
                    self.absorbed.add(n.name)
            else:
                self.g.add_tensor(TensorInfo(x, info.shape, info.dtype))
                self.fl[x] = x
            self.g.inputs.append(x)

    def finish_outputs(self) -> None:
        for o in self.src.outputs:
            if o in self.fl:
                if self.fl[o] != o:
                    raise UnsupportedOp(f"output {o!r}: name taken by another tensor")
                continue
            x = self.int_of(o)
            if x is None:
                raise UnsupportedOp(f"output {o!r} is not float32 or a dequantized 8-bit tensor")
            if x != o:  # e.g. an input quantized and dequantized straight to the output
                qp = self.qp(x)
                self.g.add_tensor(TensorInfo(o, self.g.tensors[x].shape, "int8", quant=qp))
                self.g.add_node(Node(fresh_node(self.g, f"{o}/copy"), "QView", [x], [o],
                                     {"shape": list(self.g.tensors[x].shape)}))
        self.g.outputs = list(self.src.outputs)

    # -- Q, DQ and the float fallback ---------------------------------------------------------
    def quantize_linear(self, node: Node) -> bool:
        s, z = self.tensor_params(node, "activations")
        x, out = node.inputs[0], node.outputs[0]
        xf = self.float_in(x)
        y = self.new_int(out, self.src.tensors[out].shape, s, z)
        self.add(Node(node.name, "Quantize", [xf], [y], {"scale": s, "zero_point": z}))
        return True

    def dequantize_linear(self, node: Node) -> bool:
        x, out = node.inputs[0], node.outputs[0]
        dtype = self.src.tensors[x].dtype
        if self.src.is_const(x):
            s, z = self.params(node, dtype)
            axis = None
            if s.size > 1:
                axis = int(node.attrs.get("axis", 1))
                axis += self.src.tensors[x].shape.__len__() if axis < 0 else 0
            q = self.src.const(x)
            q = to_int8_domain(q, dtype) if dtype in ("int8", "uint8") else q.astype(np.int64)
            self.cdq[out] = ConstQ(q, s, z, axis)
            return True
        xi = self.q.get(x)
        if xi is None or dtype not in ("int8", "uint8"):
            raise UnsupportedOp(f"DequantizeLinear (node {node.name!r}): input {x!r} is not an "
                                "8-bit tensor of the quantized graph")
        s, z = self.tensor_params(node, "activations")
        qp = self.qp(xi)
        if (np.float32(s), z) == (np.float32(qp.scale[0]), qp.zero_point[0]):
            self.dq[out] = x
            return True
        # The same bytes read with other parameters: a copy carrying the new ones.
        y = self.new_int(out, self.g.tensors[xi].shape, s, z)
        self.add(Node(node.name, "QView", [xi], [y], {"shape": list(self.g.tensors[xi].shape)}))
        self.dq[out] = out
        return True

    def float_node(self, node: Node) -> None:
        """The node as written, in float, on dequantized inputs."""
        inputs = [self.float_in(t) for t in node.inputs]
        outs = make_op(Node(node.name, node.op, inputs, node.outputs, node.attrs, node.opset)).infer(
            *[self.g.tensors[t] if t else None for t in inputs])
        names = []
        for t, (shape, dtype) in zip(node.outputs, outs):
            if not t:
                names.append("")
                continue
            if dtype != "float32":
                raise UnsupportedOp(f"{node.op} (node {node.name!r}): float operator on 8-bit data")
            name = fresh_name(self.g, t)
            self.g.add_tensor(TensorInfo(name, tuple(shape), dtype))
            self.fl[t] = name
            names.append(name)
        self.g.add_node(Node(node.name, node.op, inputs, names, dict(node.attrs), node.opset))

    # -- shared pieces of the integer patterns ------------------------------------------------
    def requant_consts(self, name: str, s_x: float, s_w: np.ndarray, s_y: float,
                       bias: tuple[np.ndarray, np.ndarray] | None) -> list[str]:
        """[bias int32 or "", multiplier int32, shift int8] of a QConv / QGemm. `bias` is
        (integer values, their scales), kept as they are when the scales are s_x * s_w (what
        quantize_static writes) and rescaled otherwise, or (real values, None)."""
        s_acc = (np.float32(s_x) * s_w.astype(np.float32)).astype(np.float32)  # as ORT, float32
        bias_in = ""
        if bias is not None:
            b = np.asarray(bias[0], np.float64)
            if bias[1] is None:  # a float bias: quantized here, as ORT does
                b = rounding(b / s_acc.astype(np.float64))
            elif not np.allclose(s_b := np.broadcast_to(bias[1], s_acc.shape), s_acc, rtol=1e-6, atol=0):
                b = rounding(b * s_b / s_acc.astype(np.float64))
            bias_in = self.const(f"{name}_bias_q", np.clip(b, fp.INT32_MIN, fp.INT32_MAX), "int32")
        mult, shift = fp.quantize_multipliers((s_acc / np.float32(s_y)).astype(np.float32))
        return [bias_in, self.const(f"{name}_mult", mult, "int32"),
                self.const(f"{name}_shift", shift, "int8")]

    def int8_weights(self, node: Node, c: ConstQ, axis: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(q - zp as int8, per-channel scales (n,)) of weights quantized along `axis` or per
        tensor. Refuses zero points that leave q - zp outside int8."""
        if c.axis is not None and c.axis != axis:
            raise UnsupportedOp(f"{node.op} (node {node.name!r}): weights quantized along axis "
                                f"{c.axis} (the output channels are axis {axis})")
        w = c.centered(axis)
        if w.min(initial=0) < QMIN or w.max(initial=0) > QMAX:
            raise UnsupportedOp(f"{node.op} (node {node.name!r}): asymmetric weights (zero point "
                                f"{c.zp.ravel()[:4]}...) do not fit the int8 kernels")
        return w.astype(np.int8), np.broadcast_to(c.scale.astype(np.float32), (n,))


def rounding(x) -> np.ndarray:
    return np.rint(np.asarray(x, np.float64))


def fresh_node(g: Graph, base: str) -> str:
    name, k = base, 1
    while name in g.nx:
        name, k = f"{base}_{k}", k + 1
    return name


def import_quantized(g: Graph) -> Graph:
    """The integer graph of an imported QDQ / QOperator graph (see the module docstring)."""
    return QdqImporter(g).run()
