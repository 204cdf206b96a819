"""Each error estimate bounds the true error of its mode on the zoo (float64), and the
warnings fire where the derivative is doubtful."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
import zoo
from iterdiff import diagnostics as dg
from iterdiff.diagnostics import _flat

CASES = [zoo.ridge, zoo.lasso, zoo.logistic_newton, zoo.sinkhorn, zoo.pytree_affine]
MODES = {
    "implicit": itd.Implicit(),
    "one_step": itd.OneStep(),
    "truncated": itd.Truncated(5),
    "unrolled": itd.Unrolled(),
}


def _true_errors(case, direction, null_vector):
    """‖ẋ_mode − ẋ_exact‖ for every mode (modulo the null vector, if any), in one jit."""
    reference = _flat.flatten(jax.jvp(case.exact, (case.theta,), (direction,))[1])[0]

    @jax.jit
    def errors(theta):
        out = {}
        for name, mode in MODES.items():

            def value(t, mode=mode):
                return itd.fixed_point(
                    case.F, case.x0, t, mode=mode, max_steps=case.max_steps
                ).value

            e = _flat.flatten(jax.jvp(value, (theta,), (direction,))[1])[0] - reference
            if null_vector is not None:
                e = e - null_vector * (null_vector @ e)
            out[name] = jnp.linalg.norm(e)
        return out

    return {k: float(v) for k, v in errors(case.theta).items()}


@pytest.mark.parametrize("make", CASES, ids=lambda m: m.__name__)
def test_each_estimate_bounds_the_true_error(make):
    case = make()
    direction = _flat.random_direction(case.theta, 0)
    sol = jax.jit(lambda t: itd.fixed_point(case.F, case.x0, t, max_steps=case.max_steps))(
        case.theta
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.TrustWarning)
        est = dg.error_estimates(sol, case.F, case.theta, direction=direction)
    null = est.contraction.null_vector
    null = None if null is None else _flat.flatten(null)[0]
    true = _true_errors(case, direction, null)
    estimated = {
        "implicit": est.implicit,
        "one_step": est.one_step,
        "truncated": est.truncated(5),
        "unrolled": est.unrolled,
    }
    for name in MODES:
        assert true[name] <= estimated[name], (name, true[name], estimated[name])
    # and they are informative: not more than 1e3× (or 1e-9 absolute) above the truth,
    # except where the docs say an estimate is only an upper bound (Unrolled a priori)
    for name in ("implicit", "one_step", "truncated"):
        assert estimated[name] <= 1e3 * true[name] + 1e-9, (name, true[name], estimated[name])
    if sol.mode is not None:  # the Solution's own mode (Implicit by default)
        assert est.mode == est.implicit
    x_err = _flat.norm(jax.tree_util.tree_map(jnp.subtract, sol.value, case.exact(case.theta)))
    if null is None:  # forward error: r/σ_min bounds ‖x_K − x̄‖ exactly for affine F
        assert float(x_err) <= 1.01 * est.forward_error
    _check_contraction(case, est.contraction)


def _check_contraction(case, c):
    """The contraction checks where the zoo makes them sharp (against dense linear algebra)."""
    if case.name == "logistic_newton":  # ∂ₓF(x̄) = 0 for Newton
        assert c.operator_norm < 1e-8 and c.condition < 1 + 1e-8
    if case.name == "sinkhorn":  # the gauge: I − ∂ₓF singular along the constant vector
        A, _ = zoo.dense_pieces(case, case.exact(case.theta), case.theta)
        assert c.singular and c.condition > 1e12
        assert abs(c.operator_norm - 1) < 1e-10 and abs(c.spectral_radius - 1) < 1e-10
        v = _flat.flatten(c.null_vector)[0]
        assert abs(abs(float(jnp.sum(v))) / float(jnp.sqrt(1.0 * v.shape[0])) - 1) < 1e-8
        s = np.linalg.svd(np.eye(A.shape[0]) - np.asarray(A), compute_uv=False)
        assert abs(c.sigma_min_off_null - s[-2]) < 1e-6  # at x_K, s at x̄
    else:
        assert not c.singular


def _ridge_solution(mode, max_steps=2000):
    case = zoo.ridge()
    solve = jax.jit(
        lambda t: itd.fixed_point(case.F, case.x0, t, mode=mode, max_steps=max_steps, throw=False)
    )
    return case, solve(case.theta)


def test_warnings_name_the_doubt():
    case, sol = _ridge_solution(itd.Implicit())
    with warnings.catch_warnings():
        warnings.simplefilter("error", dg.TrustWarning)
        dg.error_estimates(sol, case.F, case.theta)  # converged contraction: no warning
    case, sol = _ridge_solution(itd.OneStep())
    if sol.mode is not None:
        with pytest.warns(dg.OneStepWarning, match="Implicit"):
            dg.error_estimates(sol, case.F, case.theta)
    case, sol = _ridge_solution(itd.Implicit(), max_steps=3)
    with pytest.warns(dg.NotConvergedWarning, match="max_steps"):
        dg.error_estimates(sol, case.F, case.theta)
    case = zoo.sinkhorn()
    sol = jax.jit(lambda t: itd.fixed_point(case.F, case.x0, t, max_steps=3000))(case.theta)
    with pytest.warns(dg.IllConditionedWarning, match="gauge"):
        dg.error_estimates(sol, case.F, case.theta)
    for category in (dg.NotContractiveWarning, dg.DerivativeDivergenceWarning):
        assert issubclass(category, dg.TrustWarning) and issubclass(category, UserWarning)
