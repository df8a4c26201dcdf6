"""Shared int8 convolution kernels (templates/ops/conv_q_shared.c.j2): one C function serves every
QConv layer of the same kind, its per-layer numbers (shapes, zero points, clamp, requantization)
read from a small `static const` struct, so the code of a model grows by a struct per layer
rather than by a specialized kernel per layer (the 8 KB code budget of the MCU targets).

The kind -- what the function's text depends on -- is the kernel variant ("mm": group 1 with a
window of at most COL_MAX taps; "pw": a larger 1x1; depthwise "dw3" (3x3) and "dw"; "direct": the
rest; "wino": the node's kernel "winograd", nncc/ops/qconv_wino.py), output channels per loaded
input of the portable loops (4 when they divide evenly), the scaling, whether there is a bias
and a fused QAdd; shapes, window and numbers are run-time.
A fused QAdd's numbers go in a second struct. Only the packed form of nncc/quant/rewrite.py with
int8 tensors (x, w, y and a fused QAdd's residual), 1-D/2-D windows and "fixed" / "shift" scaling
is shared; any other QConv keeps its specialized kernel (conv_q.c.j2).

On cores with the DSP extension (`__ARM_FEATURE_DSP`: Cortex-M4/M7/M33) "mm" runs 2 output
channels x 4 pixels per step on int16 pairs (SMLAD, an assembly loop; the weights in channel
pairs: mm_weights()) and "dw3" at stride 1 or 2 across whole rows, two outputs per step,
requantized in registers. A layer flagged `q8` (full int8 clamp, right shifts 1..22,
|sum + bias| < 2^30: every MLPerf Tiny layer; q8_flags()) requantizes by nncc_q8_30(); a fused
QAdd flagged `fast` is computed inline too. Other targets compile the portable loops, with the
same numbers: the "mm" kind's windows of a few pixels in the scratch (RISC-V 4 pixels x 4
channels per step and ARMv6-M 1 pixel x 4 channels, each in an assembly block; other cores 2
pixels x 2 channels in C), a q8 layer's outputs requantized inline by nncc_q8_30()'s portable
form, a fused QAdd's a block of channels per nncc_qconv_outs_*() call; the "dw3" kind's rows
of a q8 layer in C. `shared_needs` tells the emitter which paths a layer takes; the shared
functions leave out, on DSP cores, the paths no layer of the model takes (k.needs).

Workspace: the "mm" and "dw3" kinds' scratch (widened inputs and sums; padded rows and sums) is the
node's workspace, planned in the arena (QConv.workspace_bytes), never the C stack; they write in
place without a separate copy buffer (a pixel quad's inputs are in the scratch once widened, and
the portable loop copies a pixel's window into the scratch; a 3x3 band reads only input rows
below the outputs written). The 1x1 and depthwise kinds without a scratch keep a copy buffer
when in place (a pixel's channels, a channel's plane). The generated C is the same
on every target, so a layer whose shape takes the "mm" kind reserves its scratch on every target."""
from __future__ import annotations

import numpy as np

from ..dtypes import int_range
from . import qconv_wino as wino

COL_MAX = 576  # taps of the "mm" kind's window (up to a multiple of 4) widened in the scratch
MM_BLOCK = 8  # output channels of the "mm" kind's block: their 4 pixels' int32 sums in the scratch
DW3_BUF = 1024  # the most bytes of padded input rows the 3x3 depthwise kernel holds at once
DW3_COLS = 64  # the 3x3 depthwise kernel's int32 sums per call: an output row, or a part of one
# struct field -> C type; the layer's values must fit (else the specialized kernel is used)
FIELDS = {"multiplier": "int32_t", "C": "int16_t", "M": "int16_t", "group": "int16_t",
          "ih": "int16_t", "iw": "int16_t", "oh": "int16_t", "ow": "int16_t", "N": "int8_t",
          "ph": "int8_t", "pw": "int8_t", "kh": "int8_t", "kw": "int8_t", "sh": "int8_t",
          "sw": "int8_t", "dh": "int8_t", "dw": "int8_t", "x_zp": "int8_t", "y_zp": "int8_t",
          "act_min": "int8_t", "act_max": "int8_t", "shift_base": "int8_t", "pack_bits": "int8_t",
          "bias_shift": "int8_t", "acc30": "int8_t", "q8": "int8_t"}
