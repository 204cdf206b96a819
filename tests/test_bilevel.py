"""iterdiff.bilevel: hypergradient descent against closed forms, the constraints, the stopping
rules, warm starts, the history, the progress bar and the failure paths."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

import iterdiff as itd
from iterdiff import bilevel
from iterdiff.bilevel import _minimize  # only to count compilations

# Ridge regression x̄(λ) = (AᵀA + λI)⁻¹Aᵀy as the fixed point of gradient descent, and a
# validation loss with an interior minimiser in λ.
_rng = np.random.default_rng(0)
A = jnp.asarray(_rng.normal(size=(30, 4)))
w_true = jnp.asarray([1.0, -2.0, 0.5, 0.0])
y = A @ w_true + jnp.asarray(_rng.normal(size=30))
A_val = jnp.asarray(_rng.normal(size=(40, 4)))
y_val = A_val @ w_true + jnp.asarray(_rng.normal(size=40))
L = float(jnp.linalg.eigvalsh(A.T @ A).max())


def ridge_map(x, lam):
    return x - (A.T @ (A @ x - y) + lam * x) / (L + lam)


def val_loss(x, lam):
    r = A_val @ x - y_val
    return 0.5 * jnp.mean(r * r)


def closed_form_loss(lam):
    x = np.linalg.solve(np.asarray(A.T @ A) + lam * np.eye(4), np.asarray(A.T @ y))
    r = np.asarray(A_val) @ x - np.asarray(y_val)
    return 0.5 * np.mean(r * r)


LAM_STAR = scipy.optimize.minimize_scalar(
    lambda t: closed_form_loss(np.exp(t)),
    bounds=(-8, 8),
    method="bounded",
    options={"xatol": 1e-10},
).x


ADAM = optax.adam(0.3)  # one optimizer object: runs with equal options share one compilation


def run(theta0=1.0, **kwargs):
    options = dict(
        optimizer=ADAM,
        constraint=bilevel.Positive(),
        tol=1e-12,
        max_steps=5000,
        stop=bilevel.StoppingRule(max_iter=150, grad_tol=1e-8),
    )
    options.update(kwargs)
    return bilevel.minimize(ridge_map, val_loss, jnp.zeros(4), theta0, **options)


@pytest.fixture(scope="module")
def adam_result():
    return run()


def test_reaches_the_closed_form_minimiser(adam_result):
    assert np.exp(LAM_STAR) > 1e-2  # the minimiser is interior
    assert abs(np.log(adam_result.best_theta) - LAM_STAR) < 1e-3
    assert adam_result.best_loss <= closed_form_loss(np.exp(LAM_STAR)) + 1e-10


def test_history_records_every_evaluation(adam_result):
    h = adam_result.history.as_arrays()
    n = adam_result.n_iter + 1
    assert len(adam_result.history) == n and all(v.shape == (n,) for v in h.values())
    assert np.all(np.diff(h["time"]) > 0) and np.all(h["inner_steps"] > 0)
    assert h["loss"][0] == pytest.approx(closed_form_loss(1.0), rel=1e-9)
    assert adam_result.history.theta[0] == pytest.approx(1.0)
    assert adam_result.status in ("grad_tol", "max_iter")


@pytest.mark.parametrize("mode", [itd.Implicit(), itd.Unrolled()], ids=["Implicit", "Unrolled"])
def test_first_hypergradient_matches_finite_differences(mode):
    result = run(mode=mode, stop=bilevel.StoppingRule(max_iter=0))
    h = 1e-5  # central differences in u = log λ
    fd = (closed_form_loss(np.exp(h)) - closed_form_loss(np.exp(-h))) / (2 * h)
    assert result.history.grad_norm[0] == pytest.approx(abs(fd), rel=1e-6)
    assert result.status == "max_iter" and result.n_iter == 0


def test_warm_starts_save_inner_iterations():
    stop = bilevel.StoppingRule(max_iter=20)
    warm = run(stop=stop).history.as_arrays()["inner_steps"]
    cold = run(stop=stop, warm_start=False).history.as_arrays()["inner_steps"]
    assert warm[0] == cold[0]
    assert np.all(warm[1:] < cold[1:]) and warm[1:].sum() < 0.85 * cold[1:].sum()


def test_lbfgs_uses_the_objective_for_its_line_search():
    linesearch = optax.scale_by_backtracking_linesearch(max_backtracking_steps=20)
    optimizer = optax.lbfgs(linesearch=linesearch)
    result = run(optimizer=optimizer, stop=bilevel.StoppingRule(max_iter=30, grad_tol=1e-9))
    assert result.status == "grad_tol" and result.n_iter < 30
    assert abs(np.log(result.theta) - LAM_STAR) < 1e-5


def test_box_constraint_keeps_theta_inside():
    # The unconstrained minimiser lies above the box: θ approaches the upper bound.
    high = 0.5 * np.exp(LAM_STAR)
    result = run(
        theta0=0.5 * high,
        constraint=bilevel.Box(1e-3, high),
        stop=bilevel.StoppingRule(max_iter=40),
    )
    thetas = np.array(result.history.theta)
    assert np.all((thetas > 1e-3) & (thetas < high))
    assert result.best_theta > 0.9 * high


def test_pytree_theta_with_a_pytree_of_constraints():
    def F(x, th):
        return ridge_map(x, th["lam"]) + 0.0 * th["shift"]

    def outer(x, th):
        return val_loss(x, th["lam"]) + (th["shift"] - 0.3) ** 2

    constraint = {"lam": bilevel.Positive(), "shift": bilevel.Box(0.0, 1.0)}
    result = bilevel.minimize(
        F,
        outer,
        jnp.zeros(4),
        {"lam": 1.0, "shift": 0.5},
        optimizer=optax.adam(0.3),
        constraint=constraint,
        tol=1e-12,
        max_steps=5000,
        stop=bilevel.StoppingRule(max_iter=150, grad_tol=1e-8),
    )
    assert abs(np.log(result.best_theta["lam"]) - LAM_STAR) < 1e-3
    assert result.best_theta["shift"] == pytest.approx(0.3, abs=1e-4)


def test_no_progress_and_callback_stop_the_loop():
    rule = bilevel.StoppingRule(max_iter=500, rtol=1e-3, patience=3)
    assert run(stop=rule).status == "no_progress"
    seen = []
    result = run(callback=lambda k, record: seen.append(record["loss"]) or k == 2)
    assert result.status == "callback" and result.n_iter == 2 and len(seen) == 3


def test_data_is_an_argument_so_one_compilation_serves_equal_shapes():
    def F(x, lam, data):
        Ad, yd = data
        return x - (Ad.T @ (Ad @ x - yd) + lam * x) / (L + lam)

    def outer(x, lam, data):
        return val_loss(x, lam)

    results, sgd, sizes = [], optax.sgd(0.1), []
    for scale in (1.0, 1.1):
        results.append(
            bilevel.minimize(
                F,
                outer,
                jnp.zeros(4),
                1.0,
                data=(scale * A, y),
                optimizer=sgd,
                constraint=bilevel.Positive(),
                tol=1e-12,
                max_steps=5000,
                stop=bilevel.StoppingRule(max_iter=1),
            )
        )
        sizes.append(_minimize._evaluate_jit._cache_size())
    sizes.pop()
    assert results[0].history.loss[0] == pytest.approx(closed_form_loss(1.0), rel=1e-9)
    assert results[1].history.loss[0] != results[0].history.loss[0]
    # the second run compiled nothing (the jitted evaluation has one entry for this spec)
    sizes.append(_minimize._evaluate_jit._cache_size())
    assert sizes[1] == sizes[0]


SGD = optax.sgd(0.2)


def _diverging_problem(theta0=0.5, **kwargs):
    # x̄(θ) = 1/(1 − θ) for θ < 1; Picard diverges for θ ≥ 1. The outer loss pulls θ towards
    # 0.95 and a large step overshoots past 1.
    def F(x, th):
        return th * x + 1.0

    def outer(x, th):
        return (x - 20.0) ** 2

    return bilevel.minimize(
        F,
        outer,
        jnp.zeros(()),
        theta0,
        optimizer=SGD,
        max_steps=500,
        stop=bilevel.StoppingRule(max_iter=50),
        **kwargs,
    )


def test_inner_failure_raises_with_throw():
    with pytest.raises(bilevel.InnerSolveError, match="did not converge|NaN or inf") as info:
        _diverging_problem()
    assert isinstance(info.value, RuntimeError)


def test_inner_failure_warns_and_keeps_the_last_good_point_without_throw():
    with pytest.warns(bilevel.InnerSolveWarning, match="inner solve failed"):
        result = _diverging_problem(throw=False)
    assert result.failed and result.status == "inner_failed"
    assert result.theta < 1.0 and np.isfinite(result.loss)
    assert len(result.history) == result.n_iter >= 1


def test_failure_at_the_start_returns_the_start():
    with pytest.warns(bilevel.InnerSolveWarning):
        result = _diverging_problem(theta0=1.5, throw=False)
    assert result.status == "inner_failed" and np.isnan(result.loss)
    assert float(result.theta) == 1.5 and len(result.history) == 0


def test_progress_bar_only_when_asked_or_on_a_terminal(capsys):
    run(stop=bilevel.StoppingRule(max_iter=2))
    assert capsys.readouterr().err == ""  # pytest's stderr is not a terminal
    run(stop=bilevel.StoppingRule(max_iter=2), progress=True)
    assert "hypergradient" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"optimizer": "adam"}, TypeError, "optax optimizer"),
        ({"constraint": "positive"}, TypeError, "constraint must be"),
        ({"constraint": {"a": bilevel.Positive()}}, ValueError, "structure"),
        ({"stop": 10}, TypeError, "StoppingRule"),
        ({"max_steps": 0}, ValueError, "max_steps"),
    ],
)
def test_bad_options_fail_clearly(kwargs, error, match):
    options = {"optimizer": optax.adam(0.1), **kwargs}
    with pytest.raises(error, match=match):
        bilevel.minimize(ridge_map, val_loss, jnp.zeros(4), 1.0, **options)


@pytest.mark.parametrize(
    "constraint, theta0", [(bilevel.Positive(), 0.0), (bilevel.Box(0.0, 1.0), 1.5)]
)
def test_infeasible_start_fails_clearly(constraint, theta0):
    with pytest.raises(ValueError, match="starting θ"):
        bilevel.minimize(
            ridge_map,
            val_loss,
            jnp.zeros(4),
            theta0,
            optimizer=optax.adam(0.1),
            constraint=constraint,
        )


def test_constraints_round_trip_and_validate():
    u = jnp.linspace(-3.0, 3.0, 7)
    for c in (bilevel.Real(), bilevel.Positive(), bilevel.Box(-1.0, 2.0)):
        np.testing.assert_allclose(c.to_unconstrained(c.to_theta(u)), u, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="low must be below high"):
        bilevel.Box(1.0, 1.0)
    with pytest.raises(ValueError, match="patience"):
        bilevel.StoppingRule(patience=0)
    with pytest.raises(TypeError, match="max_iter"):
        bilevel.StoppingRule(max_iter=1.5)
