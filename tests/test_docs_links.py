"""The documentation stays inside the repository: no page (nor the README, nor mkdocs.yml's nav)
points to a file outside it, and every relative link resolves to a file that exists."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
OUTSIDE = re.compile(r"\.\./shared|/work/|(?<![\w.])shared/(seeds|THEORY|DESIGN|STYLE)")


def name(page):
    return page.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_no_reference_outside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    hits = [m.group(0) for m in OUTSIDE.finditer(text)]
    assert not hits, f"{name(page)} refers to files outside the repository: {hits}"


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address, mail link or an anchor on the same page
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.is_relative_to(ROOT):
            broken.append(f"{target} (outside the repository)")
        elif not path.exists():
            broken.append(f"{target} (no such file)")
    assert not broken, f"{name(page)} has broken links: {broken}"


def test_nav_pages_exist():
    nav = re.findall(r"^\s*-\s[^#\n]*:\s*(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert len(nav) >= 10
    missing = [page for page in nav if not (ROOT / "docs" / page).exists()]
    assert not missing, f"mkdocs.yml's nav lists missing pages: {missing}"


# The API reference renders the docstrings of these packages (experiments/ and cli.py are not
# part of it).
DOCUMENTED_SOURCES = sorted(
    p
    for p in (ROOT / "src" / "iterdiff").rglob("*.py")
    if "experiments" not in p.parts and p.name != "cli.py"
)


@pytest.mark.parametrize("source", DOCUMENTED_SOURCES, ids=name)
def test_docstrings_refer_to_nothing_outside_the_repository(source):
    text = source.read_text(encoding="utf-8")
    hits = [m.group(0) for m in OUTSIDE.finditer(text)]
    hits += re.findall(r"\b(?:THEORY|BASELINE|DESIGN|STYLE|ROADMAP)\.md\b", text)
    assert not hits, f"{name(source)} refers to files outside the repository: {hits}"
