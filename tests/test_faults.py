"""Failures are never silent, in every transform (issue 7): one test per cause of the fault suite.

Each derivative check runs under jit, where XLA drops whatever only the primal Solution uses.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd

RuntimeErrors = (itd.SolveError, jax.errors.JaxRuntimeError, RuntimeError)
MODES = {
    "implicit": itd.Implicit(),
    "unrolled": itd.Unrolled(),
    "onestep": itd.OneStep(),
    "truncated": itd.Truncated(2),
}


def F(x, t):
    return 0.9 * jnp.cos(x) + t


def solve(t, mode, throw, max_steps=3):
    return itd.fixed_point(F, jnp.zeros(3), t, mode=mode, max_steps=max_steps, throw=throw).value


def loss(t, mode, throw, max_steps=3):
    return jnp.sum(solve(t, mode, throw, max_steps))


# Each transform keeps only the derivative, so nothing but the derivative path can report.
TRANSFORMS = {
    "grad": lambda f: jax.grad(f),
    "jvp": lambda f: lambda t: jax.jvp(f, (t,), (jnp.ones_like(t),))[1],
    "jacfwd": lambda f: jax.jacfwd(f),
    "jacrev": lambda f: jax.jacrev(f),
    "vmap_grad": lambda f: lambda t: jax.vmap(jax.grad(f))(jnp.stack([t, t])),
}


def unrolled_reference(t, steps=3):
    """d/dt of Σ x_3 for the plain loop x ← F(x, t) from 0 (what Unrolled must give)."""

    def run(t):
        return jnp.sum(jax.lax.fori_loop(0, steps, lambda _, x: F(x, t), jnp.zeros(3)))

    return jax.grad(run)(t)


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("mode_name", MODES)
def test_non_convergence_raises_under_jit_when_only_derivatives_are_used(mode_name, transform):
    fn = jax.jit(TRANSFORMS[transform](lambda t: loss(t, MODES[mode_name], True)))
    with pytest.raises(RuntimeErrors, match="did not converge"):
        jax.block_until_ready(fn(jnp.asarray(0.5)))


@pytest.mark.parametrize("transform", ["value", "grad", "jvp"])
def test_eager_calls_raise_solve_error_itself(transform):
    """Outside jit the error is `itd.SolveError` itself (not XLA's wrapper), primal or tangent."""
    fn = {"value": lambda t: loss(t, MODES["implicit"], True), **TRANSFORMS}[transform]
    if transform != "value":
        fn = fn(lambda t: loss(t, MODES["implicit"], True))
    with pytest.raises(itd.SolveError, match="did not converge"):
        fn(jnp.asarray(0.5))


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("mode_name", MODES)
def test_throw_false_convention_per_mode(mode_name, transform):
    """Modes that assume a fixed point give NaN for a failed solve; Unrolled gives the exact
    derivative of the three iterations that ran."""
    out = jax.jit(TRANSFORMS[transform](lambda t: loss(t, MODES[mode_name], False)))(
        jnp.asarray(0.5)
    )
    out = np.asarray(out)
    if mode_name == "unrolled":
        np.testing.assert_allclose(out, unrolled_reference(0.5), rtol=1e-12)
    else:
        assert np.all(np.isnan(out))


@pytest.mark.parametrize("mode_name", MODES)
def test_nan_theta_in_a_batch_member_gives_nan_only_there(mode_name):
    grads = jax.jit(jax.vmap(jax.grad(lambda t: loss(t, MODES[mode_name], False, 500))))(
        jnp.asarray([0.5, jnp.nan])
    )
    assert np.isfinite(grads[0]) and np.isnan(grads[1])


@pytest.mark.parametrize("mode_name", MODES)
def test_nan_mid_run_raises_in_reverse_mode_under_jit(mode_name):
    def G(x, t):  # finite for the first steps, then log of a negative number
        return jnp.log(x + t)

    def f(t):
        return itd.fixed_point(G, jnp.ones(2), t, mode=MODES[mode_name]).value.sum()

    with pytest.raises(RuntimeErrors, match="NaN or inf"):
        jax.block_until_ready(jax.jit(jax.grad(f))(jnp.asarray(-0.5)))


def test_converged_solve_is_unaffected_by_the_checks():
    g = jax.jit(jax.grad(lambda t: loss(t, itd.Implicit(), True, 500)))(jnp.asarray(0.5))
    x = solve(0.5, itd.Implicit(), True, 500)
    # x̄ = 0.9 cos x̄ + t ⇒ dx̄/dt = 1 / (1 + 0.9 sin x̄)
    np.testing.assert_allclose(g, jnp.sum(1 / (1 + 0.9 * jnp.sin(x))), rtol=1e-7)


# Cause 4: the user's exception is kept, with our explanation added.


def test_python_control_flow_in_F_keeps_jax_error_and_adds_advice():
    def bad(x, t):
        if t > 0:
            return x / 2
        return x

    with pytest.raises(jax.errors.TracerBoolConversionError) as info:
        itd.fixed_point(bad, jnp.zeros(2), 1.0)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "jnp.where or jax.lax.cond" in notes


def test_user_exception_with_custom_init_is_kept():
    class MyError(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a}/{b}")

    def bad(x, t):
        raise MyError(1, 2)

    with pytest.raises(MyError, match="1/2") as info:
        itd.fixed_point(bad, jnp.zeros(2), 1.0)
    assert "calling F(x0, theta) failed" in "\n".join(info.value.__notes__)


# Cause 5: tolerances the dtype can reach.


def test_mixed_precision_state_uses_the_least_precise_default_and_keeps_dtypes():
    seen = []

    def G(x, t):
        seen.append((x["a"].dtype, x["b"].dtype))
        return {"a": 0.5 * jnp.cos(x["a"]) + t.astype(jnp.float32), "b": 0.5 * jnp.sin(x["b"]) + t}

    x0 = {"a": jnp.zeros(2, jnp.float32), "b": jnp.zeros(2)}
    sol = itd.fixed_point(G, x0, jnp.asarray(0.3), max_steps=200)
    assert bool(sol.converged) and int(sol.steps) < 40
    assert sol.value["a"].dtype == jnp.float32 and sol.value["b"].dtype == jnp.float64
    assert set(seen) == {(jnp.dtype("float32"), jnp.dtype("float64"))}


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("solver", [itd.Picard(), itd.Anderson()])
def test_half_precision_is_rejected_clearly(dtype, solver):
    with pytest.raises(TypeError, match="Half precision is not supported"):
        itd.fixed_point(lambda x, t: x / 2, jnp.zeros(2, dtype), 1.0, solver=solver)


def test_zero_tolerances_run_exactly_max_steps_and_report_it():
    sol = itd.fixed_point(F, jnp.zeros(3), 0.5, rtol=0.0, atol=0.0, max_steps=7, throw=False)
    assert int(sol.steps) == 7 and int(sol.result) == itd.RESULTS.max_steps_reached


# Cause 6: bad options.


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"tol": float("inf")}, ValueError, "finite"),
        ({"tol": float("nan")}, ValueError, "finite"),
        ({"tol": "1e-3"}, TypeError, "real number"),
        ({"max_steps": 2**31}, ValueError, "max_steps"),
        ({"max_steps": True}, TypeError, "max_steps"),
        ({"rtol": -1.0}, ValueError, "rtol"),
        ({"tol": 1e-3, "rtol": 1e-3}, ValueError, "either tol"),
        ({"norm": "max"}, TypeError, "norm"),
        ({"has_aux": 1}, TypeError, "has_aux"),
        ({"observe": [1]}, TypeError, "observe"),
        ({"observe": {"r": 1}}, TypeError, "not an observer"),
    ],
)
def test_bad_fixed_point_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        itd.fixed_point(F, jnp.zeros(3), 0.5, **kwargs)


