"""Prints the ONNX conformance pass table per operator at the end of a test run."""
from collections import defaultdict

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
