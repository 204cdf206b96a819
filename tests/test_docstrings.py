"""Every public name of every public module has a docstring that documents it: a summary, an
Arguments section naming each argument (classes: their constructor's), and for functions a
Returns section. The API reference pages (docs/api/) are generated from these docstrings and
list every public name."""

import importlib
import inspect
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODULES = [
    "iterdiff",
    "iterdiff.linear_solve",
    "iterdiff.prox",
    "iterdiff.nonsmooth",
    "iterdiff.algorithms",
    "iterdiff.diagnostics",
    "iterdiff.bilevel",
    "iterdiff.estimators",
    "iterdiff.internal",
]
ARGUMENTS = re.compile(r"^(Arguments|Args|Attributes):\s*$", re.M)
RETURNS = re.compile(r"^(Returns|Yields):\s*$", re.M)


def public_names(module_name):
    """(qualified name, object) for each class or function a module re-exports."""
    module = importlib.import_module(module_name)
    # dir() and getattr, not vars(): `iterdiff` imports its public names on first use
    for name in sorted(dir(module)):
        if name.startswith("_"):
            continue
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            continue
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__.startswith(
            "iterdiff"
        ):
            yield f"{module_name}.{name}", obj


PUBLIC = [item for module in MODULES for item in public_names(module)]


def own_docstring(obj):
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    doc = inspect.cleandoc(doc or "")
    # dataclasses (equinox Modules) write "Name(field, ...)" when the class has no docstring.
    generated = inspect.isclass(obj) and doc.startswith(f"{obj.__name__}(")
    return "" if generated else doc


def arguments(obj):
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in signature.parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def test_every_module_is_walked():
    assert len(PUBLIC) > 100
    assert "iterdiff.fixed_point" in dict(PUBLIC)


@pytest.mark.parametrize("qualname, obj", PUBLIC, ids=[q for q, _ in PUBLIC])
def test_public_name_is_documented(qualname, obj):
    doc = own_docstring(obj)
    assert doc, f"{qualname} has no docstring"
    names = arguments(obj)
    if names:
        assert ARGUMENTS.search(doc), f"{qualname} takes {names} but has no Arguments section"
        section = doc[ARGUMENTS.search(doc).end() :]
        missing = [n for n in names if not re.search(rf"\b{re.escape(n)}\b", section)]
        assert not missing, f"{qualname}: the Arguments section does not describe {missing}"
    if inspect.isfunction(obj):
        assert RETURNS.search(doc), f"{qualname} has no Returns section"


@pytest.mark.parametrize("module_name", MODULES[1:])
def test_api_page_lists_every_public_name(module_name):
    page = ROOT / "docs" / "api" / f"{module_name.split('.')[-1]}.md"
    listed = set(re.findall(r"^::: (\S+)", page.read_text(encoding="utf-8"), re.M))
    module = importlib.import_module(module_name)
    names = [
        n for n in vars(module) if not n.startswith("_") and not inspect.ismodule(vars(module)[n])
    ]
    missing = [f"{module_name}.{n}" for n in names if f"{module_name}.{n}" not in listed]
    assert not missing, f"add `::: NAME` lines to {page.relative_to(ROOT)} for {missing}"


def test_core_api_page_lists_every_public_name():
    page = ROOT / "docs" / "api" / "iterdiff.md"
    listed = set(re.findall(r"^::: (\S+)", page.read_text(encoding="utf-8"), re.M))
    missing = [q for q, _ in public_names("iterdiff") if q not in listed]
    assert not missing, f"add `::: NAME` lines to docs/api/iterdiff.md for {missing}"
