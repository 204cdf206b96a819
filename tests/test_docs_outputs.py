"""The outputs the documentation shows under its snippets are what the snippets print now
(tools/docs_outputs.py generates them; numbers within 5 %, times ignored)."""

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import docs_outputs  # noqa: E402

PAGES = docs_outputs.pages()


def test_trust_page_shows_check_gradients_table():
    trust = ROOT / "docs" / "trust.md"
    assert trust in PAGES
    (index, out), *_ = docs_outputs.shown(trust)
    assert index == 0 and out.startswith("mode ") and "finite differences" in out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_shown_outputs_are_current(page):
    outputs = docs_outputs.run_page(page)
    for index, out in docs_outputs.shown(page):
        problem = docs_outputs.same_output(out, outputs[index])
        assert not problem, (
            f"{page.name}, output of python block {index + 1} is stale ({problem}); "
            "run `python tools/docs_outputs.py`"
        )


def test_comparison_can_fail():
    table = "mode  value  time (s)\nImplicit  1.000e-01  0.003\n"
    assert docs_outputs.same_output(table, table.replace("0.003", "9.999")) == ""
    assert docs_outputs.same_output(table, table.replace("1.000e-01", "1.040e-01")) == ""
    assert "shown" in docs_outputs.same_output(table, table.replace("1.000e-01", "2.000e-01"))
    assert "lines" in docs_outputs.same_output(table, table + "extra\n")
