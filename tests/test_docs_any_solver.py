"""The code blocks of docs/bring_your_own_solver.md and docs/migrating_from_jaxopt.md run, each
page in order in one namespace."""

import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("page", ["bring_your_own_solver.md", "migrating_from_jaxopt.md"])
def test_page_examples_run(page, capsys):
    path = DOCS / page
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        try:
            exec(compile(block, str(path), "exec"), namespace)
        except Exception as err:  # pragma: no cover - the message shows the failing block
            pytest.fail(f"docs/{page} block failed: {err!r}\n{block}")
