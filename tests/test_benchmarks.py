"""Smoke test of `python -m benchmarks`: the tiny run with iterdiff's methods only (no anchors,
no timing assertions), so the benchmark cannot rot."""

import json
import sys
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.__main__ import main  # noqa: E402

METHODS = ["while_loop", "Implicit()", "Unrolled()", "OneStep()"]


def test_quick_tables_iterdiff_only(tmp_path):
    # The benchmark is user code: it runs under JAX's default (standard) dtype promotion.
    with jax.numpy_dtype_promotion("standard"):
        argv = ["tables", "--quick", "--problems", "ridge", "--methods", *METHODS]
        assert main([*argv, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "rows.json").read_text())
    by = {r["method"]: r for r in rows}
    assert len(by) == len(METHODS)
    for name in ("iterdiff Implicit()", "iterdiff Unrolled()"):
        assert by[name]["gradient_error"] < 1e-4, name  # Unrolled lags: ~K·ρᴷ
        assert by[name]["forward_error"] < 1e-6, name
        assert by[name]["ratio"] > 0 and by[name]["compile_s"] > 0, name
    assert by["iterdiff OneStep()"]["gradient_error"] > 1e-3  # wrong on gradient descent
    assert "Against the targets" in (tmp_path / "tables.md").read_text()
