"""Frontend: ONNX file -> IR with static shapes.

Reads nodes, attributes and initializers; folds constant subgraphs (Constant, ConstantOfShape,
Shape -> Gather -> Concat -> Reshape chains, anything whose inputs are all known) by running
them through onnx's reference evaluator; infers every other shape with the op's own `infer()`.
Every unsupported operator is collected so the user sees all of them in one message.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import BadModel, ShapeError, UnsupportedOp
from ..ir import Graph, Node, TensorInfo, verify
from ..ops import make_op
from ..ops.evaluate import run_onnx_node

MIN_OPSET = 1
# Ops whose result is not a function of their inputs: never fold them.
_NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                     "Multinomial", "Bernoulli"}
_FLOAT_TYPES = {"float32"}
# Already-quantized models (QDQ / QOperator): these ops make the importer keep 8-bit tensors
# and constants as they are and hand the graph to nncc/quant/import_qdq.py.
QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "QLinearAdd"}
_MS_QUANT_OPS = {"QLinearAdd"}  # accepted from the com.microsoft domain


def load_model(path: str | Path) -> onnx.ModelProto:
    path = Path(path)
    if not path.is_file():
        raise BadModel(f"{path}: no such file")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001  # protobuf raises several unrelated types for corrupt data
        raise BadModel(f"{path}: not a readable ONNX file ({type(e).__name__}: {e})") from None
    if not model.graph.node and not model.graph.output:
        raise BadModel(f"{path}: not an ONNX model (empty or truncated graph)")
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001  # the checker raises several types
        if _unknown_ops(model):
            # The checker stops at the first op it has no schema for; the importer lists every
            # unsupported node in one message, which is what the user needs.
            return model
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadModel(f"{path}: invalid ONNX model: {msg}") from None
    return model


def _unknown_ops(model: onnx.ModelProto) -> list[str]:
    """Default-domain node types onnx itself has no schema for (e.g. a typo or a custom op)."""
    return [n.op_type for n in model.graph.node
            if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type)]


def parse_input_shapes(specs: list[str] | None) -> dict[str, tuple[int, ...]]:
    """`--input-shape name=1,3,96,96` -> {"name": (1, 3, 96, 96)}."""
    from ..errors import UsageError
    out = {}
    for spec in specs or []:
        name, sep, dims = spec.rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(","))  # "1,,3" is refused
        except ValueError:
            shape = ()
        if not sep or not name or not shape or min(shape) <= 0:
            raise UsageError(f"--input-shape {spec!r}: expected NAME=D0,D1,... with positive dims")
        out[name] = shape
    return out


def _opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return 1


def _attrs(node: onnx.NodeProto) -> dict:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, list):
            v = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v]
        elif isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        out[a.name] = v
    return out


def _dtype_name(elem_type: int) -> str:
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
    except Exception:  # noqa: BLE001  # types numpy has no name for
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def _input_tensor(vi: onnx.ValueInfoProto, pinned: dict) -> TensorInfo:
    tt = vi.type.tensor_type
    dtype = _dtype_name(tt.elem_type)
    if vi.name in pinned:
        shape = pinned[vi.name]
        if tt.HasField("shape") and len(tt.shape.dim) != len(shape):
            raise ShapeError(f"--input-shape {vi.name}: model input has rank {len(tt.shape.dim)}, "
                             f"got {len(shape)} dims")
        for d, want in zip(tt.shape.dim, shape):
            if d.HasField("dim_value") and d.dim_value != want:
                raise ShapeError(f"--input-shape {vi.name}: dimension {d.dim_value} is fixed in "
                                 f"the model, got {want}")
        return TensorInfo(vi.name, shape, dtype)
    if not tt.HasField("shape"):
        raise ShapeError(f"input {vi.name!r} has no shape; pin it with "
                         f"--input-shape {vi.name}=D0,D1,...")
    dims = []
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(d.dim_value)
        elif d.HasField("dim_value") and d.dim_value == 0:
            raise UnsupportedOp(f"unsupported: input {vi.name!r} has a zero-size dimension "
                                "(empty tensors)")
        else:
            sym = d.dim_param or "?"
            raise ShapeError(f"input {vi.name!r} has dynamic dimension {sym!r}; pin it with "
                             f"--input-shape {vi.name}=D0,D1,...")
    return TensorInfo(vi.name, tuple(dims), dtype)


class _Importer:
    def __init__(self, model: onnx.ModelProto, name: str, pinned: dict):
        self.model = model
        self.opset = _opset(model)
        self.g = Graph(name)
        self.pinned = dict(pinned)
        self.unsupported: list[str] = []
        self.names: set[str] = set()
        self.quantized = any(n.op_type in QUANT_OPS for n in model.graph.node)

    def run(self) -> Graph:
        g, graph = self.g, self.model.graph
        self.used = {t for n in graph.node for t in n.input} | {o.name for o in graph.output}
        unknown = set(self.pinned) - {vi.name for vi in graph.input}
        if unknown:
            raise ShapeError(f"--input-shape names unknown input(s): {', '.join(sorted(unknown))}")
        for init in graph.initializer:
            g.add_tensor(TensorInfo(init.name, tuple(init.dims), _dtype_name(init.data_type),
                                    numpy_helper.to_array(init)))
        for init in graph.sparse_initializer:
            raise UnsupportedOp(f"sparse initializer {init.values.name!r}")
        for vi in graph.input:
            if vi.name in g.tensors:  # old-style models list initializers as inputs too
                continue
            t = g.add_tensor(_input_tensor(vi, self.pinned))
            if t.dtype not in _FLOAT_TYPES:
                self.unsupported.append(f"input {vi.name!r} of type {t.dtype} (only float32)")
            g.inputs.append(vi.name)
        for i, node in enumerate(graph.node):
            self.import_node(node, i)
        if self.unsupported:
            raise UnsupportedOp("unsupported: " + "; ".join(self.unsupported))
        g.outputs = [o.name for o in graph.output]
        for o in g.outputs:
            if o not in g.tensors:
                raise BadModel(f"graph output {o!r} is not produced by any node")
            if g.tensors[o].dtype not in _FLOAT_TYPES:
                raise UnsupportedOp(f"output {o!r} of type {g.tensors[o].dtype} (only float32)")
        verify(g)
        return g

    def unique_name(self, node: onnx.NodeProto, i: int) -> str:
        base = node.name or f"{node.op_type}_{i}"
        name, k = base, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def import_node(self, proto: onnx.NodeProto, i: int) -> None:
        g = self.g
        # Optional extra outputs nobody reads (Dropout's mask, MaxPool's indices) are dropped
        # here, so ops refuse them only when a model really uses them.
        outputs = [o if k == 0 or o in self.used else "" for k, o in enumerate(proto.output)]
        node = Node(self.unique_name(proto, i), proto.op_type, list(proto.input),
                    outputs, _attrs(proto), self.opset)
        ms_quant = self.quantized and proto.domain == "com.microsoft" and proto.op_type in _MS_QUANT_OPS
        if proto.domain not in ("", "ai.onnx") and not ms_quant:
            self.unsupported.append(f"{proto.domain}.{proto.op_type} (node {node.name!r})")
            return
        missing = [t for t in node.inputs if t and t not in g.tensors]
        if missing:  # an earlier node failed: keep listing unsupported ops, skip shapes
            self.check_supported(node)
            return
        ins = [g.tensors[t] if t else None for t in node.inputs]
        if self.foldable(node, ins):
            self.fold(proto, node, ins)
            return
        op = self.check_supported(node)
        if op is None:
            return
        try:
            for idx in op.const_inputs:
                if idx < len(ins) and ins[idx] is not None and not ins[idx].is_const:
                    raise op.refuse(f"input {idx} ({node.inputs[idx]!r}) must be a constant")
            bad = [x.name for x in ins if x is not None and not x.is_const
                   and x.dtype not in _FLOAT_TYPES]
            if bad and op.float_only and not self.quantized:  # import_qdq checks those
                raise op.refuse(f"non-float32 input(s) {', '.join(bad)}")
            outs = op.infer(*ins)
        except UnsupportedOp as e:
            self.unsupported.append(str(e))
            return
        except ShapeError as e:
            raise ShapeError(f"node {node.name!r} ({node.op}): {e}") from None
        if self.quantized and node.op not in QUANT_OPS and ins and ins[0] is not None \
                and ins[0].dtype in ("int8", "uint8"):
            # QOperator form: pools and views applied straight to 8-bit data keep its type
            outs = [(shape, ins[0].dtype) for shape, _ in outs]
        for name, (shape, dtype) in zip(node.outputs, outs):
            if name:
                g.add_tensor(TensorInfo(name, tuple(int(d) for d in shape), dtype))
        g.add_node(node)

    def check_supported(self, node: Node):
        try:
            return make_op(node)
        except UnsupportedOp as e:
            self.unsupported.append(str(e))
            return None

    def foldable(self, node: Node, ins: list[TensorInfo | None]) -> bool:
        if node.op in _NONDETERMINISTIC or (self.quantized and node.op in QUANT_OPS):
            return False  # import_qdq reads the 8-bit weights and their scales from them
        if node.op in ("Shape", "Size"):  # depend only on the (static) shape
            return True
        return all(x is None or x.is_const for x in ins)

    def fold(self, proto: onnx.NodeProto, node: Node, ins: list[TensorInfo | None]) -> None:
        values = []
        for x in ins:
            if x is None:
                values.append(None)
            elif x.is_const:
                values.append(x.data)
            else:  # Shape/Size of a runtime tensor: its value does not matter
                values.append(np.zeros(x.shape, dtype=x.dtype))
        try:
            outs = run_onnx_node(proto, values, self.model.opset_import)
        except Exception as e:  # noqa: BLE001  # any evaluator failure: report it as unsupported
            self.unsupported.append(f"{node.op} (node {node.name!r}): cannot fold constant "
                                    f"subgraph ({type(e).__name__}: {e})")
            return
        for name, v in zip(node.outputs, outs):
            if name:
                v = np.asarray(v)
                self.g.add_tensor(TensorInfo(name, tuple(v.shape), v.dtype.name, v))


def import_onnx(model: onnx.ModelProto, name: str, pinned: dict | None = None) -> Graph:
    if _opset(model) > onnx.defs.onnx_opset_version():
        raise UnsupportedOp(f"opset {_opset(model)} is newer than this onnx "
                            f"({onnx.defs.onnx_opset_version()})")
    imp = _Importer(model, name, pinned or {})
    g = imp.run()
    if imp.quantized:
        from ..quant.import_qdq import import_quantized
        g = import_quantized(g)
    return g
