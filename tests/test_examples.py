"""The examples' small versions: the DEQ on digits (gradients in every mode against finite
differences, a short training run) and the optimal-transport fit (value and gradient against
ott-jax, a short fit)."""

import jax
import jax.numpy as jnp
import pytest

import iterdiff as itd
from examples_loader import load_example

deq = load_example("deq_digits")
ot_fit = load_example("ot_fit")

# optax and ott-jax are written for JAX's standard dtype promotion (int32 step counters meet
# floats); conftest.py makes it strict, so their calls run under the standard rules here.
standard_promotion = jax.numpy_dtype_promotion("standard")


# --- DEQ --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deq_problem():
    X_tr, y_tr, _, _ = deq.load_digits_split()
    params = deq.init_params(jax.random.key(1), X_tr.shape[1], 8, 10, X_tr.dtype)
    direction = jax.tree_util.tree_map(
        lambda p: jax.random.normal(jax.random.key(2), p.shape, p.dtype), params
    )
    return params, direction, jnp.asarray(X_tr[:32]), jnp.asarray(y_tr[:32])


def _loss(params, x, y, mode):
    with standard_promotion:
        return deq.loss_fn(params, x, y, mode, 1e-12)[0]


@pytest.mark.parametrize("mode_name", ["Implicit", "Unrolled", "OneStep"])
def test_deq_gradient_against_finite_differences(deq_problem, mode_name):
    params, direction, x, y = deq_problem
    mode = deq.MODES[mode_name]
    grad = jax.jit(jax.grad(lambda p: _loss(p, x, y, mode)))(params)
    leaves = zip(jax.tree_util.tree_leaves(grad), jax.tree_util.tree_leaves(direction), strict=True)
    slope = sum(jnp.vdot(g, d) for g, d in leaves)
    h = 1e-6
    shift = lambda s: jax.tree_util.tree_map(lambda p, d: p + s * d, params, direction)  # noqa: E731
    fd = (_loss(shift(h), x, y, mode) - _loss(shift(-h), x, y, mode)) / (2 * h)
    if mode_name == "OneStep":
        # Jacobian-free backprop: not the gradient, but a descent direction for this layer
        # (‖W‖₂ ≤ 0.9; Fung et al., AAAI 2022).
        assert float(slope) * float(fd) > 0
    else:
        assert float(slope) == pytest.approx(float(fd), rel=1e-6)


def test_deq_layer_is_a_contraction(deq_problem):
    params, _, x, _ = deq_problem
    bound = deq.contraction_bound(params)
    assert bound <= deq.SCALE + 1e-12
    # the trust diagnostics at the fixed point: ‖diag(relu′)W‖₂ ≤ ‖W‖₂, and ρ ≤ ‖·‖₂
    measured = deq.measured_contraction(params, x)
    assert 0 < measured["spectral_radius"] <= measured["operator_norm"] + 1e-8
    assert measured["operator_norm"] <= bound + 1e-8


def test_deq_short_training_run_learns():
    with standard_promotion:
        result = deq.train("OneStep", hidden=16, epochs=3, n_train=512, batch=128, lr=0.05)
    assert result["losses"][-1] < 0.8 * result["losses"][0]
    assert result["test_accuracy"] > 0.5 and result["iterations_per_batch"] > 1


# --- optimal transport ------------------------------------------------------------------------


def _ott_cost(X, Y, epsilon):
    ott = pytest.importorskip("ott")
    from ott.geometry import pointcloud
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn

    del ott
    geom = pointcloud.PointCloud(X, Y, epsilon=epsilon)  # squared Euclidean cost
    solver = sinkhorn.Sinkhorn(threshold=1e-11, max_iterations=20_000)
    return solver(linear_problem.LinearProblem(geom)).reg_ot_cost


def test_ot_loss_and_gradient_match_ott_jax():
    # ott-jax's value (its own Sinkhorn, jitted once) at X0 and at X0 ± h·D: the value, and the
    # directional derivative by central differences, against ours by implicit differentiation.
    X0, Y = ot_fit.make_problem(8, 6)
    epsilon, h = 0.2, 1e-5
    D = jax.random.normal(jax.random.key(3), X0.shape, X0.dtype)
    ours, ours_grad = jax.value_and_grad(lambda X: ot_fit.loss(X, Y, epsilon))(X0)
    with standard_promotion:
        ott_cost = jax.jit(lambda X: _ott_cost(X, Y, epsilon))
        ref = ott_cost(X0)
        fd = (ott_cost(X0 + h * D) - ott_cost(X0 - h * D)) / (2 * h)
    assert float(ours) == pytest.approx(float(ref), rel=1e-9)
    assert float(jnp.vdot(ours_grad, D)) == pytest.approx(float(fd), rel=1e-6)


def test_ot_short_fit_lowers_the_loss():
    with standard_promotion:
        result, X0, Y = ot_fit.fit(n=8, m=8, steps=15)
    losses = result.history.as_arrays()["loss"]
    assert result.status == "max_iter" and losses[-1] < 0.7 * losses[0]
    assert float(result.loss) == pytest.approx(
        float(ot_fit.loss(jnp.asarray(result.theta), Y, 0.2)), rel=1e-8
    )
    assert isinstance(result, itd.bilevel.BilevelResult)
