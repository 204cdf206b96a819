"""Every ```python block of every documentation page runs, in order, in one namespace per page,
so the docs never drift from the code. The README's blocks run too.

Pages with a runner of their own are skipped here (`OWN_RUNNER`) so they do not run twice.
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# Pages whose snippets run in a dedicated test file: page -> that file.
OWN_RUNNER = {
    "bring_your_own_solver.md": "test_docs_any_solver.py",
    "extending.md": "test_docs_extending.py",
    "migrating_from_jaxopt.md": "test_docs_any_solver.py",
    "scaling_up.md": "test_docs_scaling.py",
    "trust.md": "test_docs_outputs.py",  # it also compares the printed tables with the page's
}

BLOCK = re.compile(r"^```python\n(.*?)^```", flags=re.S | re.M)


def python_blocks(page: pathlib.Path) -> list[str]:
    """The ```python blocks of a Markdown page, in order."""
    return BLOCK.findall(page.read_text(encoding="utf-8"))


PAGES = sorted(
    [p for p in DOCS.rglob("*.md") if p.name not in OWN_RUNNER and python_blocks(p)]
    + [ROOT / "README.md"]
)


def test_the_pages_with_snippets_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "docs/index.md", "docs/modes.md", "docs/nonsmooth.md"} <= names


def test_pages_with_their_own_runner_have_one():
    """A page skipped here must be run by the test file named in OWN_RUNNER."""
    missing = [
        f"docs/{page} (expected tests/{runner})"
        for page, runner in OWN_RUNNER.items()
        if (DOCS / page).exists() and not (ROOT / "tests" / runner).exists()
    ]
    assert not missing, f"snippets that no test runs: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_snippets_run(page):
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for number, block in enumerate(python_blocks(page), start=1):
        code = compile(block, f"{page.relative_to(ROOT)} (python block {number})", "exec")
        try:
            exec(code, namespace)
        except Exception as err:  # pragma: no cover - the message names the failing block
            pytest.fail(f"{page.relative_to(ROOT)}, python block {number} failed: {err!r}\n{block}")
