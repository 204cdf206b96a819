"""Claims have three-tier verdicts decided by a stated rule; experiments cite their sources by
author, title and venue; timings are medians with a spread; the report shows all of it and cuts
figures into panels. No experiment runs here (those are test_experiments_core/extra.py)."""

import ast
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

from iterdiff import experiments, report
from iterdiff.experiments import Claim, Result, _common
from iterdiff.experiments._base import NOT_REPRODUCED, PARTLY, REPRODUCED, VERDICTS, grade

SOURCES = pathlib.Path(experiments.__file__).parent


def test_grade_has_three_tiers():
    assert grade(True, False) == REPRODUCED and grade(True, True) == REPRODUCED
    assert grade(False, True) == PARTLY
    assert grade(False, False) == grade(False) == NOT_REPRODUCED
    assert grade(np.bool_(True)) == REPRODUCED


def test_a_claim_needs_a_known_verdict_and_a_rule():
    with pytest.raises(ValueError, match="verdict must be one of"):
        Claim("t", "p", "m", "agrees", "rule")
    with pytest.raises(ValueError, match="state the rule"):
        Claim("t", "p", "m", REPRODUCED, "")
    assert Claim("t", "p", "m", REPRODUCED, "r").passed
    assert not Claim("t", "p", "m", PARTLY, "r").passed


def _module_source(name):
    return (SOURCES / f"{experiments.EXPERIMENTS[name]}.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", list(experiments.EXPERIMENTS))
def test_sources_are_cited_for_a_reader(name):
    """No "seed 00x" jargon: a reader gets authors, a title in quotes and a venue with a year."""
    module = experiments.load(name)
    assert not re.search(r"\bseeds?\b(?! \d)|seed 0|seed material", module.SOURCE, re.I)
    assert re.search(r"“[^”]+”", module.SOURCE), module.SOURCE  # a quoted title
    assert re.search(r"\b(19|20)\d\d\b", module.SOURCE), module.SOURCE  # a year
    text = _module_source(name)
    jargon = re.findall(r"seed 00\d|the seed's|seed material|source material", text)
    assert not jargon, f"{name}: {jargon}"


@pytest.mark.parametrize("name", list(experiments.EXPERIMENTS))
def test_every_claim_states_a_rule(name):
    """Statically: each Claim(...) in an experiment passes a verdict computed by grade() and a
    rule (the tests that run the experiments check the values)."""
    tree = ast.parse(_module_source(name))
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Claim"
    ]
    assert calls
    for call in calls:
        keywords = {k.arg for k in call.keywords}
        assert len(call.args) + len(keywords) >= 5, ast.unparse(call)[:200]
        assert "rule" in keywords or len(call.args) >= 5, ast.unparse(call)[:200]
        assert "passed" not in keywords


def test_timing_median_and_spread():
    t = _common.Timing([1.0, 3.0, 2.0, 10.0, 2.5])
    assert t.median == 2.5 and t.low == 1.0 and t.high == 10.0
    assert t.text() == "2.50 (1.00–10.00)" and float(t) == 2.5
    f = jax.jit(lambda x: x @ x)
    ratios = _common.paired_ratios(f, f, jnp.ones((4, 4)), repeats=4, batch_seconds=0.001)
    assert ratios.samples.shape == (4,) and np.all(ratios.samples > 0)
    seconds = _common.call_times(f, jnp.ones((4, 4)), repeats=3, batch_seconds=0.001)
    assert seconds.samples.shape == (3,) and seconds.median > 0


def _result(verdicts, figure=None, name="x"):
    claims = [Claim(f"c{i}", "p", "m", v, f"rule {i}") for i, v in enumerate(verdicts)]
    return Result(name, "T", "A. Author, “Title”, Venue 2024", claims, figure)


def test_experiment_verdicts_and_the_lead():
    assert report.verdict(_result([REPRODUCED] * 3)) == ("reproduced", "ok")
    assert report.verdict(_result([REPRODUCED, PARTLY])) == ("partly reproduced", "part")
    word, cls = report.verdict(_result([REPRODUCED, PARTLY, NOT_REPRODUCED]))
    assert word == "not reproduced (1 of 3 claims)" and cls == "bad"
    results = [_result([REPRODUCED, PARTLY]), _result([NOT_REPRODUCED], name="y")]
    assert report.lead(results) == (
        "3 claims checked in 2 experiments: 1 reproduced, 1 partly reproduced, 1 not reproduced."
    )
    page = report.render(results, {"k": "v"})
    assert "Rule: rule 1" in page and "How verdicts are decided" in page
    for v in VERDICTS:
        assert v in page


def test_figures_are_cut_into_panels_by_row():
    fig = Figure(figsize=(8, 6), layout="constrained")
    axes = fig.subplots(2, 2)
    image = axes[1][1].imshow(np.eye(3))
    fig.colorbar(image, ax=axes[1][1])  # belongs to its panel
    for ax in axes.ravel():
        ax.plot([0, 1], [0, 1], label="a line")
        ax.legend()
    rows = report.figure_panels(fig)
    assert [len(row) for row in rows] == [2, 2]
    for row in rows:
        for png, width in row:
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and 250 <= width <= 450
    # the colorbar widens its panel
    assert rows[1][1][1] > rows[1][0][1]