# A fused QAdd's numbers (QAdd.add_params() keys -> field, C type), in their own struct.
QADD_FIELDS = {"a_mult": ("a_mult", "int32_t"), "b_mult": ("b_mult", "int32_t"),
               "y_mult": ("y_mult", "int32_t"), "a_zero_point": ("a_zp", "int8_t"),
               "b_zero_point": ("b_zp", "int8_t"), "a_shift": ("a_shift", "int8_t"),
               "b_shift": ("b_shift", "int8_t"), "y_shift": ("y_shift", "int8_t"),
               "y_zero_point": ("y_zp", "int8_t"), "act_min": ("act_min", "int8_t"),
               "act_max": ("act_max", "int8_t"), "conv_first": ("conv_first", "int8_t")}
# The fields _quant.j2's requant() reads, as struct members of the shared function's `p`.
RUNTIME_Q = {"y_zero_point": "p->y_zp", "act_min": "p->act_min", "act_max": "p->act_max"}


def _fits(values: dict, types: dict) -> bool:
    def fits(v, ctype: str) -> bool:
        lo, hi = int_range(ctype)
        return v is not None and lo <= int(v) <= hi

    return all(fits(v, types[f]) for f, v in values.items())


def qadd_inline(a: dict) -> bool:
    """A QAdd (its attributes) of the usual kind, which the shared kernels compute from a table
    of its operands' terms (QAdd.term_table()) with the conv's nncc_q8_30(): fixed scaling,
    int8 operands shifted left by 20, right shifts (none for an operand allowed, 1..22 for the
    sum), non-negative multipliers, the full int8 clamp."""
    return (a["scaling"] == "fixed" and a.get("left_shift", 20) == 20
            and a["a_shift"] <= 0 and a["b_shift"] <= 0
            and min(a["a_mult"], a["b_mult"], a["y_mult"]) >= 0
            and _q8(-a["y_shift"], -a["y_shift"], a["act_min"], a["act_max"]))


def _qadd(ctx: dict) -> dict | None:
    """The fused QAdd's struct values and its qadd() context (fields read from `qa`), or None
    when it cannot be shared."""
    a = ctx["qadd"]
    if a["scaling"] not in ("fixed", "shift"):
        return None
    qa = {f: a[key] if key in a else int(ctx["conv_first"]) for key, (f, _) in QADD_FIELDS.items()}
    types = {f: t for f, t in QADD_FIELDS.values()}
    # the usual kind, from its table (the fuse pass adds it: qadd_inline())
    qa["fast"] = int(ctx["qadd_table"] and qadd_inline(a))
    types["fast"] = "int8_t"
    if not _fits(qa, types):
        return None
    # the table (int32 terms, input TABLE_INDEX: its array, named by the template), or none
    qa["table"] = "0"
    types["table"] = "const int32_t *"
    rt = {key: f"qa->{f}" for key, (f, _) in QADD_FIELDS.items()}
    # left_shift is a compile-time constant of qadd() (20; 15 only with an int16 operand, which
    # keeps the specialized kernel: shared_context)
    return {"qa": {f: int(v) for f, v in qa.items()}, "qa_types": types,
            "qa_rt": {**rt, "scaling": a["scaling"], "left_shift": a["left_shift"]}}


def _align4(n: int) -> int:
    return (n + 3) & ~3


def mm_weights(w: np.ndarray) -> np.ndarray:
    """The "mm" kind's weights as its kernels read them: the rows (taps in order ci, ky, kx)
    zero-padded to kc4 taps, an odd channel count's last row paired with a row of zeros, then
    per channel pair its taps in order, each tap's byte of the first channel and of the second
    (channel c's tap t at 2 t + c: one word holds taps t, t + 1 of both, so SXTB16 and SXTB16
    ROR 8 of one load give each channel's pair of them)."""
    m = w.shape[0]
    rows = w.reshape(m, -1)
    kc4 = _align4(rows.shape[1])
    padded = np.zeros((m + m % 2, kc4), w.dtype)
    padded[:m, :rows.shape[1]] = rows
    return np.ascontiguousarray(padded.reshape(-1, 2, kc4).transpose(0, 2, 1))


