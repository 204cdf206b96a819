"""Set-valued fixed points: fix(𝒥) for a finite set 𝒥 of [A, B] with ‖A‖ ≤ ρ < 1.

Set-valued Banach–Picard (Bolte, Pauwels & Vaiter, NeurIPS 2022): the map
𝒳 ↦ 𝒥(𝒳) = {A X + B : [A, B] ∈ 𝒥, X ∈ 𝒳} is a ρ-contraction for the Hausdorff distance
d_H, so it has a unique nonempty compact fixed set fix(𝒥), and the recursion
𝒳_{t+1} = 𝒥(𝒳_t) satisfies

    d_H(𝒳_t, fix 𝒥) ≤ ρ^t d_H(𝒳_0, 𝒥(𝒳_0)) / (1 − ρ).

With 𝒥 = J_F(x̄(θ), θ), fix(𝒥) is J^pb(θ), the set of limits of the derivatives AD can
produce (the piggyback set); the implicit set {(I − A)⁻¹ B} is contained in it, sometimes
strictly. For a finite 𝒥 of extreme points, fix(𝒥) ⊆ fix(conv 𝒥) and both have the same convex
hull (conv fix(𝒥) is invariant under conv 𝒥).

The recursion multiplies the number of points by |𝒥| per step, so `set_fixed_point` prunes:
each step keeps a subset of 𝒥(𝒳_t) by farthest-point selection (an ε-net) and adds its exact
Hausdorff error ε_t to the reported bound.
"""

from typing import NamedTuple

import numpy as np

from ._jacobian_set import JacobianSet


