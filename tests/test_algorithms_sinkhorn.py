"""Entropic OT by log-domain Sinkhorn: a reference run, stability at ε = 1e-3, the gauge, dP̂
against finite differences with zero row/column sums, dP_k → dP̂ linearly, Anderson."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
import tolerances
from algorithm_problems import (
    central_difference,
    fit_rate,
    numpy_sinkhorn,
    ot_problem,
    piggyback_trace,
)
from iterdiff.algorithms import OTParams, Sinkhorn

C, A, B = ot_problem(20, 25)
SK = Sinkhorn()


def theta(eps):
    return OTParams(jnp.asarray(C), jnp.asarray(A), jnp.asarray(B), jnp.asarray(eps))


def plan(th, mode=itd.Implicit(), solver=itd.Picard(), tol=1e-12):
    sol = itd.fixed_point(
        SK.F, SK.init(th), th, mode=mode, solver=solver, tol=tol, max_steps=50_000
    )
    return SK.readout(sol.value, th), sol.steps


solve_picard = jax.jit(lambda th: plan(th))
solve_anderson = jax.jit(lambda th: plan(th, solver=itd.Anderson(history=5)))


@pytest.mark.parametrize("eps", [0.05, 1e-3])
def test_matches_reference_and_anderson_speeds_up(eps):
    """Both solvers reach a long NumPy log-domain run; at ε = 1e-3 (costs in [0, 1]) the log
    domain stays finite. Anderson needs several times fewer steps."""
    ref = numpy_sinkhorn(C, A, B, eps, tol=1e-13)
    P, steps = solve_picard(theta(eps))
    P_and, steps_and = solve_anderson(theta(eps))
    print(f"Sinkhorn eps={eps}: Picard {int(steps)} steps, Anderson {int(steps_and)}")
    for Q in (P, P_and):
        assert np.all(np.isfinite(Q))
        np.testing.assert_allclose(Q, ref, atol=1e-9 * max(1.0, 0.05 / eps))
        np.testing.assert_allclose(Q.sum(0), B, atol=1e-12)
        np.testing.assert_allclose(Q.sum(1), A, atol=1e-9)
    assert int(steps_and) < 0.4 * int(steps)


@pytest.fixture(scope="module")
def implicit_derivative():
    """dP̂ along a cost direction by Implicit (default GMRES) and Unrolled."""
    th = theta(0.05)
    dC = jnp.asarray(np.random.default_rng(1).normal(size=C.shape))
    d = OTParams(dC, jnp.zeros_like(th.a), jnp.zeros_like(th.b), jnp.asarray(0.0))

    def tangent(mode):
        return jax.jit(lambda t: jax.jvp(lambda u: plan(u, mode)[0], (t,), (d,))[1])(th)

    return th, d, tangent(itd.Implicit()), tangent(itd.Unrolled())


def test_gauge_is_fixed():
    """∂F·1 = 0 and I − ∂F is invertible at the solution (Sinkhorn's T has ∂T·1 = 1)."""
    th = theta(0.05)
    f = jax.jit(lambda t: itd.fixed_point(SK.F, SK.init(t), t, tol=1e-12).value)(th)
    A_ = np.asarray(jax.jit(jax.jacfwd(SK.F))(f, th))
    np.testing.assert_allclose(A_ @ np.ones(len(f)), 0.0, atol=1e-12)
    assert abs(np.mean(np.asarray(f))) < 1e-12
    assert np.linalg.svd(np.eye(len(f)) - A_, compute_uv=False).min() > 1e-3
    assert np.max(np.abs(np.linalg.eigvals(A_))) < 1.0


def test_plan_derivative_fd_and_marginals(implicit_derivative):
    th, d, dP_imp, dP_unr = implicit_derivative
    fd = central_difference(lambda t: solve_picard(t)[0], th, d, eps=1e-6)
    scale = np.abs(fd).max()
    np.testing.assert_allclose(dP_imp, fd, atol=1e-6 * scale)
    np.testing.assert_allclose(dP_unr, dP_imp, atol=1e-8 * scale)
    # marginals are fixed, so dP̂ has zero row and column sums
    np.testing.assert_allclose(np.asarray(dP_imp).sum(0), 0.0, atol=1e-10 * scale)
    np.testing.assert_allclose(np.asarray(dP_imp).sum(1), 0.0, atol=1e-10 * scale)


def test_reverse_mode_all_parameters():
    """grad of ⟨P̂, C⟩ with respect to (C, a, b, ε), implicit vs central differences."""
    th = theta(0.05)

    def loss(t):
        return jnp.sum(plan(t)[0] * jnp.asarray(C))

    g = jax.jit(jax.grad(loss))(th)
    rng = np.random.default_rng(2)
    da = rng.normal(size=A.shape)
    db = rng.normal(size=B.shape)
    d = OTParams(
        jnp.asarray(rng.normal(size=C.shape)),
        jnp.asarray(da - da.mean()),  # keep Σa = Σb
        jnp.asarray(db - db.mean()),
        jnp.asarray(0.3),
    )
    fd = central_difference(jax.jit(loss), th, d, eps=1e-6)
    predicted = sum(jnp.vdot(gi, di) for gi, di in zip(g, d, strict=True))
    np.testing.assert_allclose(predicted, fd, rtol=1e-6)


def test_plan_derivatives_converge_linearly(implicit_derivative):
    """dP_k → dP̂ linearly (Pauwels & Vaiter 2023), at the rate of the second eigenvalue of ∂T,
    i.e. the spectral radius of the gauge-fixed ∂F (fitted within 10% in the exponent)."""
    th, d, dP_imp, _ = implicit_derivative
    _, dPs = piggyback_trace(SK.F, SK.init(th), th, d, 200, SK.readout)
    err = np.abs(np.asarray(dPs) - np.asarray(dP_imp)).max(axis=(1, 2)) / np.abs(dP_imp).max()
    f = jax.jit(lambda t: itd.fixed_point(SK.F, SK.init(t), t, tol=1e-12).value)(th)
    rho = np.max(np.abs(np.linalg.eigvals(np.asarray(jax.jit(jax.jacfwd(SK.F))(f, th)))))
    rate = fit_rate(err, lo=1e-9, hi=1e-2)  # above the 1e-11 floor of the reference itself
    print(f"Sinkhorn dP_k rate: fitted {rate:.4f}, predicted {rho:.4f}")
    assert err[-1] < 1e-9
    assert abs(np.log(rate) / np.log(rho) - 1) < 0.1


def test_params_callable_and_errors():
    """θ may be anything that params(θ) turns into an OTParams: here point positions."""
    rng = np.random.default_rng(3)
    xs, ys = jnp.asarray(rng.uniform(size=(6, 2))), jnp.asarray(rng.uniform(size=(7, 2)))

    def params(t):
        cost = jnp.sum((t["x"][:, None] - t["y"][None]) ** 2, -1)
        return OTParams(cost, jnp.full(6, 1 / 6), jnp.full(7, 1 / 7), jnp.asarray(0.1))

    sk = Sinkhorn(params)
    t = {"x": xs, "y": ys}
    P = jax.jit(lambda t: sk.readout(itd.fixed_point(sk.F, sk.init(t), t, tol=1e-12).value, t))(t)
    np.testing.assert_allclose(P.sum(1), 1 / 6, atol=1e-10)
    with pytest.raises(TypeError, match="OTParams"):
        SK.F(jnp.zeros(3), {"cost": C})
    with pytest.raises(ValueError, match="shape"):
        SK.F(jnp.zeros(20), OTParams(C, A[:5], B, 0.1))
    with pytest.raises(TypeError, match="params"):
        Sinkhorn(params=3)


# --- zero-weight atoms (issue 28 item 4) ----------------------------------------------------------
# A problem padded with zero-weight atoms must give the plan, the regularised cost and every
# derivative of the problem without them: compared in each mode, in jit, vmap and eager.

KEEP_A, KEEP_B = np.array([0, 2, 3, 5]), np.array([0, 1, 3])
ZERO_A, ZERO_B = [1, 4], [2]


def padded_problem(seed=4, pad_cost=None):
    """6×4 costs with rows 1, 4 and column 2 of zero weight (their costs arbitrary: random, or
    ``pad_cost`` as padding does), and the same problem with those atoms removed."""
    rng = np.random.default_rng(seed)
    C = rng.uniform(size=(6, 4))
    a, b = rng.uniform(0.5, 1.5, 6), rng.uniform(0.5, 1.5, 4)
    a[ZERO_A] = 0.0
    b[ZERO_B] = 0.0
    if pad_cost is not None:
        C[ZERO_A] = pad_cost
        C[:, ZERO_B] = pad_cost
    a, b = a / a.sum(), b / b.sum()
    full = OTParams(jnp.asarray(C), jnp.asarray(a), jnp.asarray(b), jnp.asarray(0.1))
    reduced = OTParams(
        full.cost[np.ix_(KEEP_A, KEEP_B)], full.a[KEEP_A], full.b[KEEP_B], full.epsilon
    )
    return full, reduced


def reg_ot_cost(P, th):
    """⟨P, C⟩ + ε KL(P ‖ abᵀ), with 0·log 0 = 0 (computed from the plan alone)."""
    ab = th.a[:, None] * th.b[None, :]
    pos = P > 0
    ratio = jnp.where(pos, P, 1.0) / jnp.where(pos, ab, 1.0)
    kl = jnp.sum(jnp.where(pos, P * jnp.log(ratio), 0.0)) - jnp.sum(P) + jnp.sum(ab)
    return jnp.sum(P * th.cost) + th.epsilon * kl


ZERO_MODES = {
    "implicit": itd.Implicit(),
    "unrolled": itd.Unrolled(),
    "onestep": itd.OneStep(),
    "truncated": itd.Truncated(20),
}


def small_plan(th, mode=itd.Implicit()):
    """The plan of a small problem (ε = 0.1: a few hundred steps)."""
    sol = itd.fixed_point(SK.F, SK.init(th), th, mode=mode, tol=1e-12, max_steps=5_000)
    return SK.readout(sol.value, th)


def everything(mode, th, d, jacobians=False):
    """(plan, cost, grad of the cost, jvp of the plan along d[, jacrev of the plan in C]) for one
    problem (jacfwd is in the point-cloud test)."""

    def P(t):
        return small_plan(t, mode)

    value, grad = jax.value_and_grad(lambda t: reg_ot_cost(P(t), t))(th)
    out = (P(th), value, grad, jax.jvp(P, (th,), (d,))[1])
    if not jacobians:
        return out
    return out + (jax.jacrev(lambda C: P(th._replace(cost=C)))(th.cost),)


def zero_direction(th, rng):
    """A direction that keeps Σa = Σb and the zero weights at 0."""
    da = rng.normal(size=th.a.shape) * (np.asarray(th.a) > 0)
    db = rng.normal(size=th.b.shape) * (np.asarray(th.b) > 0)
    da[np.asarray(th.a) > 0] -= da.sum() / np.sum(np.asarray(th.a) > 0)
    db[np.asarray(th.b) > 0] -= db.sum() / np.sum(np.asarray(th.b) > 0)
    return OTParams(
        jnp.asarray(rng.normal(size=th.cost.shape)),
        jnp.asarray(da),
        jnp.asarray(db),
        jnp.asarray(0.3),
    )


def restrict(th):
    return OTParams(th.cost[np.ix_(KEEP_A, KEEP_B)], th.a[KEEP_A], th.b[KEEP_B], th.epsilon)


def check_against_reduced(got, want, tol):
    """The kept block equals the reduced problem's; every entry of the zero-weight atoms (plan,
    derivatives in their costs, jvp, Jacobians) is exactly 0."""
    P, value, grad, dP, *jacobians = got
    Pr, value_r, grad_r, dP_r, *jacobians_r = want
    P, dP, g_C = np.asarray(P), np.asarray(dP), np.asarray(grad.cost)
    block = np.ix_(KEEP_A, KEEP_B)
    np.testing.assert_allclose(P[block], Pr, atol=tol)
    np.testing.assert_allclose(value, value_r, atol=tol)
    np.testing.assert_allclose(g_C[block], grad_r.cost, atol=tol)
    np.testing.assert_allclose(float(grad.epsilon), float(grad_r.epsilon), atol=tol)
    # ∂cost/∂(a, b) is defined up to c·(1, −1) (only Σa = Σb directions are valid)
    shift = np.asarray(grad.a)[KEEP_A] - np.asarray(grad_r.a)
    np.testing.assert_allclose(shift, shift.mean(), atol=tol)
    np.testing.assert_allclose(np.asarray(grad.b)[KEEP_B] - grad_r.b, -shift.mean(), atol=tol)
    np.testing.assert_allclose(dP[block], dP_r, atol=tol)
    for padded in (P, dP, g_C):
        assert np.all(padded[ZERO_A] == 0) and np.all(padded[:, ZERO_B] == 0)
    for J, J_r in zip(jacobians, jacobians_r, strict=True):
        J = np.asarray(J)
        np.testing.assert_allclose(J[np.ix_(KEEP_A, KEEP_B, KEEP_A, KEEP_B)], J_r, atol=tol)
        kept = np.zeros(J.shape[2:], bool)
        kept[block] = True
        assert np.all(J[..., ~kept] == 0), "the plan depends on a zero-weight atom's cost"


def compare_padded(mode, pad_cost=None, jacobians=False):
    full, reduced = padded_problem(pad_cost=pad_cost)
    d = zero_direction(full, np.random.default_rng(5))
    fn = jax.jit(lambda t, d: everything(mode, t, d, jacobians))
    got, want = fn(full, d), fn(reduced, restrict(d))
    # Both runs iterate the same active coordinates (the gauge is the mean over the support):
    # they agree to rounding, relative to the largest derivative.
    scale = max(float(np.abs(np.asarray(want[3])).max()), 1.0)
    check_against_reduced(got, want, tolerances.rounding(jnp.float64, cond=1e3, n=24) * scale)


@pytest.mark.parametrize("mode_name", list(ZERO_MODES))
def test_zero_weights_give_the_problem_without_them(mode_name):
    """Plan, ⟨P, C⟩ + εKL, its gradient in (C, a, b, ε) and a jvp of the plan: the padded problem
    equals the reduced one in every mode (jit)."""
    compare_padded(ZERO_MODES[mode_name])


def test_zero_weight_padding_jacobians():
    """Padding as ott-jax does it (zero costs on the padded rows and columns): jacrev of the
    plan in C, Implicit."""
    compare_padded(itd.Implicit(), pad_cost=0.0, jacobians=True)


def test_zero_weights_vmap_and_eager():
    """The same comparison under vmap (the padded problem next to a fully positive one), and
    the plan and its jvp eagerly (Implicit, the default)."""
    full, reduced = padded_problem()
    other, _ = padded_problem(seed=7)
    other = other._replace(a=jnp.full(6, 1 / 6), b=jnp.full(4, 1 / 4))
    d = zero_direction(full, np.random.default_rng(5))
    mode = itd.Implicit()
    want = jax.jit(lambda t, d: everything(mode, t, d))(reduced, restrict(d))
    tol = tolerances.rounding(jnp.float64, cond=1e3, n=24) * max(
        float(np.abs(np.asarray(want[3])).max()), 1.0
    )
    stack = lambda *xs: jax.tree_util.tree_map(lambda *a: jnp.stack(a), *xs)  # noqa: E731
    batched = jax.jit(jax.vmap(lambda t, d: everything(mode, t, d)))(
        stack(full, other), stack(d, d)
    )
    check_against_reduced(jax.tree_util.tree_map(lambda a: a[0], batched), want, tol)
    P, dP = (np.asarray(v) for v in jax.jvp(small_plan, (full,), (d,)))
    block = np.ix_(KEEP_A, KEEP_B)
    np.testing.assert_allclose(P[block], want[0], atol=tol)
    np.testing.assert_allclose(dP[block], want[3], atol=tol)
    assert np.all(P[ZERO_A] == 0) and np.all(dP[ZERO_A] == 0) and np.all(dP[:, ZERO_B] == 0)


def test_zero_weight_atoms_of_a_point_cloud():
    """θ = point positions and weights: the gradient of the regularised cost in the positions of
    zero-weight points is exactly 0, the others' equal the reduced cloud's (Implicit; jacfwd of
    the plan in the positions likewise)."""
    rng = np.random.default_rng(6)
    x, y = rng.uniform(size=(6, 2)), rng.uniform(size=(4, 2))
    full, _ = padded_problem()

    def params(t):
        cost = jnp.sum((t["x"][:, None] - t["y"][None]) ** 2, -1)
        return OTParams(cost, t["a"], t["b"], jnp.asarray(0.1))

    sk = Sinkhorn(params)

    def plan_of(t):
        sol = itd.fixed_point(sk.F, sk.init(t), t, tol=1e-12, max_steps=5_000)
        return sk.readout(sol.value, t)

    @jax.jit
    def derivatives(t):
        grad = jax.grad(lambda t: reg_ot_cost(plan_of(t), params(t)))(t)
        return grad, jax.jacfwd(lambda x: plan_of({**t, "x": x}))(t["x"])

    t_full = {"x": jnp.asarray(x), "y": jnp.asarray(y), "a": full.a, "b": full.b}
    t_red = {
        "x": t_full["x"][KEEP_A],
        "y": t_full["y"][KEEP_B],
        "a": full.a[KEEP_A],
        "b": full.b[KEEP_B],
    }
    (g, J), (g_red, J_red) = derivatives(t_full), derivatives(t_red)
    tol = tolerances.rounding(jnp.float64, cond=1e3, n=24) * np.abs(np.asarray(J_red)).max()
    np.testing.assert_allclose(np.asarray(g["x"])[KEEP_A], g_red["x"], atol=tol)
    np.testing.assert_allclose(np.asarray(g["y"])[KEEP_B], g_red["y"], atol=tol)
    assert np.all(np.asarray(g["x"])[ZERO_A] == 0) and np.all(np.asarray(g["y"])[ZERO_B] == 0)
    J = np.asarray(J)
    np.testing.assert_allclose(J[np.ix_(KEEP_A, KEEP_B, KEEP_A)], J_red, atol=tol)
    assert np.all(J[:, :, ZERO_A] == 0) and np.all(J[ZERO_A] == 0)


def test_zero_weight_derivative_is_one_sided():
    """The derivative in a zero weight is the one-sided derivative as it grows from 0 (mass
    taken evenly from the other atoms): against the second-order one-sided difference
    (−3P(0) + 4P(h) − P(2h))/2h of the NumPy reference with positive weights. Its error is
    h²|P‴|/3 + 8δ/2h for a reference accurate to δ (1e-14: stopped at 1e-15 in f, P/ε);
    each derivative of exp((f ⊕ g − C)/ε) brings a factor 1/ε, so |P‴| ≲ max P/ε³."""
    full, _ = padded_problem()
    a = np.asarray(full.a)
    d = -a / a.sum()  # take mass evenly from the kept atoms …
    d[1] += 1.0  # … and give it to atom 1 (weight 0): Σd = 0
    direction = OTParams(jnp.zeros_like(full.cost), jnp.asarray(d), jnp.zeros(4), jnp.asarray(0.0))
    got = np.asarray(jax.jit(lambda t: jax.jvp(small_plan, (t,), (direction,))[1])(full))

    def ref(t):
        a_t = a + t * d
        P = numpy_sinkhorn(
            np.asarray(full.cost)[:, KEEP_B],
            np.where(a_t > 0, a_t, 1e-300),
            np.asarray(full.b)[KEEP_B],
            0.1,
            tol=1e-15,
        )
        P[a_t <= 0] = 0.0
        out = np.zeros((6, 4))
        out[:, KEEP_B] = P
        return out

    h, delta, eps = 1e-5, 1e-14, 0.1
    P0 = ref(0.0)
    fd = (-3 * P0 + 4 * ref(h) - ref(2 * h)) / (2 * h)
    bound = tolerances.SAFETY * (h * h * P0.max() / eps**3 / 3 + 8 * delta / (2 * h))
    np.testing.assert_allclose(got, fd, atol=bound, rtol=0)
    assert np.abs(got[1]).max() > 0.01  # the zero-weight row does move


def test_zero_weights_match_ott():
    """ott-jax (which supports zero weights) on the same padded problem: the plan and
    ⟨P, C⟩ + εKL agree, and so do ott's implicit gradients in C (ott returns 0 on the rows of
    zero-weight atoms too) and in the kept weights (up to the constant of the Σa = Σb gauge;
    ott returns NaN for zero weights, we return the one-sided derivative)."""
    from ott.geometry import geometry
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn as ott_sinkhorn

    full, _ = padded_problem()

    def ott_cost(C, a, b):
        geom = geometry.Geometry(cost_matrix=C, epsilon=0.1)
        problem = linear_problem.LinearProblem(geom, a, b)
        out = ott_sinkhorn.Sinkhorn(threshold=1e-12, max_iterations=20_000)(problem)
        return out.reg_ot_cost, out.matrix

    with jax.numpy_dtype_promotion("standard"):  # ott-jax mixes int and float arrays
        (value_ott, P_ott), grads_ott = jax.jit(
            jax.value_and_grad(ott_cost, argnums=(0, 1, 2), has_aux=True)
        )(full.cost, full.a, full.b)
    P = small_plan(full)
    np.testing.assert_allclose(P, P_ott, atol=1e-10)
    cost = lambda t: reg_ot_cost(small_plan(t), t)  # noqa: E731
    value, grad = jax.jit(jax.value_and_grad(cost))(full)
    np.testing.assert_allclose(value, value_ott, rtol=1e-10)
    np.testing.assert_allclose(grad.cost, grads_ott[0], atol=1e-9)
    for ours, theirs, keep in ((grad.a, grads_ott[1], KEEP_A), (grad.b, grads_ott[2], KEEP_B)):
        gap = np.asarray(ours)[keep] - np.asarray(theirs)[keep]
        np.testing.assert_allclose(gap, gap.mean(), atol=1e-9)
    assert np.all(np.isnan(np.asarray(grads_ott[1])[ZERO_A]))
    assert np.all(np.isfinite(np.asarray(grad.a)))


def test_invalid_marginals():
    """Negative weights and unequal masses: a ValueError for concrete marginals (at init),
    NaN iterates (SolveError) under jit."""
    th = theta(0.05)
    with pytest.raises(ValueError, match="≥ 0"):
        SK.init(th._replace(a=th.a.at[0].set(-0.01)))
    with pytest.raises(ValueError, match="equal positive mass"):
        SK.init(th._replace(a=2.0 * th.a))
    SK.init(th._replace(a=th.a * (1 + 1e-15)))  # rounding-level mismatch is fine
    with pytest.raises(Exception, match="NaN or inf"):
        jax.block_until_ready(solve_picard(th._replace(a=2.0 * th.a)))
