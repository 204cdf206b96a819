"""lu_solver: x = M⁻¹b with derivatives that reuse the factors. Checked against the closed forms
dx = M⁻¹(db − dM x), b̄ = M⁻ᵀx̄, M̄ = −b̄xᵀ and central differences, in every transform."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithm_problems import central_difference
from iterdiff.algorithms._factored_solve import lu_solver

N = 7
RNG = np.random.default_rng(0)
M0 = jnp.asarray(RNG.normal(size=(N, N)) + 3.0 * np.eye(N))
B0 = jnp.asarray(RNG.normal(size=N))
DM = jnp.asarray(RNG.normal(size=(N, N)))
DB = jnp.asarray(RNG.normal(size=N))
C = jnp.asarray(RNG.normal(size=N))  # outer weights: loss = c·x


def x_of(M, b):
    return lu_solver(M)(b)


def loss(M, b):
    return C @ x_of(M, b)


def closed_forms(M, b):
    x = np.linalg.solve(M, b)
    b_bar = np.linalg.solve(np.asarray(M).T, C)
    return dict(
        x=x,
        x_dot=np.linalg.solve(M, DB - DM @ x),
        grad_M=-np.outer(b_bar, x),
        grad_b=b_bar,
        jac_b=np.linalg.inv(M),
    )


def test_value_and_central_difference():
    want = closed_forms(M0, B0)
    np.testing.assert_allclose(x_of(M0, B0), want["x"], rtol=1e-12)
    fd = central_difference(lambda t: x_of(*t), (M0, B0), (DM, DB), eps=1e-6)
    np.testing.assert_allclose(fd, want["x_dot"], rtol=1e-7)


TRANSFORMS = {
    "jvp": lambda M, b: jax.jvp(x_of, (M, b), (DM, DB))[1],
    "grad": jax.grad(loss, argnums=(0, 1)),
    "jacfwd": jax.jacfwd(x_of, argnums=1),
    "jacrev": jax.jacrev(x_of, argnums=1),
}
EXPECTED = {
    "jvp": lambda w: w["x_dot"],
    "grad": lambda w: (w["grad_M"], w["grad_b"]),
    "jacfwd": lambda w: w["jac_b"],
    "jacrev": lambda w: w["jac_b"],
}


@pytest.mark.parametrize("wrap", ["jit", "vmap"])
@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_derivatives_match_closed_form(name, wrap):
    fn = TRANSFORMS[name]
    if wrap == "jit":
        got, want = jax.jit(fn)(M0, B0), EXPECTED[name](closed_forms(M0, B0))
    else:  # a batch of two systems
        Ms, bs = jnp.stack([M0, M0 + DM / 10]), jnp.stack([B0, -B0])
        got = jax.vmap(fn)(Ms, bs)
        per = [EXPECTED[name](closed_forms(Ms[i], bs[i])) for i in range(2)]
        want = jax.tree_util.tree_map(lambda *v: np.stack(v), *per)
    jax.tree_util.tree_map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-10), got, want)


def test_second_order_matches_central_difference():
    """∂²(c·x)/∂b∂M along (DM, DB): grad is differentiable again."""
    grad_b = jax.jit(lambda M, b: jax.grad(loss, argnums=1)(M, b))
    got = jax.jvp(grad_b, (M0, B0), (DM, DB))[1]
    fd = central_difference(lambda t: grad_b(*t), (M0, B0), (DM, DB), eps=1e-6)
    np.testing.assert_allclose(got, fd, rtol=1e-7)


def test_reverse_mode_does_not_differentiate_the_factorisation():
    """Reverse mode through lu_factor transposes matrix-sized triangular solves; ours has none."""

    def through_factors(M, b):
        return C @ jax.scipy.linalg.lu_solve(jax.scipy.linalg.lu_factor(M), b)

    matrix_solve = re.compile(rf"f64\[{N},{N}\] = triangular_solve")
    ours = str(jax.make_jaxpr(jax.grad(loss))(M0, B0))
    theirs = str(jax.make_jaxpr(jax.grad(through_factors))(M0, B0))
    assert matrix_solve.search(theirs)
    assert not matrix_solve.search(ours)