def test_numpy_integer_max_steps_is_accepted():
    sol = itd.fixed_point(F, jnp.zeros(3), 0.5, max_steps=np.int64(500))
    assert bool(sol.converged)


@pytest.mark.parametrize(
    "build, error",
    [
        (lambda: itd.Truncated(True), TypeError),
        (lambda: itd.Anderson(history=True), TypeError),
        (lambda: itd.Anderson(regularization=0.0), ValueError),
        (lambda: itd.Picard(damping="0.5"), TypeError),
        (lambda: itd.Picard(damping=float("nan")), ValueError),
        (lambda: itd.Unrolled(checkpoints=True), TypeError),
    ],
)
def test_bad_mode_and_solver_options(build, error):
    with pytest.raises(error):
        build()


def test_numpy_integers_accepted_by_modes_and_solvers():
    assert itd.Truncated(np.int64(3)).k == 3
    itd.Anderson(history=np.int32(4))


# Cause 10: messages that name the cause.


def test_string_leaf_in_theta_is_named():
    with pytest.raises(TypeError, match=r"theta\['name'\] is a str"):
        itd.fixed_point(lambda x, t: x / 2, jnp.zeros(2), {"name": "ridge", "lam": 1.0})


def test_batched_message_counts_each_status():
    sols = jax.vmap(
        lambda t, m: itd.fixed_point(F, jnp.zeros(3), t, max_steps=500, throw=False),
        in_axes=(0, None),
    )(jnp.asarray([0.5, jnp.nan, 0.2]), 0)
    message = sols.message()
    assert "2 of 3 solves: converged" in message
    assert "1 of 3 solves: the iterates became NaN" in message


