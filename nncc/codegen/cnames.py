"""C identifiers for ONNX names: sanitised, never a reserved word, unique after sanitising."""
from __future__ import annotations

import re

from ..errors import UsageError

C_RESERVED = {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum",
    "extern", "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict",
    "return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef", "union",
    "unsigned", "void", "volatile", "while", "_Bool", "_Complex", "_Imaginary", "main",
    # names the generated code itself uses
    "arena", "input", "output", "NULL",
}


def sanitize(name: str) -> str:
    s = re.sub(r"[^0-9A-Za-z_]", "_", name)
    s = re.sub(r"_+", "_", s).strip("_") or "t"
    if s[0].isdigit():
        s = "t_" + s
    if s in C_RESERVED or s.startswith("__"):
        s = "t_" + s
    return s


def comment_text(name: str) -> str:
    """An ONNX name made safe inside a C block comment: ASCII only, no line breaks, and no `*/`
    or `/*` (gcc -Wcomment) that would end or nest the comment."""
    s = name.encode("ascii", "backslashreplace").decode("ascii")
    s = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", s)
    return s.replace("/*", "/ *").replace("*/", "* /")


def model_prefix(name: str) -> str:
    """The user-visible prefix of every generated symbol; must already be a clean identifier."""
    # nncc_* would clash with the runtime's own files and macros (nncc_runtime.h, NNCC_OK).
    if (not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or name in C_RESERVED
            or name.lower().startswith("nncc")):
        raise UsageError(f"--name {name!r} is not a valid C identifier (letters, digits, _; "
                         f"starting with a letter)")
    return name


class Namer:
    """Hands out unique C identifiers: `a.b` and `a_b` become `a_b` and `a_b_1`."""

    def __init__(self):
        self.used: set[str] = set()  # lower-cased: NAME_<CNAME>_SIZE macros are upper-cased
        self.given: dict[tuple[str, str], str] = {}

    def __call__(self, name: str, kind: str = "") -> str:
        key = (kind, name)
        if key not in self.given:
            base = (kind + "_" if kind else "") + sanitize(name)
            c, k = base, 1
            while c.lower() in self.used:
                c, k = f"{base}_{k}", k + 1
            self.used.add(c.lower())
            self.given[key] = c
        return self.given[key]
