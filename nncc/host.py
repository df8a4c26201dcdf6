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


class HostModel:
    """A compiled project loaded into this process."""

    def __init__(self, project: str | Path, report: dict, cflags: list[str] | None = None):
        import cffi
        self.project = Path(project)
        self.prefix = report["model"]
        self.inputs, self.outputs = report["inputs"], report["outputs"]
        self._tmp = tempfile.TemporaryDirectory(prefix="nncc-host-")
        lib = Path(self._tmp.name) / f"lib{self.prefix}.so"
        cmd = [compiler(), *(cflags or STRICT_CFLAGS), "-shared", "-fPIC",
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
        outs = [np.zeros(t["shape"], dtype=t["dtype"]) for t in self.outputs]
        args = [self.ffi.from_buffer(f"{t['ctype']}[]", a)
                for t, a in zip(self.inputs + self.outputs, ins + outs)]
        status = self._run(*args)
        if status != 0:
            raise BuildError(f"{self.prefix}_run returned {status}")
        return {t["name"]: a for t, a in zip(self.outputs, outs)}

    def close(self):
        self.ffi.dlclose(self.lib)
        self._tmp.cleanup()