def test_error_text_under_jit_ends_with_our_message():
    with pytest.raises(RuntimeErrors) as info:
        jax.block_until_ready(jax.jit(lambda t: solve(t, itd.Implicit(), True))(0.5))
    last = str(info.value).strip().splitlines()[-1]
    assert "iterdiff.fixed_point" in last and "did not converge" in last
    assert "equinox" not in str(info.value)


# Cause 10: an infinite ∂F/∂θ is named the same way in forward and reverse mode.


def sqrt_map(x, t):
    return 0.5 * x + jnp.sqrt(t)


@pytest.mark.parametrize("transform", ["grad", "jvp", "jacrev"])
def test_infinite_sensitivity_named_in_every_direction(transform):
    fn = TRANSFORMS[transform](lambda t: jnp.sum(itd.fixed_point(sqrt_map, jnp.zeros(2), t).value))
    with pytest.raises(
        RuntimeErrors, match="right-hand side of the implicit linear solve is NaN or inf"
    ):
        jax.block_until_ready(jax.jit(fn)(jnp.asarray(0.0)))


@pytest.mark.parametrize("transform", ["grad", "jvp"])
def test_infinite_sensitivity_gives_nan_with_throw_false(transform):
    fn = TRANSFORMS[transform](
        lambda t: jnp.sum(itd.fixed_point(sqrt_map, jnp.zeros(2), t, throw=False).value)
    )
    assert np.isnan(jax.jit(fn)(jnp.asarray(0.0)))
    np.testing.assert_allclose(jax.jit(fn)(jnp.asarray(4.0)), 2 * 2 * 0.25, rtol=1e-7)


# Cause 3: a loss scaled by a tiny or huge constant keeps its (scaled) gradient.


@pytest.mark.parametrize("scale", [1e-20, 1e19])
def test_scaled_float32_loss_keeps_its_gradient(scale):
    def G(x, t):
        return 0.5 * jnp.tanh(x) + t

    def loss(t):
        x = itd.fixed_point(G, jnp.zeros(4, jnp.float32), t).value
        return jnp.float32(scale) * jnp.sum(x)

    def unit(t):
        return jnp.sum(itd.fixed_point(G, jnp.zeros(4, jnp.float32), t).value)

    t = jnp.float32(0.3)
    got, want = jax.jit(jax.grad(loss))(t), jax.jit(jax.grad(unit))(t)
    assert got.dtype == jnp.float32 and float(want) > 0
    np.testing.assert_allclose(float(got) / scale, float(want), rtol=1e-4)


# Cause 11: a derivative along an undetermined direction is flagged, not answered.


@pytest.mark.parametrize(
    "solver", [itd.linear_solve.GMRES(), itd.linear_solve.LeastSquares()], ids=["gmres", "lsq"]
)
def test_gauge_dependent_sinkhorn_readout_is_flagged(solver):
    """Σ of the Sinkhorn potential depends on the gauge, which I − ∂ₓF leaves undetermined."""
    import zoo

    case = zoo.sinkhorn()

    def f(C, throw):
        sol = itd.fixed_point(
            case.F, case.x0, C, mode=itd.Implicit(solver), max_steps=3000, throw=throw
        )
        return jnp.sum(sol.value)

    assert np.all(np.isnan(jax.jit(jax.grad(lambda C: f(C, False)))(case.theta)))
    with pytest.raises(RuntimeErrors, match="implicit derivative"):
        jax.block_until_ready(jax.jit(jax.grad(lambda C: f(C, True)))(case.theta))


@pytest.mark.parametrize("mode_name", ["gmres", "cg", "lsq"])
def test_nearly_singular_diagonal_map_is_right_or_flagged(mode_name):
    """(I − ∂ₓF) = diag(1e-12, 0.5) with b = (1e-11, 1): b's first component is below the
    solver's relative tolerance, so a residual test alone accepts v ≈ (1e-11, 2) for the true
    (10, 2). The solve must return the true derivative or report the system."""
    solver = {
        "gmres": itd.linear_solve.GMRES(),
        "cg": itd.linear_solve.CG(),
        "lsq": itd.linear_solve.LeastSquares(),
    }[mode_name]
    d = jnp.asarray([1 - 1e-12, 0.5])
    c = jnp.asarray([1e-11, 1.0])

    def f(t):
        def G(x, t):
            return d * x + c * t

        x0 = jnp.asarray([10.0, 2.0])  # the fixed point at t = 1: the forward pass converges
        return jnp.sum(itd.fixed_point(G, x0, t, mode=itd.Implicit(solver), throw=False).value)

    g = float(jax.jit(lambda t: jax.jvp(f, (t,), (1.0,))[1])(1.0))
    assert np.isnan(g) or abs(g - 12.0) < 1e-3
