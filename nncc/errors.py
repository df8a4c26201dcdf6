"""Errors a user can cause. The CLI prints any NnccError as one line on stderr and exits non-zero;
anything else is a bug in nncc and keeps its traceback."""


class NnccError(Exception):
    """Base class: a problem with the user's model, options or files."""


class BadModel(NnccError):
    """The file is not a valid ONNX model, or the model is inconsistent."""


class UnsupportedOp(NnccError):
    """Operators (or attributes of an operator) that nncc cannot compile."""


class ShapeError(NnccError):
    """A shape is dynamic and not pinned, or the shapes of a node do not agree."""


class UsageError(NnccError):
    """A command-line option or file given by the user is wrong."""


class BuildError(NnccError):
    """The generated C failed to compile or run."""


class DoesNotFit(NnccError):
    """The model does not fit the target's RAM or flash."""
