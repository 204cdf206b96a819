"""Conservative Jacobian sets: jacobian_set, Lipschitz gradient selections, the set-valued
fixed point (recursion, pruning, gap, a-priori bound) and the worked example J^imp ⊊ J^pb."""

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
from iterdiff import nonsmooth as ns
from iterdiff import prox


def _as_set(J):
    """Pairs [A | B] as a set of tuples (exact floats)."""
    return {tuple(np.concatenate([a, b], 1).ravel().tolist()) for a, b in J}


# --- jacobian_set -------------------------------------------------------------------------------


def test_jacobian_set_is_the_jacobian_away_from_kinks():
    W = jnp.array([[0.3, -0.2], [0.1, 0.4]])

    def F(x, theta):
        return prox.soft_threshold(W @ x + theta, 0.5) + 0.1 * ns.relu(x)

    x, theta = jnp.array([0.7, -0.4]), jnp.array([1.0, 0.2])
    J = ns.jacobian_set(F, x, theta)
    assert len(J) == 1
    A, B = jax.jacfwd(F, argnums=(0, 1))(x, theta)
    np.testing.assert_array_equal(J.A[0], A)
    np.testing.assert_array_equal(J.B[0], B)


def test_jacobian_set_enumerates_extreme_selections_at_kinks():
    # soft_threshold(x/2 + θ, 1) at x = 0, θ = (1, 0.3, −1): coordinates 0 and 2 on a kink
    def F(x, theta):
        return prox.soft_threshold(x / 2 + theta, 1.0)

    J = ns.jacobian_set(F, jnp.zeros(3), jnp.array([1.0, 0.3, -1.0]))
    expected = set()
    for d0 in (0.0, 1.0):
        for d2 in (0.0, 1.0):
            D = np.diag([d0, 0.0, d2])
            expected.add(tuple(np.concatenate([D / 2, D], 1).ravel().tolist()))
    assert _as_set(J) == expected

    # mixed primitives: relu on a kink and a maximum tie; pytrees flatten in ravel_pytree order
    def G(x, theta):
        return {"u": ns.relu(x["u"] - theta), "v": ns.maximum(x["v"], 2 * x["u"])}

    J = ns.jacobian_set(G, {"u": jnp.array(1.0), "v": jnp.array(2.0)}, jnp.array(1.0))
    assert len(J) == 4
    expected = {
        (s, 0.0, -s, 2 * (1 - w), w, 0.0) for s in (0.0, 1.0) for w in (0.0, 1.0)
    }  # rows (u, v), columns (u, v | θ)
    assert _as_set(J) == expected


def test_jacobian_set_caps_the_enumeration():
    def F(x, theta):
        return ns.relu(x) + theta

    with pytest.raises(ValueError, match=r"2\^13 selection combinations"):
        ns.jacobian_set(F, jnp.zeros(13), 0.0)
    assert len(ns.jacobian_set(F, jnp.zeros(13), 0.0, max_combinations=2**13)) == 2**13


def test_jacobian_set_refuses_traced_primitives():
    @jax.jit
    def F(x, theta):
        return ns.relu(x) + theta

    with pytest.raises(TypeError, match="straight-line Python"):
        ns.jacobian_set(F, jnp.zeros(2), 0.0)


def test_jacobian_set_validates():
    with pytest.raises(ValueError, match=r"shape \(N, n, n\)"):
        ns.JacobianSet(np.zeros((2, 3)), np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match="B must have shape"):
        ns.JacobianSet(np.zeros((2, 3, 3)), np.zeros((1, 3, 1)))


# --- Lipschitz gradient selection ---------------------------------------------------------------


def test_gradient_selection():
    # F(x) = |x₀| x₁ written as two smooth pieces ±x₀x₁, selector: sign of x₀
    pieces = [lambda x: jnp.array([x[0] * x[1]]), lambda x: jnp.array([-x[0] * x[1]])]
    F = ns.GradientSelection(pieces, lambda x: jnp.where(x[0] >= 0, 0, 1))
    x = jnp.array([0.0, 3.0])
    assert F.active(x) == [0, 1]
    # pieces x₀x₁ and −x₀x₁ have Jacobians (x₁, x₀) and (−x₁, −x₀): conv = [−3, 3] × {0}
    V = {tuple(v.ravel().tolist()) for v in F.jacobian_vertices(x)}
    assert V == {(3.0, 0.0), (-3.0, 0.0)}
    assert F.active(jnp.array([2.0, 3.0])) == [0]
    # AD of the callable differentiates the selected piece, under jit and vmap
    g = jax.jit(jax.vmap(jax.jacfwd(F)))(jnp.array([[2.0, 3.0], [-2.0, 3.0], [0.0, 3.0]]))
    np.testing.assert_array_equal(g[:, 0], [[3.0, 2.0], [-3.0, 2.0], [3.0, 0.0]])
    with pytest.raises(TypeError, match="non-empty sequence"):
        ns.GradientSelection([], lambda x: 0)


