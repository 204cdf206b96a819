"""Random structures in random cells: x and θ pytrees of tuples, lists, dicts and None with
Python floats, 0-d arrays and float32/float64 arrays; parameters passed as θ, as an equinox
Module θ, closed over by F, or held by F as an equinox Module; random dependency patterns
(output leaves independent of x or of θ, unused parameters); every map kind at a random rate
ρ; one mode × transform × wrapper per example, against the dense float64 reference.

Each example traces a new program (its structure is new), so this property is the costly one
per example; tests/conformance/test_conformance_grid.py covers every cell with fixed structures.
"""

import pytest
from cells import NO_SHRINK, SOLVERS, Kink, applies, run_cell
from generated import build
from grid import MODES, TRANSFORMS, WRAPPERS
from hypothesis import assume, given
from hypothesis import strategies as st
from strategies import problem_specs, rates, seeds, uniform

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.filterwarnings("error::iterdiff.UndeterminedDerivativeWarning"),
]


@st.composite
def modes_for(draw, kind: str):
    mode = draw(uniform(MODES))
    if mode == "implicit":
        return "implicit:" + draw(uniform(s for s in SOLVERS if applies(f"implicit:{s}", kind)))
    if mode == "truncated":
        return f"truncated:{draw(uniform(range(1, 5)))}"
    return mode


@NO_SHRINK
@given(
    spec=problem_specs(),
    rho=rates(0.0, 0.9),
    seed=seeds(),
    transform=uniform(TRANSFORMS),
    wrapper=uniform(WRAPPERS),
    data=st.data(),
)
def test_generated_problem(spec, rho, seed, transform, wrapper, data):
    mode = data.draw(modes_for(spec.kind), label="mode")
    try:
        run_cell(spec, build(spec, rho, seed), mode, transform, wrapper)
    except Kink:
        assume(False)