def packed_slack(w_shape, group: int) -> int:
    """Packed int16 the "mm" kind may read past a group-1 layer's last: a channel pair's two
    are read together, an odd channel count's last pair included."""
    return int(w_shape[0]) % 2 if group == 1 else 0


def _q8(right_min: int, right_max: int, act_min: int, act_max: int) -> bool:
    """nncc_q8_30() applies: right shifts within 1..22 and the full int8 clamp."""
    return 1 <= right_min and right_max <= 22 and (act_min, act_max) == (-128, 127)


def q8_flags(ctx: dict, terms: int) -> tuple[int, int]:
    """(acc30, q8) of a packed int8 layer of `terms` products per output (its context ctx):
    |sum + bias| < 2^30 for every input, so the output helper's one-instruction multiply
    applies (|x - x_zp| <= 255, |w| <= 127; the packed bias is an int16 shifted by bias - pack
    bits); and with the full int8 clamp and every channel's right shift r = k - shift_base in
    1..22 (k < 2^pack_bits), nncc_q8_30() requantizes each output."""
    bias_max = 2 ** (15 - (ctx["pack_bits"] or 0) + (ctx["bias_shift"] or 0)) if ctx["has_bias"] else 0
    acc30 = terms * 255 * 127 + bias_max < 2 ** 30
    r_min = -(ctx["shift_base"] or 0)
    r_max = r_min + (2 ** (ctx["pack_bits"] or 0) - 1 if ctx["has_bias"] else 0)
    q8 = (ctx["scaling"] == "fixed" and acc30 and ctx["multiplier"] >= 0
          and _q8(r_min, r_max, ctx["act_min"], ctx["act_max"]))
    return int(acc30), int(q8)


def _dw3_pwid(ow: int, sw: int) -> int:
    """Bytes of a padded row of the 3x3 depthwise kernel's buffer, as the C computes it: the
    columns of all windows, rounded up to a multiple of 4 so that its rows' words at even
    offsets are aligned or at 2 mod 4 (a Cortex-M4 splits an unaligned word access)."""
    return ((ow - 1) * sw + 3 + 3) & ~3


