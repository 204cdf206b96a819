"""Unrolled mode differentiates exactly the iterations that ran, with O(√K) memory.

The reference is plain JAX autodiff through an explicit `fori_loop` of the same K solver
updates, which is exact for the unrolled program (and affordable at these sizes).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
import zoo

RIDGE = zoo.ridge()


def explicit(F, solver, K):
    """x0, θ ↦ x_K by K solver updates, differentiated by plain JAX."""

    def run(x0, theta):
        fx = F(x0, theta)
        state = solver.init(x0, fx)

        def body(_, carry):
            x, fx, state = carry
            x, state = solver.step(x, fx, state)
            return x, F(x, theta), state

        return jax.lax.fori_loop(0, K, body, (x0, fx, state))[0]

    return run


def unrolled(F, solver, max_steps, tol=1e-300, every=None):
    def run(x0, theta):
        sol = itd.fixed_point(
            F,
            x0,
            theta,
            mode=itd.Unrolled(checkpoint_every=every),
            solver=solver,
            max_steps=max_steps,
            tol=tol,
            throw=False,
        )
        return sol.value

    return run


SOLVERS = {
    "picard": itd.Picard(),
    "damped": itd.Picard(damping=0.6),
    "anderson": itd.Anderson(history=3),
}
# Every segment layout with Picard (K < c, K = c, partial last segment, several segments);
# the other solvers on two layouts each, since they only change the step being differentiated.
SWEEPS = (
    [("picard", k, None) for k in (1, 2, 3, 7, 16, 50)]
    + [(name, k, None) for name in ("damped", "anderson") for k in (3, 16)]
    + [("picard", 50, 4), ("anderson", 23, 5), ("picard", 9, 100)]
)


@pytest.mark.parametrize("solver_name, max_steps, every", SWEEPS)
def test_reverse_equals_autodiff_of_the_loop(solver_name, max_steps, every):
    """K = max_steps (tol unreachable): segments of c steps, partial last segment."""
    solver = SOLVERS[solver_name]
    f = unrolled(RIDGE.F, solver, max_steps, every=every)
    g = explicit(RIDGE.F, solver, max_steps)
    x0 = jnp.linspace(-1.0, 1.0, RIDGE.x0.size)
    got = jax.jit(jax.jacrev(f, argnums=(0, 1)))(x0, RIDGE.theta)
    want = jax.jacfwd(g, argnums=(0, 1))(x0, RIDGE.theta)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_forward_equals_autodiff_of_the_loop_with_tol_stopping():
    f = unrolled(RIDGE.F, itd.Anderson(), 1000, tol=1e-9)
    sol = itd.fixed_point(RIDGE.F, RIDGE.x0, RIDGE.theta, solver=itd.Anderson(), tol=1e-9)
    K = int(sol.steps)
    assert 3 < K < 1000
    g = explicit(RIDGE.F, itd.Anderson(), K)
    got = jax.jit(jax.jacfwd(f, argnums=(0, 1)))(RIDGE.x0, RIDGE.theta)
    want = jax.jacfwd(g, argnums=(0, 1))(RIDGE.x0, RIDGE.theta)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_zero_steps_when_x0_is_already_the_fixed_point():
    x_bar = RIDGE.exact(RIDGE.theta)
    f = unrolled(RIDGE.F, itd.Picard(), 100, tol=1e-8)
    sol = itd.fixed_point(RIDGE.F, x_bar, RIDGE.theta, mode=itd.Unrolled(), tol=1e-8)
    assert int(sol.steps) == 0
    jx, jt = jax.jacrev(f, argnums=(0, 1))(x_bar, RIDGE.theta)
    np.testing.assert_allclose(jx, jnp.eye(x_bar.size), atol=0)
    np.testing.assert_allclose(jt, 0.0, atol=0)


def test_vmap_with_different_step_counts():
    thetas = jnp.asarray([0.05, 0.7, 5.0])
    f = unrolled(RIDGE.F, itd.Picard(), 2000, tol=1e-10)
    steps = jax.vmap(
        lambda t: itd.fixed_point(RIDGE.F, RIDGE.x0, t, mode=itd.Unrolled(), tol=1e-10).steps
    )(thetas)
    assert len(set(np.asarray(steps).tolist())) == 3
    got = jax.jit(jax.vmap(jax.grad(lambda t: f(RIDGE.x0, t).sum())))(thetas)
    for t, k, g in zip(thetas, steps, got, strict=True):
        loop = explicit(RIDGE.F, itd.Picard(), int(k))
        want = jax.grad(lambda t, loop=loop: loop(RIDGE.x0, t).sum())(t)
        np.testing.assert_allclose(g, want, rtol=1e-10)


def _largest_array(jaxpr) -> int:
    biggest = 0
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            biggest = max(biggest, math.prod(getattr(var.aval, "shape", ())))
        for param in eqn.params.values():
            subs = param if isinstance(param, (tuple, list)) else (param,)
            for sub in subs:
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    biggest = max(biggest, _largest_array(getattr(inner, "jaxpr", inner)))
    return biggest


def test_reverse_memory_is_sublinear_in_max_steps():
    """No array in the reverse pass grows like max_steps · n: storage is O(√max_steps · n)."""
    max_steps, n = 10_000, RIDGE.x0.size
    f = unrolled(RIDGE.F, itd.Picard(), max_steps)
    jaxpr = jax.make_jaxpr(jax.grad(lambda t: f(RIDGE.x0, t).sum()))(RIDGE.theta).jaxpr
    assert _largest_array(jaxpr) <= 2 * math.isqrt(max_steps) * n


def test_unrolled_converges_to_implicit_and_implicit_ignores_x0():
    x0 = jnp.ones(RIDGE.x0.size)

    def solve(mode):
        return lambda x0, t: itd.fixed_point(RIDGE.F, x0, t, mode=mode, tol=1e-12).value

    ju_x0, ju_t = jax.jacrev(solve(itd.Unrolled()), argnums=(0, 1))(x0, RIDGE.theta)
    ji_x0, ji_t = jax.jacrev(solve(itd.Implicit()), argnums=(0, 1))(x0, RIDGE.theta)
    np.testing.assert_allclose(ju_t, ji_t, atol=1e-9)  # unrolled error ~ Kρ^K ‖J‖
    np.testing.assert_allclose(ji_x0, 0.0, atol=0)
    assert float(jnp.max(jnp.abs(ju_x0))) < 1e-10  # A^K → 0 for a contraction
