"""The code blocks of docs/trust.md run, in order, in one namespace."""

import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "trust.md"


def test_trust_page_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 4
    namespace: dict = {}
    for block in blocks:
        try:
            exec(compile(block, str(DOC), "exec"), namespace)
        except Exception as err:  # pragma: no cover - the message shows the failing block
            pytest.fail(f"docs/trust.md block failed: {err!r}\n{block}")
    assert "finite differences" in capsys.readouterr().out
