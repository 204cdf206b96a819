"""`iterdiff demo` (the README's main job) runs and its numbers hold."""

import pytest

from iterdiff import cli
from iterdiff.experiments import lasso_modes


@pytest.fixture(scope="module")
def demo_result():
    return lasso_modes.run(repeats=1)


def test_lasso_modes_errors_match_theory(demo_result):
    rows, info = demo_result
    errors = {row.mode: row.relative_error for row in rows}
    assert 0 < info["support"] < 10
    assert errors["Implicit()"] < 1e-9
    assert errors["Unrolled()"] < 1e-5
    assert 1e-4 < errors["Truncated(50)"] < 1e-1  # biased by about ρ^50
    assert errors["OneStep()"] > 0.1  # one-step is not exact for forward–backward


def test_demo_prints_every_mode_and_succeeds(demo_result, capsys, monkeypatch):
    monkeypatch.setattr(lasso_modes, "run", lambda repeats: demo_result)
    assert cli.main(["demo", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for mode in lasso_modes.MODES:
        assert mode in out
    assert "closed form on the support" in out
