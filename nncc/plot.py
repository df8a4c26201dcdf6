"""`nncc analyze --plot FILE.svg`: a picture of the memory plan.

x is the schedule step, y the offset in the arena; every arena buffer is one rectangle from the
step that writes it to the last step that reads it, and from its offset to offset + size. A
dashed line marks the lower bound (peak bytes live at one step) and a solid one the arena the
planner reserved, so the gap between them is the fragmentation the layout costs. Python computes
every coordinate, colour and label here; templates/plot/memory.svg.j2 only lays them out (no SVG
is assembled from strings). Everything is a pure function of the plan, so the same model gives
the same bytes. Only SVG is written: a PNG needs a rasterizer, which would be a heavy dependency.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path

import jinja2

from .errors import UsageError
from .ir import Graph
from .memory import MemoryPlan, lifetimes
from .resources import resource_dir

TEMPLATE = "plot/memory.svg.j2"
LEFT, RIGHT, TOP, BOTTOM = 88, 28, 78, 58  # margins around the plot area, in px
PLOT_H = 420
MIN_W, MAX_W, STEP_W = 640, 1400, 22  # plot width: STEP_W px a step, clamped
FONT = 11
CHAR_W = 0.62 * FONT  # average glyph width, to decide whether a label fits
GOLDEN_ANGLE = 137.508  # successive hues as far apart as possible: neighbours stay distinct


@dataclass
class Rect:
    name: str
    x: float
    y: float
    w: float
    h: float
    fill: str
    tip: str  # the tooltip: full name, size, offset and lifetime
    label: str  # "" when not even a shortened name fits
    rotate: bool = False  # label written bottom to top
    lx: float = 0.0
    ly: float = 0.0


def _num(v: float) -> str:
    """Coordinates with at most two decimals and no trailing zeros (short, stable output)."""
    s = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if s == "-0" else s


def _colour(i: int) -> str:
    r, g, b = colorsys.hls_to_rgb((i * GOLDEN_ANGLE % 360) / 360, 0.76, 0.55)
    return "#{:02x}{:02x}{:02x}".format(*(round(c * 255) for c in (r, g, b)))


def nice_ticks(vmax: float, target: int = 6) -> list[int]:
    """Integer ticks 0, d, 2d, ... <= vmax with d in the 1-2-5 series, about `target` of them."""
    scale = 1
    while True:
        for m in (1, 2, 5):
            d = m * scale
            if vmax / d <= target:
                return list(range(0, int(vmax) + 1, d))
        scale *= 10


def shorten(name: str, room: int) -> str:
    """`name` in at most `room` characters: whole; else its most telling part (the first of
    tf2onnx's ";"-joined fused names, without PyTorch's "_output_0" suffix); else that part's
    last path components (the op and its block say more than the common prefix); else its
    tail. "" when fewer than 5 characters fit."""
    if len(name) <= room:
        return name
    name = name.split(";")[0]
    name = name.removesuffix("_output_0")
    if len(name) <= room:
        return name
    parts = name.split("/")
    for k in range(1, len(parts)):
        tail = "\u2026" + "/".join(parts[k:])
        if parts[k] and len(tail) <= room:
            return tail
    return "\u2026" + name[len(name) - room + 1:] if room >= 5 else ""


def fit_label(name: str, w: float, h: float) -> tuple[str, bool]:
    """The label drawn inside a w x h box and whether it runs upwards: tall narrow buffers
    (short-lived, large) get more room along their height."""
    across = int((w - 6) / CHAR_W) if h >= FONT + 2 else 0
    up = int((h - 6) / CHAR_W) if w >= FONT + 2 else 0
    if up > across and len(name) > across:
        return shorten(name, up), True
    return shorten(name, across), False


def geometry(g: Graph, plan: MemoryPlan) -> dict:
    """Every number the template draws. `g` must be the graph plan_memory scheduled."""
    if [n.name for n in g.nodes()] != plan.schedule:
        raise ValueError("the graph's node order is not the plan's schedule")
    bufs = [b for b in lifetimes(g) if b.name in plan.offsets]
    steps = max(len(plan.schedule), 1)
    plot_w = min(MAX_W, max(MIN_W, STEP_W * steps))
    sx = plot_w / steps
    ymax = max(plan.arena_bytes, 1) * 1.1  # headroom above the arena line for its label
    sy = PLOT_H / ymax
    base = TOP + PLOT_H

    def y(off: float) -> float:
        return round(base - off * sy, 2)

    rects = []
    for i, b in enumerate(bufs):
        off, size = plan.offsets[b.name], plan.sizes[b.name]
        x0, x1 = LEFT + b.first * sx, LEFT + (b.last + 1) * sx
        top, h = y(off + size), max(round(size * sy, 2), 1.0)  # keep empty tensors visible
        tip = f"{b.name}: {size:,} B at offset {off:,}, steps {b.first}-{b.last}"
        label, rotate = fit_label(b.name, x1 - x0, h)
        r = Rect(b.name, round(x0, 2), top, round(x1 - x0, 2), h, _colour(i), tip, label, rotate)
        # the text's centre on the box's centre (0.35 em: half the height of lower-case glyphs)
        cx, cy = (x0 + x1) / 2, top + h / 2
        r.lx, r.ly = (round(cx + FONT * 0.35, 2), round(cy, 2)) if rotate else \
            (round(cx, 2), round(cy + FONT * 0.35, 2))
        rects.append(r)

    xt = nice_ticks(steps - 1, 12)
    yt = nice_ticks(ymax, 8)
    over = plan.arena_bytes - plan.lower_bound_bytes
    pct = f" (+{100 * over / plan.lower_bound_bytes:.1f}%)" if plan.lower_bound_bytes else ""
    return {
        "width": LEFT + plot_w + RIGHT, "height": TOP + PLOT_H + BOTTOM, "font": FONT,
        "left": LEFT, "top": TOP, "right": LEFT + plot_w, "bottom": base,
        "plot_w": plot_w, "plot_h": PLOT_H,
        "title": f"{g.name}: memory plan",
        "subtitle": [(f"arena {plan.arena_bytes:,} B{pct}, lower bound {plan.lower_bound_bytes:,} B, "
                      f"naive {plan.naive_bytes:,} B (no reuse)"),
                     (f"{len(rects)} buffers over {len(plan.schedule)} steps; planner "
                      f"{plan.strategy or '-'}, schedule {plan.scheduler}")],
        "rects": rects,
        "xticks": [(round(LEFT + (s + 0.5) * sx, 2), str(s)) for s in xt],
        "yticks": [(y(v), f"{v:,}") for v in yt],
        "arena": {"y": y(plan.arena_bytes), "label": f"arena {plan.arena_bytes:,} B"},
        "lower": {"y": y(plan.lower_bound_bytes), "label": f"lower bound {plan.lower_bound_bytes:,} B"},
        "empty": not rects,
    }


def render_svg(g: Graph, plan: MemoryPlan) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(resource_dir("templates"))),
                             undefined=jinja2.StrictUndefined, autoescape=True, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["n"] = _num
    return env.get_template(TEMPLATE).render(**geometry(g, plan))


def check_plot_path(path: str) -> Path:
    """Refuse early (before any planning) a file name we cannot write."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext == ".png":
        svg = p.with_suffix(".svg")
        raise UsageError(f"--plot {path}: only SVG is written (a PNG needs a rasterizer nncc does not "
                         f"depend on); write {svg} and convert it, e.g. rsvg-convert -o {path} {svg}")
    if ext != ".svg":
        raise UsageError(f"--plot {path}: the file name must end in .svg")
    return p


def write_plot(path: str, g: Graph, plan: MemoryPlan) -> Path:
    p = check_plot_path(path)
    try:
        # newline="\n": the same bytes on every platform
        p.write_text(render_svg(g, plan), encoding="utf-8", newline="\n")
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
    return p