# --- set-valued fixed point ---------------------------------------------------------------------


def test_gap_and_hausdorff():
    X = np.array([[[0.0]], [[1.0]]])
    Y = np.array([[[0.0]], [[1.0]], [[3.0]]])
    assert ns.gap(X, Y) == 0.0 and ns.gap(Y, X) == 2.0 and ns.hausdorff(X, Y) == 2.0
    with pytest.raises(ValueError, match="shapes"):
        ns.gap(X, np.zeros((1, 2, 1)))


def test_prune_reports_its_exact_error():
    pts = np.arange(10.0).reshape(10, 1, 1)
    kept, eps = ns.prune(pts, 3)
    assert len(kept) == 3 and eps == ns.hausdorff(kept, pts) == 2.0
    kept, eps = ns.prune(np.concatenate([pts, pts + 1e-14]), 100, merge_tol=1e-12)
    assert len(kept) == 10 and eps <= 1e-12


def _worked_example():
    """F(x, θ) = −x/2 + relu(θ): x̄(θ) = (2/3) relu(θ), the kink at θ = 0 sits in every step."""

    def F(x, theta):
        return -0.5 * x + ns.relu(theta)

    return F


def _distance_to_interval(points, lo, hi):
    """Exact Hausdorff distance between a finite subset of R and the interval [lo, hi]."""
    p = np.sort(points.ravel())
    outside = max(0.0, lo - p[0], p[-1] - hi)
    inner = max(p[0] - lo, hi - p[-1], np.max(np.diff(p), initial=0.0) / 2)
    return max(outside, inner)


def test_worked_example_implicit_strictly_inside_piggyback():
    F = _worked_example()
    J = ns.jacobian_set(F, jnp.array(0.0), jnp.array(0.0))
    assert _as_set(J) == {(-0.5, 0.0), (-0.5, 1.0)}
    assert J.rho == 0.5
    imp = ns.implicit_set(J)
    assert sorted(imp.ravel().tolist()) == [0.0, float(Fraction(2, 3))]
    # fix 𝒥 = [−2/3, 4/3]: the two maps X ↦ −X/2 and X ↦ −X/2 + 1 tile it
    lo, hi = -2 / 3, 4 / 3
    for t in [0, 3, 8]:
        out = ns.set_fixed_point(J, np.zeros((1, 1, 1)), steps=t, tol=0.0, max_points=10**4)
        assert out.steps == t and out.pruning_error == 0.0
        true = _distance_to_interval(out.points, lo, hi)
        d0 = ns.hausdorff(np.zeros((1, 1, 1)), J.apply(np.zeros((1, 1, 1))))
        assert d0 == 1.0
        assert out.bound == ns.a_priori_bound(0.5, t, d0) == 0.5**t * 2
        assert true <= out.bound and true <= out.a_posteriori
        assert true > out.bound / 10  # the bound is not vacuous
    # default start (the implicit set) with pruning; the hull converges to [−2/3, 4/3]
    # (fix 𝒥 is a continuum: with 32 points the pruning error keeps the bound near 0.07)
    out = ns.set_fixed_point(J, tol=0.0, max_points=32)  # stops when pruning dominates
    assert out.bound <= 0.1 and out.pruning_error > 0 and out.steps < 40
    assert abs(out.points.min() - lo) <= out.bound and abs(out.points.max() - hi) <= out.bound
    assert _distance_to_interval(out.points, lo, hi) <= out.bound
    # J^imp ⊆ J^pb, not conversely: 4/3 (reached by AD, below) is 2/3 away from conv J^imp
    assert ns.gap(imp, out.points) <= out.bound
    assert ns.gap(out.points, imp) > 0.66
    # AD with one selection per step: alternating [−1/2, 0] and [−1/2, 1] reaches −2/3 and 4/3
    seq = ns.piggyback(J, [0, 1] * 40, np.zeros((1, 1)))
    ends = sorted([seq[-1, 0, 0], seq[-2, 0, 0]])
    np.testing.assert_allclose(ends, [-2 / 3, 4 / 3], atol=1e-15)