def _as_points(X, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 2:
        X = X[None]
    if X.ndim != 3 or X.shape[0] == 0:
        raise ValueError(
            f"{name}: expected a non-empty set of matrices, shape (M, n, m), got {X.shape}."
        )
    return X


def _pairwise(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Frobenius distances ‖X_i − Y_j‖, shape (len(X), len(Y))."""
    x = X.reshape(len(X), -1)
    y = Y.reshape(len(Y), -1)
    sq = np.sum(x * x, 1)[:, None] + np.sum(y * y, 1)[None, :] - 2 * x @ y.T
    close = np.sqrt(np.maximum(sq, 0.0))
    # the expansion loses precision for nearly equal points: recompute the small ones exactly
    small = close < 1e-6 * (1 + np.sqrt(np.max(np.sum(x * x, 1))))
    if np.any(small):
        i, j = np.nonzero(small)
        close[i, j] = np.linalg.norm(x[i] - y[j], axis=1)
    return close


def gap(X, Y) -> float:
    """gap(𝒳, 𝒴) = max_{X∈𝒳} min_{Y∈𝒴} ‖X − Y‖_F (not symmetric: 0 iff 𝒳 ⊆ 𝒴).

    Arguments:
        X, Y: finite sets of matrices, stacked along axis 0.

    Returns:
        the gap, a float.
    """
    X, Y = _as_points(X, "gap"), _as_points(Y, "gap")
    if X.shape[1:] != Y.shape[1:]:
        raise ValueError(f"gap: the sets hold matrices of shapes {X.shape[1:]} and {Y.shape[1:]}.")
    return float(np.max(np.min(_pairwise(X, Y), axis=1)))


def hausdorff(X, Y) -> float:
    """Hausdorff distance d_H(𝒳, 𝒴) = max(gap(𝒳, 𝒴), gap(𝒴, 𝒳)).

    Arguments:
        X, Y: finite sets of matrices, stacked along axis 0.

    Returns:
        d_H(𝒳, 𝒴), a float.
    """
    return max(gap(X, Y), gap(Y, X))


def a_priori_bound(rho: float, steps: int, initial_distance: float) -> float:
    """ρ^t · d_H(𝒳_0, 𝒥(𝒳_0)) / (1 − ρ): the set-valued Banach–Picard bound on d_H(𝒳_t, fix 𝒥).

    Arguments:
        rho: ρ < 1, the largest ‖A‖ over the set.
        steps: t, the iterations of the set recursion.
        initial_distance: d_H(𝒳_0, 𝒥(𝒳_0)).

    Returns:
        the bound, a float (Bolte, Pauwels & Vaiter, NeurIPS 2022).
    """
    if not 0 <= rho < 1:
        raise ValueError(f"a_priori_bound: needs 0 ≤ rho < 1, got {rho!r}.")
    return rho**steps * initial_distance / (1 - rho)


def prune(X, max_points: int, merge_tol: float = 0.0) -> tuple[np.ndarray, float]:
    """A subset of 𝒳 and its Hausdorff distance ε to 𝒳 (farthest-point selection).

    Picks points greedily, each the farthest from those already kept, until every point of 𝒳
    is within ``merge_tol`` of a kept one or ``max_points`` are kept. ε is computed exactly
    (max distance from a point of 𝒳 to the subset); the subset is within 2× of the best
    possible covering radius with that many points (Gonzalez 1985).

    Arguments:
        X: a finite set of matrices, stacked along axis 0.
        max_points: the most points kept (≥ 1).
        merge_tol: points within this distance of a kept one are dropped (default 0).

    Returns:
        (the kept points, stacked; ε, their Hausdorff distance to 𝒳).
    """
    X = _as_points(X, "prune")
    if not (isinstance(max_points, int) and max_points >= 1):
        raise ValueError(f"prune(max_points={max_points!r}): need an int ≥ 1.")
    flat = X.reshape(len(X), -1)
    kept = [0]
    dist = np.linalg.norm(flat - flat[0], axis=1)
    while len(kept) < max_points:
        far = int(np.argmax(dist))
        if dist[far] <= merge_tol:
            break
        kept.append(far)
        dist = np.minimum(dist, np.linalg.norm(flat - flat[far], axis=1))
    return X[kept], float(np.max(dist))


class SetFixedPoint(NamedTuple):
    """Result of `set_fixed_point`.

    Attributes:
        points: 𝒴_t, shape (M, n, m), an approximation of fix(𝒥).
        steps: t, the number of set iterations run.
        rho: max ‖A‖₂ over 𝒥.
        bound: a-priori bound on d_H(points, fix 𝒥): ρ^t d_H(𝒳_0, 𝒥(𝒳_0))/(1 − ρ) plus the
            propagated pruning errors Σ_s ρ^{t−1−s} ε_s.
        a_posteriori: d_H(points, 𝒥(points))/(1 − ρ), also a bound on d_H(points, fix 𝒥)
            (often much tighter; computed from the final set, pruned to max_points first).
        pruning_error: Σ_s ρ^{t−1−s} ε_s alone.
    """

    points: np.ndarray
    steps: int
    rho: float
    bound: float
    a_posteriori: float
    pruning_error: float


def implicit_set(J: JacobianSet) -> np.ndarray:
    """{(I − A)⁻¹ B : [A, B] ∈ 𝒥}, distinct, shape (M, n, m): the implicit-differentiation set.

    Each (I − A_i)⁻¹ B_i is the fixed point of X ↦ A_i X + B_i, so it lies in fix(𝒥).

    Reference: Bolte, Le, Pauwels & Silveti-Falls, "Nonsmooth implicit differentiation for machine
    learning and optimization", NeurIPS 2021; J^imp ⊆ J^pb: Bolte, Pauwels & Vaiter, "Automatic
    differentiation of nonsmooth iterative algorithms", NeurIPS 2022.

    Arguments:
        J: a `JacobianSet` whose A_i have 1 outside their spectrum.

    Returns:
        the distinct (I − A_i)⁻¹B_i, shape (M, n, m).
    """
    if not isinstance(J, JacobianSet):
        raise TypeError("implicit_set: expects a JacobianSet (see nonsmooth.jacobian_set).")
    n = J.A.shape[1]
    out = []
    for a, b in J:
        m = np.eye(n) - a
        if np.linalg.cond(m) > 1e12:
            raise ValueError(
                "implicit_set: I − A is singular (or nearly) for an element of the set, so "
                "(I − A)⁻¹B is not defined; the implicit function theorem does not apply here."
            )
        out.append(np.linalg.solve(m, b))
    out = np.stack(out)
    keep = np.sort(np.unique(out.reshape(len(out), -1), axis=0, return_index=True)[1])
    return out[keep]


def set_fixed_point(
    J: JacobianSet,
    X0=None,
    *,
    steps: int = 200,
    tol: float = 1e-8,
    max_points: int = 256,
    merge_tol: float = 1e-12,
) -> SetFixedPoint:
    """Approximate fix(𝒥) by the pruned set recursion 𝒴_{t+1} = prune(𝒥(𝒴_t)).

    Reference: the set-valued Banach–Picard theorem of Bolte, Pauwels & Vaiter, "Automatic
    differentiation of nonsmooth iterative algorithms", NeurIPS 2022.

    Arguments:
        J: a `JacobianSet` with ρ = max ‖A‖₂ < 1 (Assumption A), e.g. from `jacobian_set` at the
            fixed point (x̄, θ).
        X0: starting set, shape (M, n, m) (or one n×m matrix); default the implicit set, which
            already lies in fix(𝒥).
        steps: most set iterations.
        tol: stop once the reported bound is ≤ tol (or earlier, once ρ^t·e_0 is below 1e-3 of
            the accumulated pruning error: then only a larger max_points can lower the bound).
        max_points: most points kept per step (pruning by farthest-point selection).
        merge_tol: points closer than this are merged (their distance counts in the bound).

    Returns:
        `SetFixedPoint` with the points and the error bounds. Error model: with e_t the
        Hausdorff distance to fix(𝒥) and ε_t the pruning error at step t,
        e_{t+1} ≤ ρ e_t + ε_t, and e_0 ≤ d_H(𝒳_0, 𝒥(𝒳_0))/(1 − ρ).
    """
    if not isinstance(J, JacobianSet):
        raise TypeError("set_fixed_point: J must be a JacobianSet (see nonsmooth.jacobian_set).")
    rho = J.rho
    if not rho < 1:
        raise ValueError(
            f"set_fixed_point: max ‖A‖₂ over the set is {rho:.6g} ≥ 1, so the set recursion is "
            "not a contraction and fix(𝒥) may not exist (Assumption A of Bolte, Pauwels & "
            "Vaiter 2022 fails). Check that F contracts in x; momentum methods such as heavy "
            "ball typically violate it (see joint_spectral_radius_lower_bound)."
        )
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"set_fixed_point(steps={steps!r}): need an int ≥ 0.")
    X = implicit_set(J) if X0 is None else _as_points(X0, "set_fixed_point(X0)")
    if X.shape[1:] != J.B.shape[1:]:
        raise ValueError(
            f"set_fixed_point: X0 holds matrices of shape {X.shape[1:]}, the set acts on "
            f"{J.B.shape[1:]}."
        )
    X = prune(X, max_points, merge_tol)[0]
    # e_0 ≤ d_H(𝒴_0, 𝒥(𝒴_0))/(1 − ρ) holds for the pruned start itself: nothing to add.
    start_bound = hausdorff(X, J.apply(X)) / (1 - rho)
    pruning = 0.0
    t = 0
    bound = start_bound + pruning
    # stop on tol, on the step budget, or once the bound is dominated by pruning (a finite set
    # of max_points points cannot cover fix 𝒥 better; more steps would not lower the bound)
    while t < steps and bound > tol and not (t and rho**t * start_bound < 1e-3 * pruning):
        X, eps = prune(J.apply(X), max_points, merge_tol)
        pruning = rho * pruning + eps
        t += 1
        bound = rho**t * start_bound + pruning
    post = hausdorff(X, J.apply(X)) / (1 - rho)
    return SetFixedPoint(X, t, rho, bound, post, pruning)


def piggyback(J: JacobianSet, selections, X0) -> np.ndarray:
    """The derivative sequence X_{k+1} = A_{i_k} X_k + B_{i_k} for a sequence of indices i_k.

    This is what AD computes when step k picks the element ``selections[k]`` of 𝒥 (one
    selection per step); returns all iterates, shape (len(selections) + 1, n, m).

    Arguments:
        J: a `JacobianSet`.
        selections: the index i_k of the pair used at each step.
        X0: the starting derivative X_0, shape (n, m).

    Returns:
        the iterates X_0, …, X_K, shape (len(selections) + 1, n, m).
    """
    if not isinstance(J, JacobianSet):
        raise TypeError("piggyback: J must be a JacobianSet.")
    X = _as_points(X0, "piggyback(X0)")
    if len(X) != 1 or X.shape[1:] != J.B.shape[1:]:
        raise ValueError(f"piggyback: X0 must be one matrix of shape {J.B.shape[1:]}.")
    X = X[0]
    out = [X]
    for i in selections:
        if not 0 <= int(i) < len(J):
            raise ValueError(f"piggyback: selection index {i} outside 0..{len(J) - 1}.")
        X = J.A[i] @ X + J.B[i]
        out.append(X)
    return np.stack(out)
