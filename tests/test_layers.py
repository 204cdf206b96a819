"""The package's layers (issue 23): the import-linter contracts of pyproject.toml, no import
cycle between modules, no module below the command line importing the `iterdiff` package root
(the facade that lists everything), and no late (function-level) import of iterdiff modules."""

import ast
import pathlib
import sys

import pytest

grimp = pytest.importorskip("grimp")
importlinter_cli = pytest.importorskip("importlinter.cli")

ROOT = pathlib.Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

# The top layer uses the public API as a user would, and imports it late on purpose: the
# command answers --help and --version without importing JAX (tests/test_cli.py).
TOP = ("iterdiff.cli", "iterdiff.report", "iterdiff.experiments")


@pytest.fixture(scope="module")
def graph():
    sys.path.insert(0, str(SRC))
    try:
        return grimp.build_graph("iterdiff", cache_dir=None)
    finally:
        sys.path.remove(str(SRC))


def _in_top(module: str) -> bool:
    return any(module == t or module.startswith(t + ".") for t in TOP)


def test_import_linter_contracts_are_kept(monkeypatch):
    monkeypatch.syspath_prepend(str(SRC))
    monkeypatch.chdir(ROOT)
    code = importlinter_cli.lint_imports(
        config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True
    )
    assert code == 0, "a layer imports from a layer above it: run `lint-imports` for the chain"


def test_no_import_cycle(graph):
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if imported == "iterdiff" or importer == "iterdiff":
                continue  # the facade: checked by the next test
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycles.append((importer, *back))
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_only_the_top_layer_imports_the_package_root(graph):
    below = sorted(
        m
        for m in graph.find_modules_that_directly_import("iterdiff")
        if m != "iterdiff" and not _in_top(m)
    )
    assert not below, f"modules importing the iterdiff facade instead of its modules: {below}"


def _late_imports(path: pathlib.Path, base: pathlib.Path = SRC) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and id(node) not in top:
            if node.level > 0 or (node.module or "").startswith("iterdiff"):
                found.append(f"{path.relative_to(base)}:{node.lineno}")
        elif isinstance(node, ast.Import) and id(node) not in top:
            if any(alias.name.split(".")[0] == "iterdiff" for alias in node.names):
                found.append(f"{path.relative_to(base)}:{node.lineno}")
    return found


def test_no_late_import_below_the_top_layer():
    late = []
    for path in sorted((SRC / "iterdiff").rglob("*.py")):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        if module == "iterdiff" or _in_top(module):
            continue  # the facade's TYPE_CHECKING block; the command's lazy imports
        late += _late_imports(path)
    assert not late, f"imports inside functions (import at the top of the module): {late}"


def test_the_late_import_scan_can_fail(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import jax\n\n\ndef f():\n    from . import _tree\n    import iterdiff\n")
    assert _late_imports(path, tmp_path) == ["m.py:5", "m.py:6"]


def _private_imports(path: pathlib.Path, base: pathlib.Path = ROOT) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "iterdiff" and any(p.startswith("_") for p in parts[1:]):
                found.append(f"{path.relative_to(base)}:{node.lineno} {name}")
                break
    return found


def test_examples_benchmarks_and_tools_use_public_names_only():
    """They are written as a user would: iterdiff's public API and iterdiff.internal."""
    private = []
    for folder in ("examples", "benchmarks", "tools"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            private += _private_imports(path)
    assert not private, f"private iterdiff imports: {private}"


def test_the_private_import_scan_can_fail(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import iterdiff.internal\nfrom iterdiff import prox\n"
        "from iterdiff._timing import paired_ratio\nimport iterdiff.prox._common\n"
    )
    assert _private_imports(probe, tmp_path) == [
        "probe.py:3 iterdiff._timing",
        "probe.py:4 iterdiff.prox._common",
    ]
