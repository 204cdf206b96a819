"""check_gradients: every mode and a finite-difference step study on a user map, with a verdict
per mode. Each case compares with a closed form: a smooth ridge (every mode agrees), a wrong
custom_jvp inside F (the modes that use it disagree), a Lasso at λ_max (a kink: undefined with
both one-sided slopes) and a solve stopped before convergence (undefined, with the reason).
The step study itself is tested on functions of one variable with known derivatives.

(The time budget of check_gradients, first call < 10 s at n = 200, is measured by
benchmarks/bench_diagnostics.py, not asserted here: speed targets live in the benchmarks.)"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
from iterdiff import diagnostics as dg
from iterdiff.diagnostics import _finite_differences as fd
from tolerances import central_difference, eps, stopping

TOL = 1e-8  # fixed_point's default rtol = atol in float64: every solve here stops at it
ONE = jnp.asarray(1.0)  # θ̇ for a scalar θ


def ridge(n, m, extra, seed=0):
    """Gradient descent on ½‖Ax − y‖² + ½θ‖x‖², step 1/(λ_max(AᵀA) + extra)."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(m, n))
    y = rng.normal(size=m)
    H = A.T @ A
    step = 1.0 / (np.linalg.eigvalsh(H).max() + extra)
    return jnp.asarray(A), jnp.asarray(y), jnp.asarray(H), step


def ridge_derivative(H, Aty, theta):
    """x̄ = (H + θI)⁻¹Aᵀy and dx̄/dθ = −(H + θI)⁻¹x̄."""
    M = np.asarray(H) + theta * np.eye(H.shape[0])
    x_bar = np.linalg.solve(M, np.asarray(Aty))
    return x_bar, -np.linalg.solve(M, x_bar)


def fd_accuracy(H, theta, step, x_bar, h):
    """What the analysis allows the reference at step h: each solve stops at
    ‖r‖_∞ ≤ TOL·(1 + ‖x‖_∞), so ‖r‖₂ ≤ √n times that, and is ‖r‖₂/(1 − ρ) from x̄ (ρ the
    contraction rate at the smallest θ of the stencil, θ − 4h); |x̄'''| = 6‖(H + θI)⁻⁴Aᵀy‖
    ≤ 6‖x̄‖/μ³, μ = λ_min(H) + θ − 4h (4h: the study's far point)."""
    n = H.shape[0]
    mu = np.linalg.eigvalsh(np.asarray(H)).min() + theta - 4 * h
    rho = 1.0 - step * mu
    residual = np.sqrt(n) * TOL * (1.0 + 2 * np.abs(x_bar).max())
    third = 6 * np.linalg.norm(x_bar) / mu**3
    return central_difference(h, stopping(residual, rho), third)


def test_smooth_ridge_n200_every_mode_agrees(capsys):
    n = 200
    A, y, H, step = ridge(n, 300, 50.0)
    theta = 50.0

    def F(x, theta):
        return x - step * (H @ x - A.T @ y + theta * x)

    with warnings.catch_warnings():
        warnings.simplefilter("error", dg.TrustWarning)  # a smooth, converged case: none
        check = dg.check_gradients(
            F, jnp.zeros(n), jnp.asarray(theta), direction=ONE, max_steps=2000
        )
    table = capsys.readouterr().out
    for name in ("Implicit", "Unrolled", "Truncated(10)", "OneStep", "finite differences"):
        assert name in table
    assert "agrees" in table and "reference" in table
    x_bar, exact = ridge_derivative(H, A.T @ y, theta)
    ref = check.finite_differences
    assert ref.usable and not ref.kink and not check.kink
    fd_err = np.linalg.norm(check.row("finite differences").value - exact)
    # the reference is as accurate as the analysis allows, and says so honestly
    assert fd_err <= ref.error <= fd_accuracy(H, theta, step, x_bar, ref.step)
    for row in check.rows[:-1]:
        assert np.linalg.norm(row.value - exact) <= row.estimated_error, row.name
        assert row.verdict == "agrees", (row.name, row.reason)
        assert row.result == itd.RESULTS.successful
        # timings measure something: a compiled call, and a first call that compiled
        assert 0 < row.seconds < row.first_call_seconds, row
    assert check.passed
    assert check.row("finite differences").verdict == "reference"
    assert 0 < check.row("finite differences").seconds
    assert check.difference("OneStep", "Implicit") > 0.5  # one-step is poor for GD (and says so)
    assert check.row("Implicit").estimated_error < 1e-5 * np.linalg.norm(exact)


