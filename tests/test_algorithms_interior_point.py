"""Mehrotra interior-point QP on random QPs with equality and inequality constraints (the
one-step paper's setting, n = 12): scipy reference, KKT, every mode, one-step ≈ implicit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

import iterdiff as itd
from algorithm_problems import central_difference, random_qp
from iterdiff.algorithms import InteriorPointQP, QPParams, QPState

IP = InteriorPointQP()
SEEDS = [0, 1, 2]


def qp(seed):
    return QPParams(**{k: jnp.asarray(v) for k, v in random_qp(12, seed).items()})


def solve(theta, mode=itd.Implicit(itd.linear_solve.LU()), tol=1e-12):
    return itd.fixed_point(IP.F, IP.init(theta), theta, mode=mode, tol=tol, max_steps=100)


solve_jit = jax.jit(lambda th: solve(th))


def scipy_qp(p):
    Q, q, A, b, G, h = (np.asarray(v) for v in p)
    res = minimize(
        lambda x: 0.5 * x @ Q @ x + q @ x,
        np.zeros(len(q)),
        jac=lambda x: Q @ x + q,
        constraints=[
            {"type": "eq", "fun": lambda x: A @ x - b, "jac": lambda x: A},
            {"type": "ineq", "fun": lambda x: h - G @ x, "jac": lambda x: -G},
        ],
        method="SLSQP",
        options={"ftol": 1e-12, "maxiter": 1000},
    )
    assert res.success or "Positive directional derivative" in res.message, (
        res.message
    )  # precision floor

    return res.x


def active_set_derivative(p, x, s, direction):
    """Closed-form dx̄ for a change (dq, db, dh) with Q, A, G fixed: differentiate the KKT
    system restricted to the active inequalities S = {s_i ≈ 0} (strict complementarity)."""
    Q, q, A, b, G, h = (np.asarray(v) for v in p)
    S = np.asarray(s) < 1e-7
    GS = G[S]
    n, m, k = len(q), len(b), int(S.sum())
    K = np.block([[Q, A.T, GS.T], [A, np.zeros((m, m + k))], [GS, np.zeros((k, m + k))]])
    rhs = np.concatenate(
        [-np.asarray(direction.q), np.asarray(direction.b), np.asarray(direction.h)[S]]
    )
    return np.linalg.solve(K, rhs)[:n]


@pytest.mark.parametrize("seed", SEEDS)
def test_solution_matches_scipy_and_kkt(seed):
    p = qp(seed)
    sol = solve_jit(p)
    assert isinstance(sol.value, QPState)
    assert int(sol.steps) < 30
    x, s, y, z = (np.asarray(v) for v in sol.value)
    Q, q, A, b, G, h = (np.asarray(v) for v in p)
    np.testing.assert_allclose(Q @ x + q + A.T @ y + G.T @ z, 0.0, atol=1e-10)
    np.testing.assert_allclose(A @ x, b, atol=1e-10)
    np.testing.assert_allclose(G @ x + s, h, atol=1e-10)
    assert s.min() >= 0 and z.min() >= 0 and np.max(s * z) < 1e-10
    assert 0 < np.sum(s < 1e-7) < len(s)  # some, not all, inequalities active
    np.testing.assert_allclose(x, scipy_qp(p), atol=1e-6)


def _direction(seed):
    rng = np.random.default_rng(100 + seed)
    p = random_qp(12, seed)
    zero = {k: jnp.zeros_like(jnp.asarray(v)) for k, v in p.items()}
    zero.update(q=jnp.asarray(rng.normal(size=12)), b=jnp.asarray(rng.normal(size=3)))
    zero.update(h=jnp.asarray(rng.normal(size=6)))
    return QPParams(**zero)


MODES = {
    "implicit": itd.Implicit(itd.linear_solve.LU()),
    "onestep": itd.OneStep(),
    "unrolled": itd.Unrolled(),
}


@jax.jit
def _jvps(p, d):
    """Forward-mode derivatives in every mode, one compilation for all seeds."""
    return {
        name: jax.jvp(lambda u, m=mode: solve(u, m).value.x, (p,), (d,))[1]
        for name, mode in MODES.items()
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_forward_derivatives_all_modes(seed):
    """Every mode agrees with the active-set closed form and central differences; one-step is
    within 1e-6 of implicit (one-step paper: ~1e-6)."""
    p, d = qp(seed), _direction(seed)
    sol = solve_jit(p)
    ref = active_set_derivative(p, sol.value.x, sol.value.s, d)
    fd = central_difference(lambda t: solve_jit(t).value.x, p, d, eps=1e-6)
    jvps = _jvps(p, d)
    gap = np.max(np.abs(jvps["onestep"] - jvps["implicit"]))
    print(f"IP seed {seed}: max|one-step − implicit| = {gap:.1e}")
    assert gap < 1e-6
    np.testing.assert_allclose(fd, ref, rtol=1e-5, atol=1e-7)
    for name, jvp in jvps.items():
        np.testing.assert_allclose(jvp, ref, rtol=1e-8, atol=1e-9, err_msg=name)


def test_reverse_mode_paper_objective():
    """∇_b ½‖x*(b)‖² (the one-step paper's experiment), one-step vs implicit vs unrolled (reverse
    mode through the factored KKT solves) vs closed form."""
    p = qp(0)

    def outer(b, mode):
        return 0.5 * jnp.sum(solve(p._replace(b=b), mode).value.x ** 2)

    g_imp = jax.jit(jax.grad(lambda b: outer(b, MODES["implicit"])))(p.b)
    g_os = jax.jit(jax.grad(lambda b: outer(b, MODES["onestep"])))(p.b)
    g_unr = jax.jit(jax.grad(lambda b: outer(b, MODES["unrolled"])))(p.b)
    sol = solve_jit(p)
    cols = []
    for i in range(len(p.b)):
        e = jax.tree_util.tree_map(jnp.zeros_like, p)._replace(b=jnp.eye(len(p.b))[i])
        cols.append(active_set_derivative(p, sol.value.x, sol.value.s, e))
    want = np.stack(cols, 1).T @ np.asarray(sol.value.x)
    np.testing.assert_allclose(g_imp, want, rtol=1e-8)
    np.testing.assert_allclose(g_unr, want, rtol=1e-8)
    assert np.max(np.abs(g_os - g_imp)) < 1e-6


def test_inequalities_only_and_errors():
    p = qp(1)
    only_ineq = p._replace(A=None, b=None)
    sol = jax.jit(lambda t: solve(t))(only_ineq)
    x = np.asarray(sol.value.x)
    assert sol.value.y.shape == (0,)
    assert np.all(np.asarray(p.G) @ x <= np.asarray(p.h) + 1e-10)
    with pytest.raises(ValueError, match="both A and b"):
        IP.F(IP.init(p), p._replace(b=None))
    with pytest.raises(ValueError, match="G must be"):
        IP.init(p._replace(G=p.G[:, :5]))
    with pytest.raises(TypeError, match="QPParams"):
        IP.init({"Q": p.Q})
    with pytest.raises(ValueError, match="fraction_to_boundary"):
        InteriorPointQP(fraction_to_boundary=1.0)
