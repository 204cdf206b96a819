"""The core installs jax, equinox and numpy only; the layers above it need an extra each, and
importing one without it names the extra (issue 23 item 7)."""

import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

from iterdiff import _extras

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
EXTRA_PACKAGES = ("optax", "tqdm", "sklearn", "cloudpickle", "matplotlib")
IMPORT_NAME = {"scikit-learn": "sklearn"}


def _names(requirements) -> set[str]:
    names = (re.split(r"[<>=!\[ ;]", r, maxsplit=1)[0] for r in requirements)
    return {IMPORT_NAME.get(n, n) for n in names}


def test_the_core_depends_on_jax_equinox_numpy_only():
    assert _names(PYPROJECT["project"]["dependencies"]) == {"jax", "jaxlib", "numpy", "equinox"}


@pytest.mark.parametrize("extra", sorted(_extras.EXTRAS))
def test_extras_in_pyproject_match_the_error_messages(extra):
    assert _names(PYPROJECT["project"]["optional-dependencies"][extra]) == set(
        _extras.EXTRAS[extra]
    )


def test_the_test_extra_installs_every_layer():
    test = _names(PYPROJECT["project"]["optional-dependencies"]["test"])
    assert set().union(*_extras.EXTRAS.values()) <= test


# In a fresh interpreter with every extra-only package blocked (an import of it fails as if it
# were not installed): the core works, and each layer above it names its extra.
BLOCKED = f"""
import sys
for name in {EXTRA_PACKAGES!r}:
    sys.modules[name] = None
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import iterdiff as itd
from iterdiff import algorithms, diagnostics, internal, linear_solve, nonsmooth, prox

def F(x, t):
    return 0.5 * jnp.cos(x) + t

g = jax.jit(jax.grad(lambda t: itd.fixed_point(F, 0.0, t, mode=itd.Implicit()).value))(0.3)
x = itd.fixed_point(F, 0.0, 0.3).value
assert abs(float(g) - 1 / (1 + 0.5 * jnp.sin(x))) < 1e-10, float(g)
print("CORE OK")
for module in ("iterdiff.bilevel", "iterdiff.estimators"):
    try:
        __import__(module)
    except ImportError as err:
        print(module, "->", err)
from iterdiff.cli import main
print("demo exit", main(["demo", "--out", "unused-report"]))
"""


@pytest.fixture(scope="module")
def blocked_run():
    return subprocess.run(
        [sys.executable, "-c", BLOCKED], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def test_the_core_runs_without_any_extra(blocked_run):
    assert "CORE OK" in blocked_run.stdout, blocked_run.stderr[-3000:]


@pytest.mark.parametrize(
    ("module", "extra"), [("iterdiff.bilevel", "bilevel"), ("iterdiff.estimators", "tuners")]
)
def test_a_layer_without_its_extra_names_it(blocked_run, module, extra):
    line = next((line for line in blocked_run.stdout.splitlines() if line.startswith(module)), "")
    assert f"pip install 'iterdiff[{extra}]'" in line, blocked_run.stdout + blocked_run.stderr


def test_the_demo_without_its_extra_says_which_and_exits_2(blocked_run):
    assert "demo exit 2" in blocked_run.stdout, blocked_run.stdout + blocked_run.stderr
    assert "pip install 'iterdiff[demo]'" in blocked_run.stderr
    assert not (ROOT / "unused-report").exists()