def test_wrong_custom_jvp_disagrees():
    """g(θ) = θ with the rule g' = 2: every mode differentiates through it (and its error
    estimate uses it too, so it is small); only the finite differences see F's values."""
    A, y, H, step = ridge(8, 20, 1.0)

    @jax.custom_jvp
    def g(t):
        return t

    @g.defjvp
    def g_jvp(primals, tangents):
        return g(primals[0]), 2.0 * tangents[0]  # wrong: g'(θ) = 1

    def F(x, theta):
        return x - step * (H @ x - A.T @ y + g(theta) * x)

    with pytest.warns(dg.DisagreementWarning, match="Implicit differs"):
        check = dg.check_gradients(
            jax.jit(F), jnp.zeros(8), ONE, direction=ONE, modes=(itd.Implicit(), itd.Unrolled()),
            verbose=False,
        )  # fmt: skip
    _, exact = ridge_derivative(H, A.T @ y, 1.0)
    ref = check.row("finite differences")
    assert np.linalg.norm(ref.value - exact) <= ref.estimated_error
    for name in ("Implicit", "Unrolled"):
        row = check.row(name)
        # what the wrong rule gives: twice the derivative, to within the stated error
        assert np.linalg.norm(row.value - 2 * exact) <= row.estimated_error
        assert row.verdict == "disagrees", row.reason
        assert "differs from the finite-difference derivative by" in row.reason
    assert not check.passed
    assert "disagrees" in str(check)


def test_kink_lasso_at_lambda_max():
    """x̄(λ) of the Lasso is 0 for λ ≥ λ_max = ‖Aᵀy‖_∞ and leaves 0 along one coordinate j
    below it, with slope −sign(a_jᵀy)/‖a_j‖²: at λ_max the one-sided derivatives differ."""
    A, y, H, _ = ridge(6, 15, 0.0, seed=1)
    gamma = 1.0 / float(jnp.linalg.eigvalsh(H).max())
    Aty = np.asarray(A.T @ y)
    lam_max = float(np.abs(Aty).max())

    def F(x, lam):
        return itd.prox.soft_threshold(x - gamma * (A.T @ (A @ x - y)), gamma * lam)

    with pytest.warns(dg.KinkWarning, match="kink"):
        check = dg.check_gradients(
            F, jnp.zeros(6), jnp.asarray(lam_max), direction=ONE,
            modes=(itd.Implicit(), itd.Unrolled()), verbose=False,
        )  # fmt: skip
    ref = check.finite_differences
    assert check.kink and ref.kink
    j = int(np.abs(Aty).argmax())
    left = np.zeros(6)
    left[j] = -np.sign(Aty[j]) / float(np.asarray(H)[j, j])
    assert np.linalg.norm(ref.right) <= ref.right_error  # 0 on the right
    assert np.linalg.norm(ref.left - left) <= ref.left_error
    # never an averaged slope with a tiny stated error
    assert ref.error >= np.linalg.norm(ref.right - ref.left) / 2
    assert check.row("finite differences").verdict == "undefined"
    for row in check.rows[:-1]:
        assert row.verdict == "undefined", row.reason
        assert "at a kink" in row.reason and "‖L‖" in row.reason
        # soft_threshold selects 0 at the threshold: the right derivative
        assert "the right one-sided derivative" in row.reason
    assert not check.passed