def _dw3_scratch(g) -> int:
    """Bytes of the 3x3 depthwise kernel's scratch, as the C lays it out: the int32 sums of one
    call (an output row, or a part of one), then the padded input rows of one band (the band
    from DW3_BUF) and 4 spare bytes."""
    (_, oh, ow), (_, sh, sw), dh = g["o"], g["s"], g["d"][1]
    pwid = _dw3_pwid(ow, sw)
    band = (DW3_BUF // pwid - 2 * dh - 1) // sh + 1
    return 4 * min(ow, DW3_COLS) + pwid * ((min(oh, band) - 1) * sh + 2 * dh + 1) + 4


def shared_context(op, ctx: dict, ins, outs, kernel: str | None = None) -> dict:
    """{"shared": [struct piece, function piece], "shared_fn", "qp": struct values, "rt",
    "ws_bytes": the workspace} for a QConv whose kernel can be shared, else {"shared": []}.
    `kernel`: the variant (default the node's own)."""
    g = ctx["g"]
    kernel = op.node.kernel if kernel is None else kernel
    operands = (ins[0], ins[1], outs[0]) + ((ins[ctx["residual_index"]],) if ctx["qadd"] else ())
    if (not ctx["packed"] or ctx["scaling"] not in ("fixed", "shift")
            or any(t is None or t.dtype != "int8" for t in operands)
            or g["i"][0] != 1 or g["k"][0] != 1 or g["o"][0] != 1
            or kernel not in ("direct", "dw_inplace", "pw_inplace", "winograd")
            or kernel == "winograd" and not wino.geometry_ok(ctx)):
        return {"shared": []}
    qp = {"multiplier": ctx["multiplier"], "N": ctx["N"], "C": ctx["C"], "M": ctx["M"],
          "group": ctx["group"], "ih": g["i"][1], "iw": g["i"][2], "oh": g["o"][1],
          "ow": g["o"][2], "ph": g["pb"][1], "pw": g["pb"][2], "kh": g["k"][1], "kw": g["k"][2],
          "sh": g["s"][1], "sw": g["s"][2], "dh": g["d"][1], "dw": g["d"][2], "x_zp": ctx["x_zero_point"],
          "y_zp": ctx["y_zero_point"], "act_min": ctx["act_min"], "act_max": ctx["act_max"],
          "shift_base": ctx["shift_base"], "pack_bits": ctx["pack_bits"],
          "bias_shift": ctx["bias_shift"]}
    qp["acc30"], qp["q8"] = q8_flags(ctx, ctx["C"] // ctx["group"] * g["k"][1] * g["k"][2])
    add = _qadd(ctx) if ctx["qadd"] is not None else {"qa": None}
    if add is None:
        return {"shared": []}
    # the kind (what the function's text depends on), the first that applies: "mm" (group 1, a
    # window of at most COL_MAX taps up to a multiple of 4: its DSP path widens a pixel quad's
    # windows to int16 in the scratch, 8 bytes a tap, the int8 gathering buffer in its upper half,
    # then a block's sums), "pw" (a larger 1x1), "dw3" (3x3 depthwise, dilation 1 across, at
    # least one output row's padded input rows within DW3_BUF), "dw" (depthwise), "direct"
    unit = g["k"] == g["s"] == (1, 1, 1) and not any(g["pb"]) and not any(g["pe"])
    dw = ctx["group"] == ctx["C"] == ctx["M"] and (kernel == "dw_inplace" or not unit or ctx["group"] != 1)
    pwid = _dw3_pwid(g["o"][2], g["s"][2])
    kc4 = _align4(ctx["C"] * g["k"][1] * g["k"][2])
    if kernel == "winograd":
        kind = "wino"
    elif not dw and ctx["group"] == 1 and kc4 <= COL_MAX:
        kind = "mm"
    elif unit and ctx["group"] == 1 and not dw:
        kind = "pw"
    elif dw and g["k"][1:] == (3, 3) and g["d"][2] == 1 and pwid * (2 * g["d"][1] + 1) <= DW3_BUF:
        kind = "dw3"
    else:
        kind = "dw" if dw else "direct"
    # the workspace: the scratch of "mm" (even where the target has no DSP path: the C is the
    # same) or of "dw3", which write in place without a copy buffer; else the in-place copy
    # buffer (a pixel's channels / a channel plane)
    scratch = (8 * kc4 + 16 * MM_BLOCK if kind == "mm" else _dw3_scratch(g) if kind == "dw3"
               else wino.scratch_bytes(ctx["C"]) if kind == "wino" else 0)
    copy = (ctx["M"] if kind == "pw" else g["o"][1] * g["o"][2]) if kernel != "direct" and not scratch else 0
    if not _fits(qp, FIELDS):
        return {"shared": []}
    # output channels per loaded input of the portable loops
    ob = ctx["ob"] if ctx["M"] // ctx["group"] % 4 == 0 and kind != "wino" else 1
    tail = f"{ctx['scaling']}{'_b' if ctx['has_bias'] else ''}"
    out = f"nncc_qconv_out_{tail}"
    parts = ["qconv_params", out]
    qadd_fn = None
    if add["qa"] is not None:
        qadd_fn = f"nncc_qconv_qadd_{add['qa_rt']['scaling']}"
        tail += f"_qadd_{add['qa_rt']['scaling']}"
        parts = ["qconv_params", "qadd_params", out, qadd_fn]
    fn = f"nncc_qconv_{kind}_ob{ob}_{tail}"
    outs = f"nncc_qconv_outs_{tail}"
    # the "mm" kind's pixel quads may go from sums to outputs in nncc_qconv_mm_sums() (fixed
    # scaling, a bias, a fused QAdd of fixed scaling or none: the text of the kernel), and do for
    # a layer flagged q8 whose fused QAdd, if any, is of the usual kind (qa.fast); the "dw3"
    # kind's rows have a helper of their own (fixed scaling, no QAdd; with the DSP extension at
    # stride 1 or 2 across)
    mm_outs = (kind == "mm" and ctx["scaling"] == "fixed" and ctx["has_bias"]
               and (add["qa"] is None or add["qa_rt"]["scaling"] == "fixed"))
    q8_outs = mm_outs and bool(qp["q8"]) and (add["qa"] is None or bool(add["qa"]["fast"]))
    dw3_row = kind == "dw3" and ctx["scaling"] == "fixed" and add["qa"] is None
    # a 3x3 window at stride 1 across: quads inside the input widened straight from it
    widen3 = kind == "mm" and g["k"][1:] == (3, 3) and g["s"][2] == g["d"][2] == 1
    widen3s2 = kind == "mm" and g["k"][1:] == (3, 3) and g["s"][2] == 2 and g["d"][2] == 1
    # a 3x3 depthwise layer's rows by nncc_qconv_dw3_row() / _row2() (DSP cores)
    dw3_rows = dw3_row and bool(qp["q8"]) and g["s"][2] <= 2 and g["o"][2] > 1
    tail = g["o"][1] * g["o"][2] % 4  # the pixels of a plane's short last quad (0: none)
    parts += {"mm": ["nncc_qconv_col", "nncc_qconv_widen", "nncc_qconv_widen3", "nncc_qconv_mm_sums",
                     "nncc_qconv_mm_px", outs, f"{fn}_portable", fn],
              "dw3": ["nncc_qconv_dw3_sums"] + ["nncc_qconv_dw3_row"] * dw3_row + [outs, fn],
              "wino": ["nncc_qconv_wino", outs, fn]}.get(kind, [fn])
    # the paths of the shared pieces only some layers take, OR-ed over the model by the emitter
    # (k.needs): on cores with the DSP extension a path no layer takes is left out
    needs = {"requant_general": ctx["scaling"] != "fixed" or not qp["q8"], "mm_q8": q8_outs,
             "mm_q8a": q8_outs and add["qa"] is not None, "mm_odd": q8_outs and ctx["M"] % 2 == 1,
             "mm_sums": kind == "mm" and not q8_outs,
             "dw3_scalar": kind == "dw3" and not dw3_rows,
             "dw3_row2": dw3_rows and g["s"][2] == 2,
             "qadd_general": add["qa"] is not None and not add["qa"]["fast"],
             "qadd_table": add["qa"] is not None and bool(add["qa"]["fast"]),
             "col_three": kind == "mm" and g["k"][2] == 3 and g["s"][2] == g["d"][2] == 1,
             "col_four": kind == "mm" and g["k"][2] == 4 and g["d"][2] == 1,
             # nncc_qconv_col()'s dilations as the layer's (else 1: no division by them)
             "col_dilated": kind == "mm" and max(g["d"][1:]) > 1,
             "widen3": widen3,
             "widen3s2": widen3s2,
             # nncc_qconv_col()'s own ways for quads inside the input, but for a 1x1 layer widened
             # from its input (C % 4 == 0: only a plane's short last quad is gathered) and a
             # stride-2 3x3 one whose quads are all on one row (nncc_qconv_widen3s2())
             "col_inside": kind == "mm" and not (unit and ctx["C"] % 4 == 0)
             and not (widen3s2 and g["o"][2] % 4 == 0),
             "mm_px": q8_outs and add["qa"] is None and tail in (1, 2),
             # a short quad nncc_qconv_mm_sums() outputs into the scratch: 3 pixels, or 1 or 2
             # with a fused QAdd (else nncc_qconv_mm_px() takes them)
             "mm_short": q8_outs and (tail == 3 or (add["qa"] is not None and tail != 0)),
             # (3x3 windows: every quad this path gathers, nncc_qconv_widen3s2() widens instead)
             "col_s2k3": kind == "mm" and g["k"][1] != 3 and g["k"][2] == 3 and g["s"][2] == 2
             and g["d"][2] == 1}
    return {"shared": parts, "shared_fn": fn, "shared_needs": needs, "shared_out": out, "shared_qadd": qadd_fn,
            "shared_outs": outs, "shared_kind": kind,
            "shared_scratch": bool(scratch), "shared_ob": ob, "shared_inplace": kernel.endswith("_inplace"),
            "dw3_buf": DW3_BUF, "dw3_cols": DW3_COLS, "mm_block": MM_BLOCK, "mm_outs": mm_outs,
            "dw3_row": dw3_row,
            "ws_bytes": scratch or copy,
            "qp": {f: int(v) for f, v in qp.items()}, "qp_types": FIELDS,
            "rt": {**RUNTIME_Q, "scaling": ctx["scaling"]}, **add}
