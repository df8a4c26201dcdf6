"""The npz convention of DESIGN.md: arrays keyed by ONNX input/output name, one sample or N
samples stacked along the first axis."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import UsageError


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: not a readable .npz file ({e})") from None


def split_samples(arrays: dict[str, np.ndarray], inputs: list[dict]) -> tuple[list[dict], str | None]:
    """-> (one {input name: array of the input's exact shape} per sample, layout), where layout
    is None for one sample, "concat" for (N, *shape[1:]) and "stack" for (N, *shape)."""
    if len(inputs) == 1 and inputs[0]["name"] not in arrays and "x" in arrays:
        arrays = {inputs[0]["name"]: arrays["x"]}
    missing = [i["name"] for i in inputs if i["name"] not in arrays]
    if missing:
        raise UsageError(f"inputs missing from npz: {', '.join(missing)} (have: "
                         f"{', '.join(sorted(arrays)) or 'nothing'})")
    per_input, counts, layouts = {}, set(), set()
    for spec in inputs:
        name, shape = spec["name"], tuple(spec["shape"])
        a = np.asarray(arrays[name])
        if a.dtype.kind not in "fiu":
            raise UsageError(f"input {name!r}: dtype {a.dtype} is not numeric")
        if a.shape == shape:
            per_input[name], n = a[None], None
        elif shape and shape[0] == 1 and a.ndim == len(shape) and a.shape[1:] == shape[1:]:
            per_input[name], n = a[:, None], a.shape[0]
            layouts.add("concat")
        elif a.ndim == len(shape) + 1 and a.shape[1:] == shape:
            per_input[name], n = a, a.shape[0]
            layouts.add("stack")
        else:
            raise UsageError(f"input {name!r}: array shape {a.shape} does not match the model's "
                             f"{shape} (one sample) or (N, ...) samples")
        if not np.all(np.isfinite(a)):
            raise UsageError(f"input {name!r} contains NaN or infinity")
        counts.add(n)
    if len(counts) > 1:
        raise UsageError(f"inputs disagree on the number of samples: {sorted(counts, key=str)}")
    batched = None if counts == {None} else "stack" if layouts == {"stack"} else "concat"
    n = len(next(iter(per_input.values())))
    if n == 0:
        raise UsageError("the npz holds zero samples")
    samples = [{k: v[i].astype(np.float32) for k, v in per_input.items()} for i in range(n)]
    return samples, batched


def join_samples(outputs: list[dict], specs: list[dict], batched: str | None) -> dict[str, np.ndarray]:
    """Outputs in the layout the inputs came in (see split_samples)."""
    res = {}
    for spec in specs:
        name, shape = spec["name"], tuple(spec["shape"])
        arrs = [o[name].reshape(shape) for o in outputs]
        if not batched:
            res[name] = arrs[0]
        elif shape and shape[0] == 1 and batched != "stack":
            res[name] = np.concatenate(arrs, axis=0)
        else:
            res[name] = np.stack(arrs)
    return res
