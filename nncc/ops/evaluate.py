"""Run a single ONNX node through onnx's reference evaluator.

Used by the frontend to fold constant subgraphs, and by ops whose numpy reference is simplest
delegated (rare ops such as LRN); never on the C path.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper
from onnx.reference import ReferenceEvaluator


def run_onnx_node(proto: onnx.NodeProto, values: list, opset_import) -> list[np.ndarray]:
    names = [f"in{i}" if v is not None else "" for i, v in enumerate(values)]
    outs = [f"out{i}" if o else "" for i, o in enumerate(proto.output)]
    node = onnx.NodeProto()
    node.CopyFrom(proto)
    del node.input[:]
    node.input.extend(names)
    del node.output[:]
    node.output.extend(outs)
    g_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype), None)
                for n, v in zip(names, values) if n]
    g_outputs = [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
                 for o in outs if o]
    graph = helper.make_graph([node], "fold", g_inputs, g_outputs)
    model = helper.make_model(graph, opset_imports=list(opset_import))
    feeds = {n: np.asarray(v) for n, v in zip(names, values) if n}
    res = ReferenceEvaluator(model).run(None, feeds)
    it = iter(res)
    return [next(it) if o else None for o in outs]


def run_node(op_type: str, attrs: dict, values: list, opset: int) -> list[np.ndarray]:
    """Evaluate `op_type` with plain attributes (as stored in the IR)."""
    n_out = attrs.pop("__n_out", 1)
    proto = helper.make_node(op_type, [f"in{i}" for i in range(len(values))],
                             [f"out{i}" for i in range(n_out)],
                             **{k: v for k, v in attrs.items() if v is not None})
    return run_onnx_node(proto, values, [helper.make_opsetid("", opset)])
