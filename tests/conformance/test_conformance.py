"""ONNX conformance: every in-scope case passes; every other case is refused cleanly.

The per-operator pass table is printed at the end of the run (see tests/conftest.py).
"""
import pytest

from tests.conformance import harness

CASES = harness.all_cases()
SUPPORTED = harness.supported_ops()
KNOWN_BAD = harness.known_bad()
REFUSED = harness.refused()
IN_SCOPE = sorted(n for n, c in CASES.items() if harness.in_scope(c, SUPPORTED)
                  and n not in KNOWN_BAD and n not in REFUSED)
OUT_OF_SCOPE = sorted(n for n, c in CASES.items() if not harness.in_scope(c, SUPPORTED))


def test_scope_is_not_empty():
    assert len(IN_SCOPE) > 100, f"only {len(IN_SCOPE)} in-scope conformance cases"


@pytest.mark.parametrize("name", IN_SCOPE)
def test_case(name, record_property):
    record_property("conformance_ops", sorted(CASES[name].ops))
    harness.run_case(CASES[name])


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_on_purpose(name):
    """Training-mode semantics of supported ops: a clear refusal, never wrong numbers."""
    msg = harness.refusal(CASES[name])
    assert msg is not None and "unsupported" in msg.lower(), msg


@pytest.mark.parametrize("name", sorted(KNOWN_BAD))
def test_known_bad_still_listed(name):
    """Each exclusion names a real case (so the list cannot rot)."""
    assert name in CASES, f"{name} is listed in known_bad.txt but no such case exists"


def test_out_of_scope_refused():
    """Cases with other operators or dtypes fail with a clear nncc error, never a crash."""
    crashed, compiled = [], []
    for name in OUT_OF_SCOPE:
        try:
            msg = harness.refusal(CASES[name])
        except Exception as e:  # noqa: BLE001  # any non-nncc exception is a bug
            crashed.append(f"{name}: {type(e).__name__}: {e}"[:200])
            continue
        if msg is None:  # folded to constants at import (Constant, ConstantOfShape...)
            try:
                harness.run_case(CASES[name])
            except Exception as e:  # noqa: BLE001  # collect every wrong case
                compiled.append(f"{name}: {' '.join(str(e).split())}"[:200])
    print(f"\nconformance: {len(IN_SCOPE)} in scope, {len(OUT_OF_SCOPE)} out of scope "
          f"(other operators or dtypes), {len(KNOWN_BAD)} known bad, {len(REFUSED)} refused on purpose")
    assert not crashed, "\n".join(crashed[:20])
    assert not compiled, "compiled but wrong:\n" + "\n".join(compiled[:20])