def test_not_converged_is_undefined_with_reason():
    A, y, H, step = ridge(8, 20, 1.0)

    def F(x, theta):
        return x - step * (H @ x - A.T @ y + theta * x)

    with pytest.warns(dg.NotConvergedWarning, match="did not converge"):
        check = dg.check_gradients(
            jax.jit(F), jnp.zeros(8), ONE, direction=ONE, max_steps=5,
            modes=(itd.Implicit(), itd.Unrolled()), verbose=False,
        )  # fmt: skip
    for row in check.rows[:-1]:
        assert row.verdict == "undefined"
        assert row.result == itd.RESULTS.max_steps_reached
        assert "did not converge" in row.reason and "max_steps_reached" in row.reason
    assert np.all(np.isnan(check.row("Implicit").value))  # Implicit's convention
    # the reference runs the same stopping rule to convergence (up to 10 000 steps)
    _, exact = ridge_derivative(H, A.T @ y, 1.0)
    ref = check.row("finite differences")
    assert ref.verdict == "reference", ref.reason
    assert np.linalg.norm(ref.value - exact) <= ref.estimated_error
    assert "undefined" in str(check) and "did not converge" in str(check)


# The step study on functions of one variable (no solves): f(c) = f(θ + c·θ̇).


def noisy(f, delta):
    """f computed to absolute accuracy δ: a deterministic perturbation of size ≤ δ."""

    def evaluate(c):
        value = np.asarray(f(c), dtype=float)
        wobble = np.sin(1e3 * c + np.arange(value.size) + 0.5)  # |·| ≤ 1
        return fd.Evaluation(value + delta * wobble, True, delta, 0, 1)

    return evaluate


def test_study_smooth_is_accurate_and_honest():
    delta = 1e-10
    evaluate = noisy(lambda c: [np.sin(1 + c), np.exp(0.5 * c)], delta)
    ref = fd.study(evaluate, fd.ladder(1.0, None), 100)
    exact = np.array([np.cos(1.0), 0.5])
    err = np.linalg.norm(ref.value - exact)
    assert ref.usable and not ref.kink
    # |f'''| ≤ 1 for both components (cos, e^{c/2}/8 on |c| ≤ 1): √2 for the pair
    assert err <= ref.error <= central_difference(ref.step, np.sqrt(2) * delta, np.sqrt(2))
    assert ref.solves == 1 + 2 * fd.LADDER


def test_study_kink_at_theta():
    ref = fd.study(noisy(lambda c: [abs(c) + c * c, 2 * c], 1e-12), fd.ladder(1.0, None), 100)
    assert ref.kink and ref.usable
    assert np.allclose(ref.right, [1.0, 2.0], atol=ref.right_error)
    assert np.allclose(ref.left, [-1.0, 2.0], atol=ref.left_error)
    assert ref.error >= 1.0  # ‖R − L‖/2, not the (vanishing) Richardson term
    assert "kink" in ref.reason


def test_study_kink_nearby_is_stepped_around():
    """A kink at c = 10⁻³: the steps that straddle it have large Richardson terms, so the study
    keeps a step below it, where f is linear: D = −1 and no kink at θ."""
    d = 1e-3
    ref = fd.study(noisy(lambda c: [abs(c - d)], 1e-12), fd.ladder(1.0, None), 100)
    assert not ref.kink and ref.step < d
    assert abs(ref.value[0] + 1.0) <= ref.error <= central_difference(ref.step, 1e-12, 0.0)


def test_study_failed_solves():
    smooth = noisy(lambda c: [np.sin(c)], 1e-12)

    def far_fails(c):
        e = smooth(c)
        return e._replace(ok=False, result=1, steps=7) if abs(c) > 0.1 else e

    ref = fd.study(far_fails, fd.ladder(1.0, None), 100)
    assert ref.usable and ref.step < 0.1 and abs(ref.value[0] - 1.0) <= ref.error
    assert np.isinf(ref.errors[0]) and "with a failed solve" in ref.reason

    def center_fails(c):
        return far_fails(1.0) if c == 0.0 else smooth(c)

    ref = fd.study(center_fails, fd.ladder(1.0, None), 100)
    assert not ref.usable and np.isnan(ref.error)
    assert "max_steps_reached after 7 steps" in ref.reason


def test_study_given_step():
    ref = fd.study(noisy(lambda c: [np.exp(c)], 1e-14), fd.ladder(1.0, 1e-3), 100)
    assert ref.step == 1e-3 and ref.solves == 5
    assert abs(ref.value[0] - 1.0) <= ref.error <= central_difference(1e-3, 1e-14, np.e)
    assert ref.error >= eps(jnp.float64)


