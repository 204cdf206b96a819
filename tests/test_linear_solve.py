"""Linear solvers against dense linear algebra, on flat vectors and mixed-dtype pytrees, under
jit and vmap; every failure must carry the RESULTS code that says why."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
from iterdiff import linear_solve as ls

R = itd.RESULTS
rng = np.random.default_rng(0)
N = 12
_Q = np.linalg.qr(rng.normal(size=(N, N)))[0]
SPD = jnp.asarray(_Q @ np.diag(np.linspace(0.1, 1.0, N)) @ _Q.T)  # contraction I − SPD
GENERAL = jnp.asarray(np.eye(N) - 0.5 * rng.normal(size=(N, N)) / np.sqrt(N))
B = jnp.asarray(rng.normal(size=N))

SOLVERS = {
    "gmres": ls.GMRES(),
    "gmres_restart4": ls.GMRES(restart=4),
    "bicgstab": ls.BiCGStab(),
    "lu": ls.LU(),
    "least_squares": ls.LeastSquares(),
    "dense_least_squares": ls.DenseLeastSquares(),
}
# Solvers for a symmetric positive definite contraction: every solver applies.
ALL = {**SOLVERS, "cg": ls.CG(), "neumann": ls.Neumann()}
del ALL["gmres_restart4"]

_compiled = {}


def _run(solver, M, b):
    """jit(solve) for a dense M passed as an argument: one compilation per solver and dtype
    serves every system of that size."""
    key = (solver, M.shape, M.dtype)
    if key not in _compiled:
        _compiled[key] = jax.jit(lambda M, b: solver.solve(lambda v: M @ v, b))
    return _compiled[key](M, b)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_general_system(name):
    x, stats = _run(SOLVERS[name], GENERAL, B)
    np.testing.assert_allclose(x, jnp.linalg.solve(GENERAL, B), rtol=1e-8, atol=1e-9)
    assert bool(stats.converged) and int(stats.result) == R.successful
    assert float(stats.residual) <= 1e-10
    true = jnp.linalg.norm(B - GENERAL @ x) / jnp.linalg.norm(B)
    np.testing.assert_allclose(stats.residual, true, rtol=0.2, atol=1e-15)


@pytest.mark.parametrize("solver", [ls.CG(), ls.Neumann()], ids=["cg", "neumann"])
def test_spd_contraction_system(solver):
    x, stats = _run(solver, SPD, B)
    np.testing.assert_allclose(x, jnp.linalg.solve(SPD, B), rtol=1e-8)
    assert bool(stats.converged)


# Steps are matvecs, for every solver.


def test_neumann_counts_about_log_tol_over_log_rho_steps():
    _, stats = _run(ls.Neumann(), SPD, B)
    rho = 0.9  # spectral radius of I − SPD
    assert abs(int(stats.steps) - np.log(1e-10) / np.log(rho)) < 25


@pytest.mark.parametrize("name", ["lu", "dense_least_squares"])
def test_dense_solvers_count_n_matvecs(name):
    _, stats = _run(SOLVERS[name], GENERAL, B)
    assert int(stats.steps) == N


def test_steps_count_matvecs():
    calls = []

    def matvec(v):
        jax.debug.callback(lambda: calls.append(1))
        return GENERAL @ v

    for solver in [ls.GMRES(max_steps=7, restart=3), ls.BiCGStab()]:
        calls.clear()
        _, stats = jax.jit(lambda b, s=solver: s.solve(matvec, b))(B)
        # The conditioning probe and the two power-iteration matvecs of the ‖M‖ estimate are
        # not counted; the residual of the last sweep is the final check (not counted either).
        assert len(calls) - 4 == int(stats.steps) <= solver.max_steps


# Pytrees: every leaf keeps its dtype and is as accurate as its precision allows.

_SHAPES = {"a": ((3,), jnp.float32), "b": ((2, 2), jnp.float64)}
_MIXED_M = jnp.asarray(
    np.eye(7) - 0.4 * _Q[:7, :7] @ np.diag(np.linspace(0.2, 1, 7)) @ _Q[:7, :7].T
)


def _to_vec(tree):
    return jnp.concatenate([tree["a"].astype(jnp.float64), tree["b"].reshape(-1)])


def _to_tree(v):
    return {"a": v[:3].astype(jnp.float32), "b": v[3:].reshape(2, 2)}


def _mixed_matvec(tree):
    return _to_tree(_MIXED_M @ _to_vec(tree))


_mixed_compiled = {}


def _run_mixed(solver, bs):
    """jit(vmap(solve)) on a dict of a float32 and a float64 leaf, compiled once per solver."""
    if solver not in _mixed_compiled:
        _mixed_compiled[solver] = jax.jit(jax.vmap(lambda b: solver.solve(_mixed_matvec, b)))
    return _mixed_compiled[solver](bs)


@pytest.mark.parametrize("name", list(ALL))
def test_mixed_dtype_pytree_under_jit_and_vmap_at_any_scale(name):
    """A float32 and a float64 leaf, right-hand sides of scale 1, 1e-20 and 1e19 (the float32
    extremes where an unscaled ‖b‖ underflows to 0 or overflows to inf), and b = 0."""
    scales = np.array([1.0, 1e-20, 1e19, 0.0])
    v = rng.normal(size=7)
    flat = jnp.asarray(scales[:, None] * v[None, :])
    bs = {"a": flat[:, :3].astype(jnp.float32), "b": flat[:, 3:].reshape(4, 2, 2)}
    xs, stats = _run_mixed(ALL[name], bs)
    assert xs["a"].dtype == jnp.float32 and xs["b"].dtype == jnp.float64
    assert xs["a"].shape == (4, 3) and xs["b"].shape == (4, 2, 2)
    exact = np.linalg.solve(np.asarray(_MIXED_M), v)
    for i, s in enumerate(scales):
        got = np.asarray(_to_vec({"a": xs["a"][i], "b": xs["b"][i]}))
        if s == 0:
            assert np.all(got == 0)
        else:
            np.testing.assert_allclose(got / s, exact, rtol=1e-4, atol=1e-4 * np.abs(exact).max())
    assert np.all(np.asarray(stats.result) == R.successful), stats
    assert np.all(np.asarray(stats.residual)[:3] <= 1e-5)  # the float32 default tol


_SCALE_SOLVERS = ["gmres", "cg", "lu"]  # the mixed-pytree test covers every solver in float32


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("name", _SCALE_SOLVERS)
def test_scaled_right_hand_sides(name, dtype):
    """Issue 7 cause 3: the solution of M x = c·b is c·x for c down to 1e-20 (float32) /
    1e-160 (float64) and up to 1e19 / 1e160, never a spurious zero or failure."""
    big = 1e19 if dtype == jnp.float32 else 1e160
    small = 1e-20 if dtype == jnp.float32 else 1e-160
    M = SPD.astype(dtype)
    b = B.astype(dtype)
    solver = ALL[name]
    key = ("scaled", name, dtype)
    if key not in _compiled:
        _compiled[key] = jax.jit(jax.vmap(lambda b: solver.solve(lambda v: M @ v, b)))
    scales = jnp.asarray([1.0, small, big], dtype)
    xs, stats = _compiled[key](scales[:, None] * b[None, :])
    assert xs.dtype == dtype
    exact = np.linalg.solve(np.asarray(SPD), np.asarray(B))
    rtol = 1e-3 if dtype == jnp.float32 else 1e-8
    for i, s in enumerate([1.0, small, big]):
        np.testing.assert_allclose(np.asarray(xs[i], np.float64) / s, exact, rtol=rtol, atol=rtol)
    assert np.all(np.asarray(stats.result) == R.successful)
    assert np.all(np.asarray(stats.residual) <= (1e-5 if dtype == jnp.float32 else 1e-10))


def test_zero_right_hand_side_is_solved_exactly():
    for solver in SOLVERS.values():
        x, stats = _run(solver, GENERAL, jnp.zeros(N))
        assert int(stats.result) == R.successful and float(jnp.max(jnp.abs(x))) == 0.0
        assert float(stats.residual) == 0.0


# Singular systems.


def _singular_consistent():
    """I − A with A 1 = 1 (a Sinkhorn-like gauge): null space span(1), b ⊥ 1."""
    P = rng.uniform(size=(N, N))
    P = P / P.sum(axis=1, keepdims=True)  # row-stochastic: P 1 = 1
    P = 0.5 * (P + P.T)
    P = P / P.sum(axis=1, keepdims=True)
    M = jnp.asarray(np.eye(N) - P)
    b = M @ jnp.asarray(rng.normal(size=N))  # in the range
    return M, b


SINGULAR, SINGULAR_B = _singular_consistent()


@pytest.mark.parametrize("name", ["least_squares", "dense_least_squares"])
def test_minimum_norm_solution_of_singular_system(name):
    x, stats = _run(SOLVERS[name], SINGULAR, SINGULAR_B)
    np.testing.assert_allclose(x, jnp.linalg.pinv(SINGULAR) @ SINGULAR_B, atol=1e-8)
    assert int(stats.result) == R.successful


def test_gmres_solves_consistent_singular_system():
    x, stats = _run(ls.GMRES(), SINGULAR, SINGULAR_B)
    assert int(stats.result) == R.successful
    np.testing.assert_allclose(SINGULAR @ x, SINGULAR_B, atol=1e-9)


@pytest.mark.parametrize("name", ["least_squares", "dense_least_squares"])
def test_inconsistent_system_is_reported_as_inconsistent(name):
    """b along the null space: no solution; least squares says why (not "out of steps")."""
    b = jnp.ones(N) + 0.1 * SINGULAR_B
    _, stats = _run(SOLVERS[name], SINGULAR, b)
    assert int(stats.result) == R.linear_inconsistent
    assert float(stats.residual) > 0.5


@pytest.mark.parametrize("name", ["gmres", "lu", "bicgstab"])
def test_inconsistent_system_is_not_converged(name):
    _, stats = _run(SOLVERS[name], SINGULAR, jnp.ones(N))
    assert not bool(stats.converged)


# Ill-conditioned systems (issue 7 cause 11).

# M = I − A for A = diag(1 − 1e-12, 0.5): the implicit system of x ↦ A x + c θ. With
# b = c = (1e-11, 1) the solution is (10, 2) (10.0002 for the rounded 1 − 1e-12). GMRES, CG,
# BiCGStab and CGLS stop after one step at x ≈ (2e-11, 2): the relative residual is 1e-11, below
# tol, because b's component along the nearly singular direction is below tol·‖b‖.
_DIAG = {
    jnp.float64: (jnp.asarray([1 - 1e-12, 0.5]), jnp.asarray([1e-11, 1.0])),
    # float32: 1 − 2⁻¹⁷ is exact; x* = (0.13, 2), found (2e-6, 2).
    jnp.float32: (
        jnp.asarray([1 - 2.0**-17, 0.5], jnp.float32),
        jnp.asarray([1e-6, 1], jnp.float32),
    ),
}


@pytest.mark.parametrize(
    "name, dtype",
    [(n, jnp.float64) for n in ["gmres", "cg", "bicgstab", "least_squares"]]
    + [(n, jnp.float32) for n in ["gmres", "least_squares"]],
)
def test_nearly_singular_system_is_flagged(name, dtype):
    d, b = _DIAG[dtype]
    solver = ALL[name]
    # b, and the right-hand side of the transposed solve of reverse mode, e₁ (whose solution
    # is 1e12·e₁ in float64).
    bs = jnp.stack([b, jnp.asarray([1.0, 0.0], dtype)])
    xs, stats = jax.jit(jax.vmap(lambda b: solver.solve(lambda v: v - d * v, b)))(bs)
    assert float(stats.residual[0]) <= 1e-5  # the residual test alone passes
    assert abs(float(xs[0, 0]) - float(b[0] / (1 - d[0]))) > 0.01  # and x is wrong
    assert np.asarray(stats.result).tolist() == [R.linear_ill_conditioned] * 2


# Breakdowns, non-finite values, running out of steps.


def test_out_of_steps_is_reported():
    x, stats = _run(ls.GMRES(max_steps=3, restart=3), GENERAL, B)
    assert int(stats.result) == R.linear_max_steps_reached
    assert int(stats.steps) == 3
    assert float(stats.residual) > 1e-10


@pytest.mark.parametrize(
    "solver, M, b",
    [
        # pᵀMp = 0 on the first step: CG needs M positive definite.
        (ls.CG(), jnp.diag(jnp.asarray([1.0, -1.0])), jnp.asarray([1.0, 1.0])),
        # r̂ᵀMp = 0 on the first step.
        (ls.BiCGStab(), jnp.asarray([[0.0, 1.0], [1.0, 0.0]]), jnp.asarray([1.0, 0.0])),
        # M b = 0: the Krylov space makes the Hessenberg matrix singular.
        (ls.GMRES(), jnp.asarray([[0.0, 1.0], [0.0, 0.0]]), jnp.asarray([1.0, 0.0])),
    ],
    ids=["cg", "bicgstab", "gmres"],
)
def test_breakdown_is_reported(solver, M, b):
    x, stats = _run(solver, M, b)
    assert int(stats.result) == R.linear_breakdown
    assert bool(jnp.all(jnp.isfinite(x)))


def test_cg_on_indefinite_system_is_reported():
    M = jnp.diag(jnp.asarray([1.0, -1.0] * (N // 2)))
    _, stats = _run(ls.CG(max_steps=50), M @ GENERAL, B)
    assert not bool(stats.converged)


@pytest.mark.parametrize("name", list(ALL))
def test_nonfinite_right_hand_side_is_named(name):
    """An infinite ∂F/∂θ gives b = inf: the code names the input, and x is NaN."""
    b = B.at[3].set(jnp.inf)
    x, stats = _run(ALL[name], SPD, b)
    assert int(stats.result) == R.linear_nonfinite_input
    assert bool(jnp.all(jnp.isnan(x)))


@pytest.mark.parametrize("name", ["gmres", "lu"])
def test_nonfinite_operator_is_reported(name):
    M = GENERAL.at[2, 5].set(jnp.nan)
    _, stats = _run(SOLVERS[name], M, B)
    assert int(stats.result) == R.linear_nonfinite


def test_status_codes_under_vmap():
    bs = jnp.stack([B, B.at[0].set(jnp.nan), jnp.zeros(N), 2 * B])
    xs, stats = jax.jit(jax.vmap(lambda b: ls.GMRES().solve(lambda v: GENERAL @ v, b)))(bs)
    np.testing.assert_allclose(xs[0], jnp.linalg.solve(GENERAL, B), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(xs[3], 2 * xs[0], rtol=1e-8, atol=1e-9)
    assert bool(jnp.all(jnp.isnan(xs[1]))) and bool(jnp.all(xs[2] == 0))
    assert stats.result.dtype == jnp.int32
    assert np.asarray(stats.result).tolist() == [
        R.successful,
        R.linear_nonfinite_input,
        R.successful,
        R.successful,
    ]
    assert np.asarray(stats.converged).tolist() == [True, False, True, True]


def test_float32_default_tolerance():
    M32, b32 = GENERAL.astype(jnp.float32), B.astype(jnp.float32)
    x, stats = _run(ls.GMRES(), M32, b32)
    assert x.dtype == jnp.float32 and bool(stats.converged)
    assert stats.residual.dtype == jnp.float32
    np.testing.assert_allclose(x, jnp.linalg.solve(GENERAL, B), rtol=1e-4, atol=1e-4)


# Options and inputs (issue 7 cause 6).


@pytest.mark.parametrize(
    "make",
    [
        lambda: ls.GMRES(tol=float("inf")),
        lambda: ls.GMRES(tol=1.0),
        lambda: ls.CG(tol=2.0),
        lambda: ls.GMRES(tol=0.0),
        lambda: ls.Neumann(tol=float("nan")),
        lambda: ls.GMRES(restart=0),
        lambda: ls.CG(max_steps=0),
        lambda: ls.LeastSquares(max_steps=2**31),
        lambda: ls.DenseLeastSquares(rcond=1.5),
    ],
)
def test_bad_values_are_rejected(make):
    with pytest.raises(ValueError, match="must be"):
        make()


@pytest.mark.parametrize(
    "make",
    [
        lambda: ls.GMRES(max_steps=True),
        lambda: ls.GMRES(restart=True),
        lambda: ls.BiCGStab(tol="1e-5"),
        lambda: ls.LU(tol=True),
        lambda: ls.CG(max_steps=10.0),
    ],
)
def test_bad_types_are_rejected(make):
    with pytest.raises(TypeError, match="must be"):
        make()


def test_numpy_numbers_are_accepted():
    solver = ls.GMRES(tol=np.float32(1e-6), max_steps=np.int64(100), restart=np.int32(5))
    assert solver.max_steps == 100 and isinstance(solver.max_steps, int)
    assert solver.restart == 5 and solver.tol == pytest.approx(1e-6)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.int32])
def test_half_precision_and_integer_leaves_are_rejected(dtype):
    b = {"ok": jnp.ones(2), "bad": jnp.ones(2, dtype)}
    with pytest.raises(TypeError, match=r"\['bad'\]"):
        ls.GMRES().solve(lambda v: v, b)


def test_default_tol_follows_the_least_precise_leaf():
    assert ls.default_tol(jnp.float64) == 1e-10 and ls.default_tol(jnp.float32) == 1e-5


# The tree helpers added for the linear solvers.


def test_tree_ravel_round_trip_keeps_dtypes_under_strict_promotion():
    from iterdiff import _tree

    x = {"a": jnp.arange(3, dtype=jnp.float32), "b": jnp.ones((2, 2))}
    vec, unravel = _tree.ravel(x)
    assert vec.dtype == jnp.float64 and vec.shape == (7,)
    back = unravel(vec)
    assert back["a"].dtype == jnp.float32 and back["b"].shape == (2, 2)
    np.testing.assert_array_equal(back["a"], x["a"])


def test_tree_scale_wide_forms_the_product_in_the_widest_dtype():
    from iterdiff import _tree

    x = {"a": jnp.asarray([1e-30], jnp.float32), "b": jnp.asarray([1e-160])}
    y = _tree.scale_wide(jnp.asarray(1e160), x)  # 1e160 is inf in float32
    assert y["a"].dtype == jnp.float32 and float(y["a"][0]) == np.inf
    np.testing.assert_allclose(y["b"], [1.0])
    z = _tree.scale_wide(jnp.asarray(1e30), {"a": jnp.asarray([1e-30], jnp.float32)})
    np.testing.assert_allclose(z["a"], [1.0], rtol=1e-6)
