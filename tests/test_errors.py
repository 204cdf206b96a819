"""Bad input gets a clear error; failures are reported, never a silent wrong derivative."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
import zoo

RIDGE = zoo.ridge()

# What a jit-safe runtime error surfaces as, depending on the JAX version.
RuntimeErrors = (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError, RuntimeError)


def test_structure_mismatch_names_both_structures():
    with pytest.raises(ValueError, match="same pytree structure"):
        itd.fixed_point(lambda x, t: (x["a"],), {"a": jnp.zeros(2)}, 1.0)


def test_shape_mismatch_names_the_leaf():
    with pytest.raises(ValueError, match=r"shape \(3,\) for leaf x\['b'\]"):
        itd.fixed_point(
            lambda x, t: {"a": x["a"], "b": jnp.zeros(3)},
            {"a": jnp.zeros(2), "b": jnp.zeros(2)},
            1.0,
        )


def test_dtype_mismatch_names_the_leaf():
    with pytest.raises(ValueError, match=r"dtype float32 .*x0 has dtype float64"):
        itd.fixed_point(lambda x, t: x.astype(jnp.float32), jnp.zeros(2), 1.0)


def test_integer_x0_is_rejected():
    with pytest.raises(TypeError, match="real floating-point"):
        itd.fixed_point(lambda x, t: x, jnp.zeros(2, jnp.int32), 1.0)


def test_empty_x0_is_rejected():
    with pytest.raises(ValueError, match="no array leaves"):
        itd.fixed_point(lambda x, t: x, {}, 1.0)


def test_failing_F_says_so():
    with pytest.raises(TypeError, match="calling F"):
        itd.fixed_point(lambda x, t: x @ jnp.ones((3, 3)), jnp.zeros(2), 1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_steps": 0}, "max_steps"),
        ({"max_steps": 2.5}, "max_steps"),
        ({"tol": -1e-3}, "tol"),
        ({"tol": 0.0}, "tol"),
        ({"throw": "yes"}, "throw"),
        ({"mode": "implicit"}, "mode object"),
        ({"solver": None}, "solver object"),
    ],
)
def test_bad_options_rejected(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        itd.fixed_point(RIDGE.F, RIDGE.x0, RIDGE.theta, **kwargs)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: itd.Truncated(0), "k must be"),
        (lambda: itd.Unrolled(checkpoints=0), "checkpoints"),
        (lambda: itd.Truncated(2.0), "k must be"),
        (lambda: itd.Picard(damping=0.0), "damping"),
        (lambda: itd.Picard(damping=1.5), "damping"),
        (lambda: itd.Anderson(history=0), "history"),
        (lambda: itd.Anderson(mixing=0.0), "mixing"),
        (lambda: itd.Implicit(linear_solver="gmres"), "linear_solver"),
        (lambda: itd.linear_solve.GMRES(tol=-1.0), "tol"),
        (lambda: itd.linear_solve.GMRES(restart=0), "restart"),
        (lambda: itd.linear_solve.CG(max_steps=0), "max_steps"),
    ],
)
def test_bad_constructions_rejected(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def _slow_ridge(theta):
    return itd.fixed_point(RIDGE.F, RIDGE.x0, theta, max_steps=5, throw=False)


def test_non_convergence_is_reported_with_throw_false():
    sol = jax.jit(_slow_ridge)(RIDGE.theta)
    assert int(sol.steps) == 5
    assert not bool(sol.converged)
    assert int(sol.result) == itd.RESULTS.max_steps_reached
    assert "did not converge" in sol.message()


def test_non_convergence_raises_under_jit_with_throw_true():
    f = jax.jit(lambda t: itd.fixed_point(RIDGE.F, RIDGE.x0, t, max_steps=5).value)
    with pytest.raises(RuntimeErrors, match="did not converge"):
        jax.block_until_ready(f(RIDGE.theta))


def test_nonfinite_iterates_are_reported():
    def F(x, t):
        return 2.0 * x + t  # diverges to inf, then NaN

    sol = itd.fixed_point(F, jnp.ones(2), 1.0, max_steps=5000, throw=False)
    assert int(sol.result) == itd.RESULTS.nonfinite
    assert int(sol.steps) < 5000  # stopped as soon as the residual became non-finite
    with pytest.raises(RuntimeErrors, match="NaN or inf"):
        jax.block_until_ready(itd.fixed_point(F, jnp.ones(2), 1.0, max_steps=5000).value)


STARVED = itd.Implicit(itd.linear_solve.GMRES(max_steps=2, restart=2))


@pytest.mark.parametrize("transform", ["jvp", "grad"])
def test_failed_linear_solve_raises(transform):
    def f(t):
        return itd.fixed_point(RIDGE.F, RIDGE.x0, t, mode=STARVED).value

    run = (
        (lambda t: jax.jvp(f, (t,), (1.0,))[1])
        if transform == "jvp"
        else jax.grad(lambda t: f(t).sum())
    )
    with pytest.raises(RuntimeErrors, match="implicit derivative"):
        jax.block_until_ready(jax.jit(run)(RIDGE.theta))


@pytest.mark.parametrize("transform", ["jvp", "grad"])
def test_failed_linear_solve_gives_nan_with_throw_false(transform):
    def f(t):
        return itd.fixed_point(RIDGE.F, RIDGE.x0, t, mode=STARVED, throw=False).value

    run = (
        (lambda t: jax.jvp(f, (t,), (1.0,))[1])
        if transform == "jvp"
        else jax.grad(lambda t: f(t).sum())
    )
    assert np.all(np.isnan(jax.jit(run)(RIDGE.theta)))


def test_singular_system_with_dense_lu_is_reported():
    """A dense LU on the exactly singular Sinkhorn system must not return garbage silently."""
    case = zoo.sinkhorn()
    mode = itd.Implicit(itd.linear_solve.LU())

    def f(C):
        sol = itd.fixed_point(case.F, case.x0, C, mode=mode, max_steps=3000, tol=1e-13, throw=False)
        return case.readout(sol.value, C)

    out = jax.jit(lambda C: jax.jvp(f, (C,), (jnp.ones_like(C),))[1])(case.theta)
    finite_and_right = np.all(np.isfinite(out))
    if finite_and_right:
        # LU may succeed by luck of rounding; then it must be right (the residual check held).
        want = jax.jvp(
            lambda C: case.readout(case.exact(C), C), (case.theta,), (jnp.ones_like(case.theta),)
        )[1]
        np.testing.assert_allclose(out, want, atol=1e-6)


def test_tangent_of_steps_and_residual_is_zero():
    def f(t):
        sol = itd.fixed_point(RIDGE.F, RIDGE.x0, t)
        return sol.residual

    assert float(jax.grad(f)(RIDGE.theta)) == 0.0