def test_nan_rows_carry_a_reason():
    """A NaN derivative is undefined with its cause: the linear solve's verdict when the
    estimates saw it fail, the mode's failure convention otherwise."""
    from types import SimpleNamespace

    from iterdiff.diagnostics._verdicts import verdict as _verdict

    ok = fd.study(noisy(lambda c: [np.sin(c)], 1e-12), fd.ladder(1.0, None), 100)
    failed = SimpleNamespace(result=np.int32(itd.RESULTS.linear_ill_conditioned))
    est = SimpleNamespace(implicit_solve=failed, forward_error=0.0)
    nan = np.array([np.nan])
    verdict, reason = _verdict(nan, np.inf, 0, 10, 100, est, ok)
    assert verdict == "undefined" and "linear solve failed" in reason
    assert "linear_ill_conditioned" in reason
    unknown = SimpleNamespace(implicit_solve=None, forward_error=0.0)
    verdict, reason = _verdict(nan, np.nan, 0, 10, 100, unknown, ok)
    assert verdict == "undefined" and "NaN or inf" in reason and "throw=False" in reason
    # a finite value without a reference: undefined, with the study's reason
    none = fd.study(
        lambda c: fd.Evaluation(np.array([np.nan]), False, 0.0, 1, 7), fd.ladder(1.0, None), 100
    )
    verdict, reason = _verdict(np.array([1.0]), 1e-3, 0, 10, 100, est, none)
    assert verdict == "undefined" and "no finite-difference reference" in reason


def test_float32_pytree_with_readout():
    """θ and x are dicts of float32 leaves and the readout a scalar: the study's steps, errors
    and noise follow float32 (ε = 1.2e-7, default tol 1e-5); the reference is compared with a
    dense implicit derivative computed in float64."""
    from jax.flatten_util import ravel_pytree

    rng = np.random.default_rng(3)
    W64 = 0.3 * rng.normal(size=(5, 5)) / np.sqrt(5)

    def make_F(dtype):
        W = jnp.asarray(W64, dtype)

        def F(x, th):
            return {"a": jnp.tanh(W @ x["a"] + th["u"]) * th["c"], "b": 0.5 * x["b"] + th["c"]}

        return F

    def readout(x, th):
        return jnp.sum(x["a"]) + x["b"]

    u, c = rng.normal(size=5), 0.7
    cast = {d: {"u": jnp.asarray(u, d), "c": jnp.asarray(c, d)} for d in (jnp.float32, jnp.float64)}
    x0 = {"a": jnp.zeros(5, jnp.float32), "b": jnp.zeros((), jnp.float32)}
    theta_dot = {
        "u": jnp.asarray(rng.normal(size=5), jnp.float32),
        "c": jnp.asarray(-0.5, jnp.float32),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error", dg.TrustWarning)
        check = dg.check_gradients(
            make_F(jnp.float32), x0, cast[jnp.float32], readout=readout, direction=theta_dot,
            modes=(itd.Implicit(),), verbose=False,
        )  # fmt: skip
    # dense implicit derivative in float64: ∂r/∂x (I − ∂ₓF)⁻¹ ∂_θF θ̇ + ∂_θ r θ̇ (∂_θ r = 0)
    F64, th64 = make_F(jnp.float64), cast[jnp.float64]
    x_bar = itd.fixed_point(F64, jax.tree.map(lambda a: a.astype(jnp.float64), x0), th64, tol=1e-13)
    flat_x, unravel = ravel_pytree(x_bar.value)
    direction = jax.tree.map(lambda a: a.astype(jnp.float64), theta_dot)
    A = jax.jacobian(lambda v: ravel_pytree(F64(unravel(v), th64))[0])(flat_x)
    b = jax.jvp(lambda t: ravel_pytree(F64(x_bar.value, t))[0], (th64,), (direction,))[1]
    grad_r = jax.grad(lambda v: readout(unravel(v), th64))(flat_x)
    exact = float(grad_r @ jnp.linalg.solve(jnp.eye(6) - A, b))
    ref = check.row("finite differences")
    assert abs(float(ref.value[0]) - exact) <= ref.estimated_error
    assert check.verdict("Implicit") == "agrees", check.row("Implicit").reason
    assert ref.estimated_error >= eps(jnp.float32) * abs(exact)  # float32's floor, not float64's
