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


def test_bench_core_row_on_a_tiny_ridge():
    """`python -m benchmarks.bench_core` measures a row; the error and memory columns (which
    do not depend on the machine's load) meet issue 14's targets on a tiny ridge."""
    from benchmarks import bench_core, problems

    with jax.numpy_dtype_promotion("standard"):
        row = bench_core.measure(problems.ridge(12, 6), repeats=1)
    assert row["K"] > 10
    assert row["Implicit error"] < 1e-8
    assert row["reference vs central difference"] < 1e-6
    assert 0 < row["memory"] <= bench_core.TARGETS["memory"] * 1.1
    for key in ("loop", "Unrolled", "Implicit", "OneStep"):
        assert row[key] > 0, key
    for mode in bench_core.MODES:
        assert 0 < row[f"compile {mode}"] < 120, mode
    assert "| ridge 12×6 |" in bench_core.markdown([row])
