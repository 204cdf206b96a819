"""The ```python blocks of docs/scaling_up.md run, in order, in one namespace (from the
repository root, as the page's paths are relative to it)."""

import pathlib
import re

import jax
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "scaling_up.md"


def test_scaling_page_examples_run(capsys, monkeypatch):
    text = DOC.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 6
    assert "jax.distributed.initialize" in text  # the multi-host recipe (not executed)
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    # the page is user code: JAX's standard promotion (conftest makes it strict)
    with jax.numpy_dtype_promotion("standard"):
        for block in blocks:
            try:
                exec(compile(block, str(DOC), "exec"), namespace)
            except Exception as err:  # pragma: no cover - the message shows the failing block
                pytest.fail(f"docs/scaling_up.md block failed: {err!r}\n{block}")
    assert "Half precision is not supported" in capsys.readouterr().out
