"""Prints the ONNX conformance pass table per operator at the end of a test run, and starts every
test from the same draws of the test modules' shared generators (RNG)."""
import copy
from collections import defaultdict

import numpy as np

_results: dict[str, list[int]] = defaultdict(lambda: [0, 0])


def pytest_runtest_logreport(report):
    if report.when != "call" or "test_conformance.py::test_case" not in report.nodeid:
        return
    ops = dict(report.user_properties).get("conformance_ops", [])
    for op in ops:
        _results[op][0 if report.passed else 1] += 1


def pytest_terminal_summary(terminalreporter):
    if not _results:
        return
    tr = terminalreporter
    tr.section("ONNX conformance cases per operator (a case counts for every op it uses)")
    tr.write_line(f"{'operator':24}{'pass':>6}{'fail':>6}")
    for op, (p, f) in sorted(_results.items()):
        tr.write_line(f"{op:24}{p:6}{f:6}")


# A test module's generator RNG and its state once imported: each test starts from it, so a
# test's draws do not depend on which tests ran before it in the process (pytest-xdist runs a
# worker's tests in any order; some assertions hold for most draws only).
_rng_start: dict[str, tuple[np.random.Generator, dict]] = {}


def pytest_collection_modifyitems(items):
    for item in items:
        module = getattr(item, "module", None)
        rng = getattr(module, "RNG", None)
        if isinstance(rng, np.random.Generator) and module.__name__ not in _rng_start:
            _rng_start[module.__name__] = (rng, copy.deepcopy(rng.bit_generator.state))


def pytest_runtest_setup(item):
    for rng, state in _rng_start.values():
        rng.bit_generator.state = copy.deepcopy(state)
