"""Alias analysis: which tensors may share memory, decided before offsets are assigned.

Every tensor gets a location: a host buffer and a byte offset inside it. A host is an arena
buffer (named by its root tensor), a caller buffer (graph input or output) or a constant in
flash. Three rules merge tensors into one host, in this order (each relies on the previous):
1. views (`Op.view`: Reshape, Flatten, ...): the output is the input's memory and the kernel is
   skipped. A view of a graph input or a constant is a read-only pointer into it; a view whose
   output is a graph output moves its input's whole buffer into the caller's output buffer when
   it can (the producer then writes there), and otherwise keeps its copy kernel.
2. Concat with no copy: when all dims before the axis are 1, each input's slice of the output is
   contiguous; an input whose buffer holds nothing else is moved into its slice (its producer
   writes there) and the Concat copies only the inputs that could not be placed (or that its op
   says are not `placeable`: an int8 QConcat input it requantizes).
3. in place (`Op.inplace_inputs`, in schedule order): an elementwise kernel writes its output
   over an input of the same shape whose whole buffer is last read by that node. Only arena
   buffers are overwritten: caller inputs and constants are read-only, and a caller output must
   still hold its value when run() returns. Failing that, a kernel variant (`Op.inplace_kernel`:
   depthwise and 1x1 convs, with a workspace) may write its output over an input under the same
   conditions; the variant is recorded in `kernel`. Either way the overwritten buffer must not
   also hold another input of the node, which the kernel reads elsewhere than where it writes.
Workspaces (`Op.workspace_bytes` of the kernel chosen) are recorded per node in `workspace`; the
planner gives each an arena buffer live only at its node's step.
A buffer's lifetime is the union of its members' (first write to last read), so the planner
keeps a concat buffer from its first slice's producer to its last reader, and the lower bound
counts aliased tensors once. Moves only relocate a buffer whose members fill it exactly
("movable"), so every host keeps its members inside its own bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UnsupportedOp
from ..ir import Graph
from ..ops import make_op

NEVER = 1 << 60  # last use of a caller output: after the whole schedule


@dataclass
class Aliasing:
    loc: dict[str, tuple[str, int]] = field(default_factory=dict)  # tensor -> (host, byte offset)
    kind: dict[str, str] = field(default_factory=dict)  # host -> arena | input | output | const
    skipped: set[str] = field(default_factory=set)  # nodes whose kernel is not emitted
    placed: dict[str, list[int]] = field(default_factory=dict)  # concat node -> inputs written in place
    how: dict[str, str] = field(default_factory=dict)  # node -> view | concat | inplace
    kernel: dict[str, str] = field(default_factory=dict)  # node -> kernel variant chosen here
    workspace: dict[str, tuple[str, int]] = field(default_factory=dict)  # node -> (buffer, bytes)

    def host(self, t: str) -> str:
        return self.loc[t][0]

    def arena_hosts(self) -> list[str]:
        return [h for h, k in self.kind.items() if k == "arena"]


class _Union:
    """Union-find whose links carry byte offsets (a tensor's position inside its parent)."""

    def __init__(self, g: Graph, step: dict[str, int], last: dict[str, int]):
        self.g = g
        self.parent: dict[str, tuple[str, int]] = {}
        self.kind: dict[str, str] = {}
        self.first, self.last = dict(step), dict(last)  # per root: lifetime of the whole buffer

    def add(self, t: str, kind: str) -> None:
        if t not in self.parent:
            self.parent[t] = (t, 0)
            self.kind[t] = kind

    def find(self, t: str) -> tuple[str, int]:
        p, off = self.parent[t]
        if p == t:
            return t, 0
        root, o2 = self.find(p)
        self.parent[t] = (root, off + o2)
        return root, off + o2

    def nbytes(self, t: str) -> int:
        return self.g.tensors[t].nbytes

    def movable(self, t: str) -> bool:
        """t's buffer is an arena buffer that t fills exactly: it can go anywhere."""
        root, off = self.find(t)
        return self.kind[root] == "arena" and off == 0 and self.nbytes(root) == self.nbytes(t)

    def move(self, t: str, dest: str, off: int = 0) -> None:
        """Put the buffer of t (movable) at byte `off` of dest's location."""
        root, _ = self.find(t)
        host, base = self.find(dest)
        assert root != host and self.movable(t)
        self.parent[root] = (host, base + off)
        self.first[host] = min(self.first.get(host, NEVER), self.first.get(root, NEVER))
        self.last[host] = max(self.last.get(host, 0), self.last.get(root, 0))


def analyze_aliases(g: Graph, enable: bool = True) -> Aliasing:
    """Locations of every tensor of `g` for its current node order (the schedule)."""
    nodes = g.nodes()
    step, last = {}, {}
    for i, n in enumerate(nodes):
        for t in n.outputs:
            if t:
                step.setdefault(t, i)
        for t in n.inputs:
            if t:
                last[t] = i
    for t in g.outputs:
        last[t] = NEVER
    for t, s in step.items():
        last[t] = max(last.get(t, s), s)
    u = _Union(g, step, last)
    for t in g.inputs:
        u.add(t, "input")
    for n in nodes:
        for t in n.inputs + n.outputs:
            if t and t not in u.parent:
                u.add(t, "const" if g.is_const(t) else "output" if t in g.outputs else "arena")
    for t in g.outputs:
        u.add(t, "const" if g.is_const(t) else "output")
    al = Aliasing()
    ops = {n.name: _op(n) for n in nodes}
    if enable:
        for n in nodes:
            _view(u, g, n, ops[n.name], al)
        for n in nodes:
            if ops[n.name] is not None and ops[n.name].places_inputs:
                _concat(u, g, n, ops[n.name], al)
        for i, n in enumerate(nodes):
            _inplace(u, g, n, ops[n.name], i, al)
            _inplace_kernel(u, g, n, ops[n.name], i, al)
    for t in u.parent:
        al.loc[t] = u.find(t)
    al.kind = {h: u.kind[h] for h, _ in al.loc.values()}
    _workspaces(g, nodes, ops, al)
    return al


def chosen_kernel(n, al: Aliasing) -> str:
    """The node's kernel under this aliasing: the in-place variant chosen here, else the node's
    own (nncc/lower.py), never an in-place variant an earlier plan chose."""
    return al.kernel.get(n.name, "direct" if n.kernel.endswith("_inplace") else n.kernel)


def _infos(g: Graph, n):
    return [g.tensors[t] if t else None for t in n.inputs], [g.tensors[t] for t in n.outputs if t]


def _workspaces(g: Graph, nodes, ops, al: Aliasing) -> None:
    for n in nodes:
        op = ops[n.name]
        if op is None or n.name in al.skipped:
            continue
        size = op.workspace_bytes(*_infos(g, n), chosen_kernel(n, al))
        if size:
            name, k = f"workspace:{n.name}", 1
            while name in g.tensors:
                name, k = f"workspace:{n.name}:{k}", k + 1
            al.workspace[n.name] = (name, size)


def _op(n):
    """The node's Op, or None when it does not parse (synthetic graphs in planner tests):
    such a node simply aliases nothing."""
    try:
        return make_op(n)
    except UnsupportedOp:
        return None


def _single_output(n) -> str | None:
    outs = [t for t in n.outputs if t]
    return outs[0] if len(outs) == 1 else None


def _view(u: _Union, g: Graph, n, op, al: Aliasing) -> None:
    y = _single_output(n)
    x = n.inputs[0] if n.inputs else ""
    if not getattr(op, "view", False) or not x or y is None or u.nbytes(x) != u.nbytes(y):
        return
    if g.tensors[x].dtype != g.tensors[y].dtype or y in g.inputs:
        return
    if u.kind[y] == "arena":  # y becomes a name for x's memory, wherever that is
        u.move(y, x)
    elif u.kind[y] == "output" and u.find(y) == (y, 0) and u.movable(x):
        u.move(x, y)  # x's producer writes straight into the caller's output buffer
    else:
        return
    al.skipped.add(n.name)
    al.how[n.name] = "view"


def _concat(u: _Union, g: Graph, n, op, al: Aliasing) -> None:
    y = _single_output(n)
    if y is None or u.kind[u.find(y)[0]] not in ("arena", "output"):
        return
    shape = g.tensors[y].shape
    try:
        axis = op.axis(len(shape))
    except UnsupportedOp:
        return
    if any(d != 1 for d in shape[:axis]):
        return  # the slices are interleaved rows, not contiguous blocks
    inner = g.tensors[y].nbytes // max(shape[axis], 1) if shape[axis] else 0
    counts = {t: n.inputs.count(t) for t in n.inputs if t}
    placed, off = [], 0
    for j, x in enumerate(n.inputs):
        if not x:
            continue
        info = g.tensors[x]
        ok = (counts[x] == 1 and info.size and info.dtype == g.tensors[y].dtype and u.movable(x)
              and u.find(x)[0] != u.find(y)[0] and op.placeable(j))
        if ok:
            u.move(x, y, off)
            placed.append(j)
        off += info.shape[axis] * inner
    if placed:
        al.placed[n.name] = placed
        al.how[n.name] = "concat"
        if len(placed) == sum(1 for x in n.inputs if x and g.tensors[x].size):
            al.skipped.add(n.name)


def _inplace(u: _Union, g: Graph, n, op, i: int, al: Aliasing) -> None:
    y = _single_output(n)
    cands = getattr(op, "inplace_inputs", ())
    if y is None or not cands or n.name in al.skipped:
        return
    ty = g.tensors[y]
    for j in cands:
        x = n.inputs[j] if j < len(n.inputs) else ""
        if not x or j in op.const_inputs or g.is_const(x):
            continue
        tx = g.tensors[x]
        if tx.shape != ty.shape or tx.dtype != ty.dtype:
            continue
        if _overwrite(u, n, x, y, i, set(cands)):
            al.how[n.name] = "inplace"
            return


def _inplace_kernel(u: _Union, g: Graph, n, op, i: int, al: Aliasing) -> None:
    y = _single_output(n)
    if op is None or y is None or n.name in al.skipped or n.name in al.how:
        return
    found = op.inplace_kernel(*_infos(g, n))
    if found is None:
        return
    j, kernel = found
    x = n.inputs[j]
    if x and not g.is_const(x) and g.tensors[x].nbytes == g.tensors[y].nbytes and _overwrite(u, n, x, y, i, {j}):
        al.how[n.name] = "inplace"
        al.kernel[n.name] = kernel


def _overwrite(u: _Union, n, x: str, y: str, i: int, same_index: set[int]) -> bool:
    """Put y over x when x's buffer may be overwritten at step i; True when done. Inputs whose
    index is in `same_index` are read only where y is written; any other input of the node
    must live elsewhere."""
    rx, _ = u.find(x)
    ry, _ = u.find(y)
    # x's whole buffer must die here: nothing reads any of its tensors later.
    if rx == ry or u.kind[rx] != "arena" or u.last.get(rx, 0) != i:
        return False
    if any(t and k not in same_index and u.find(t)[0] == rx for k, t in enumerate(n.inputs)):
        return False
    if u.movable(y):
        u.move(y, x)
    elif u.movable(x) and u.kind[ry] in ("arena", "output"):
        u.move(x, y)
    else:
        return False
    return True
