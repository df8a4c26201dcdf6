"""Host build and run: compile a generated project with gcc into a shared library, load it with
cffi (ABI mode) and call NAME_run() on numpy arrays. Used by `nncc run`/`validate` and tests."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .errors import BuildError

STRICT_CFLAGS = ["-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic",
                 "-ffp-contract=off"]


def compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise BuildError("no C compiler found (install gcc or set CC)")
    return cc


GUARD_FAILED = 1000  # runtime_c/nncc_runtime.h NNCC_GUARD_FAILED
CANARY = 64  # bytes after each output buffer that the model must leave as they are


def guard_failure(status: int) -> str | None:
    """What NAME_run()'s status says when an NNCC_GUARD build's check failed, else None."""
    if status < GUARD_FAILED:
        return None
    return (f"layer {status - GUARD_FAILED} (in run()'s order) wrote outside its output and "
            f"scratch in the arena (NNCC_GUARD)")


class HostModel:
    """A compiled project loaded into this process. It is built with NNCC_GUARD (templates/
    model.c.j2): run() checks that each layer writes only where the memory plan lets it, and
    each output buffer is followed by a canary that must come back untouched."""

    def __init__(self, project: str | Path, report: dict, cflags: list[str] | None = None):
        import cffi
        self.project = Path(project)
        self.prefix = report["model"]
        self.inputs, self.outputs = report["inputs"], report["outputs"]
        self._tmp = tempfile.TemporaryDirectory(prefix="nncc-host-")
        lib = Path(self._tmp.name) / f"lib{self.prefix}.so"
        cmd = [compiler(), *(cflags or STRICT_CFLAGS), "-DNNCC_GUARD", "-shared", "-fPIC",
               str(self.project / f"{self.prefix}.c"), "-o", str(lib), "-lm"]
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise BuildError(f"gcc failed on {self.project}: {r.stderr.strip()[:2000]}")
        self.ffi = cffi.FFI()
        params = [f"const {t['ctype']} *" for t in self.inputs] + [f"{t['ctype']} *" for t in self.outputs]
        self.ffi.cdef(f"int {self.prefix}_run({', '.join(params)});")
        self.lib = self.ffi.dlopen(str(lib))
        self._run = getattr(self.lib, f"{self.prefix}_run")

    def run(self, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ins = [np.ascontiguousarray(sample[t["name"]], dtype=t["dtype"]).reshape(t["shape"])
               for t in self.inputs]
        bufs = [np.zeros(np.dtype(t["dtype"]).itemsize * int(np.prod(t["shape"])) + CANARY, np.uint8)
                for t in self.outputs]
        for b in bufs:
            b[-CANARY:] = 0xA5
        outs = [b[:-CANARY].view(t["dtype"]).reshape(t["shape"]) for t, b in zip(self.outputs, bufs)]
        args = [self.ffi.from_buffer(f"{t['ctype']}[]", a)
                for t, a in zip(self.inputs + self.outputs, ins + outs)]
        status = self._run(*args)
        if guard_failure(status):
            raise BuildError(f"{self.prefix}_run: {guard_failure(status)}")
        if status != 0:
            raise BuildError(f"{self.prefix}_run returned {status}")
        for t, b in zip(self.outputs, bufs):
            if (b[-CANARY:] != 0xA5).any():
                raise BuildError(f"{self.prefix}_run wrote past the end of output {t['name']}")
        return {t["name"]: a.copy() for t, a in zip(self.outputs, outs)}

    def close(self):
        self.ffi.dlclose(self.lib)
        self._tmp.cleanup()
