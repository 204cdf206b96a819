"""Every mode × {jvp, grad, jacfwd, jacrev, hessian} × {eager, jit, vmap} on generated
contractive problems, against the dense float64 reference (tests/conformance/dense_reference.py).

Each cell (tests/conformance/grid.py) fixes the problem's structure, map kind and linear solver,
and draws its numbers (the contraction rate ρ and a seed for the matrices, the parameters, the
tangents): one compiled program serves all of a cell's examples. Eager cells trace again at
every example, so they take fewer (`EAGER_EXAMPLES`). Every example also checks that the
forward solve reports success only with its own residual within the tolerance, and that x_K is
within that residual's distance of the true fixed point.
"""

import os

import pytest
from cells import NO_SHRINK, Kink, run_cell
from generated import build
from grid import CELLS
from hypothesis import assume, given, settings
from strategies import rates, seeds

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.filterwarnings("error::iterdiff.UndeterminedDerivativeWarning"),
]

THOROUGH = os.environ.get("ITERDIFF_HYPOTHESIS") == "thorough"
EAGER_EXAMPLES = 5 if THOROUGH else 1


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
def test_cell(cell):
    budget = {} if cell.wrapper != "eager" else {"max_examples": EAGER_EXAMPLES}

    @settings(NO_SHRINK, **budget)  # one settings object (hypothesis refuses two)
    @given(rho=rates(0.0, 0.9), seed=seeds())
    def prop(rho, seed):
        try:
            run_cell(
                cell.spec, build(cell.spec, rho, seed), cell.mode, cell.transform, cell.wrapper
            )
        except Kink:
            assume(False)

    prop()