def test_worked_example_consistent_with_derivative_almost_everywhere():
    F = _worked_example()

    def xbar(theta):
        return itd.fixed_point(F, jnp.array(0.3), theta, tol=1e-14).value

    thetas = jnp.array([-0.7, 0.4, 1.3])
    eps = 1e-6
    fd = (jax.vmap(xbar)(thetas + eps) - jax.vmap(xbar)(thetas - eps)) / (2 * eps)
    np.testing.assert_allclose(fd, [0.0, 2 / 3, 2 / 3], atol=1e-8)
    for theta, d in zip(thetas, fd, strict=True):
        J = ns.jacobian_set(F, xbar(theta), theta)
        assert len(J) == 1  # off the kink: a singleton, both sets reduce to {x̄'(θ)}
        pb = ns.set_fixed_point(J, tol=1e-12)
        imp = ns.implicit_set(J)
        assert pb.points.shape == imp.shape == (1, 1, 1)
        np.testing.assert_allclose(pb.points.ravel(), d, atol=1e-8)
        np.testing.assert_allclose(imp.ravel(), d, atol=1e-8)
    # at θ = 0 both contain the Clarke Jacobian of x̄, conv{0, 2/3} = J^imp here
    J = ns.jacobian_set(F, jnp.array(0.0), jnp.array(0.0))
    imp = ns.implicit_set(J)
    assert imp.min() == 0.0 and imp.max() == 2 / 3


def test_set_fixed_point_pruning_in_2d():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(3, 2, 2))
    A *= 0.6 / np.linalg.norm(A, 2, axis=(1, 2))[:, None, None]
    J = ns.JacobianSet(A, rng.normal(size=(3, 2, 1)))
    assert abs(J.rho - 0.6) < 1e-12
    X0 = np.zeros((1, 2, 1))
    full = ns.set_fixed_point(J, X0, steps=6, tol=0.0, max_points=10**4)
    assert len(full.points) == 3**6 and full.pruning_error == 0.0
    pruned = ns.set_fixed_point(J, X0, steps=6, tol=0.0, max_points=20, merge_tol=0.0)
    assert len(pruned.points) == 20 and pruned.pruning_error > 0
    # d_H(pruned, unpruned) ≤ Σ ρ^{t−1−s} ε_s
    assert ns.hausdorff(pruned.points, full.points) <= pruned.pruning_error
    # both bounds hold against a far better approximation of fix 𝒥
    ref = ns.set_fixed_point(J, tol=1e-4, max_points=400)
    for out in (full, pruned):
        assert ns.hausdorff(out.points, ref.points) <= out.bound + ref.bound
        assert ns.hausdorff(out.points, ref.points) <= out.a_posteriori + ref.bound


def test_set_fixed_point_refuses_non_contractions():
    J = ns.JacobianSet(np.array([[[1.5]]]), np.array([[[1.0]]]))
    with pytest.raises(ValueError, match="Assumption A"):
        ns.set_fixed_point(J)
    with pytest.raises(ValueError, match="singular"):
        ns.implicit_set(ns.JacobianSet(np.array([[[1.0]]]), np.array([[[1.0]]])))


def test_jacobian_set_of_a_projection_gives_the_pieces():
    # simplex projection of (1, 1/2, 1/2) with radius 1/2: τ = 1/2, coordinates 1, 2 on a kink;
    # the extreme pairs are the Jacobians diag(1_S) − 1_S1_Sᵀ/|S| of the supports S ⊇ {0}
    def F(x, r):
        return prox.project_simplex(x, r)

    J = ns.jacobian_set(F, jnp.array([1.0, 0.5, 0.5]), jnp.array(0.5))
    expected = set()
    for extra in ([], [1], [2], [1, 2]):
        S = np.zeros(3)
        S[[0, *extra]] = 1
        P = np.diag(S) - np.outer(S, S) / S.sum()
        expected.add(tuple(np.round(np.concatenate([P, S[:, None] / S.sum()], 1), 12).ravel()))
    got = {tuple(np.round(np.concatenate([a, b], 1), 12).ravel()) for a, b in J}
    assert got == expected
