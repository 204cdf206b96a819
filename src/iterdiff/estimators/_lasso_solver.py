"""The Lasso-family inner problem: coordinate descent on working sets, an exact Newton step on
the support, and that Newton step as the map that differentiates the solution.

Problem of fold k (training weights t summing to 1, μ the t-weighted means when fitting an
intercept, ℓ1 = αρ and ℓ2 = α(1 − ρ) per feature, α one number or one per feature):

    min_w  ½ Σᵢ tᵢ (yᵢ − μ_y − (xᵢ − μ_x)ᵀw)² + Σⱼ ℓ1ⱼ|wⱼ| + ½ Σⱼ ℓ2ⱼ wⱼ².

**Forward solve** (`forward`, every fold at once). Rounds of: the full gradient; a working set
of the nonzero coefficients and the features closest to entering (|gⱼ|/ℓ1ⱼ largest, at least
twice the support; Massias, Gramfort & Salmon, "Celer", ICML 2018); coordinate-descent epochs
on it until its largest step is below a third of the round's starting residual (Friedman,
Hastie & Tibshirani, "Regularization paths for GLMs via coordinate descent", JSS 2010). One
compiled program serves every support size (the working set is a prefix of a sorted index list
of dynamic length).

**Optimality** of coordinate j is the step an exact update of it would take, in units of the
prediction: Δⱼ = ‖xⱼ − μⱼ‖_t·|w⁺ⱼ − wⱼ| with w⁺ⱼ = S(‖xⱼ − μⱼ‖²_t wⱼ + gⱼ, ℓ1ⱼ)/(‖xⱼ − μⱼ‖²_t + ℓ2ⱼ),
S soft-thresholding and g the negative gradient. A fold has converged when
maxⱼ Δⱼ ≤ tol·‖y − μ_y‖_t.

**Newton step on the support** (`support_newton`): on the support S with signs s the solution
solves (X_Sᵀ T X_S + diag ℓ2_S) w_S = X_Sᵀ T (y − μ_y) − ℓ1_S s (centred X), so the solution
w̄ is a fixed point of the map N(w, α) = that solution for the support and signs of w. Applied
to coordinate descent's approximate solution, N finishes the solve exactly once the support is
right (coordinate descent alone converges linearly, slowly on correlated supports). Support
and signs are locally constant, so ∂_w N = 0 at w̄: the one-step hypergradient ∂_α N is exact,
and it is Bertrand et al.'s implicit formula ("Implicit differentiation of Lasso-type models
for hyperparameter optimization", ICML 2020), at the cost of one Cholesky factorization of the
support's Gram matrix per fold. The support is padded to a static size m (16, 64, 256, …).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from .._implicit_solve import implicit_solve
from .._solution import RESULTS
from ._linalg import factor_solve, spd_factor, spd_solve

_SMALLEST = 16  # working sets are padded to 16·2^k features
CD_EPOCHS = 3  # coordinate-descent epochs per round of the working-set solve
_USED: set = set()  # (m, shapes) of the Newton programs compiled in this process


def support_size(support: int, P: int, key) -> int:
    """The padded size m of the Newton step for a support of ``support`` features: the smallest
    16·2^k (at most P) that holds it, or an already compiled size up to 4 times larger (a
    compilation costs more than the larger Cholesky factorizations)."""
    m = _SMALLEST
    while m < support:
        m *= 2
    m = min(m, P)
    reuse = [s for s, k in _USED if k == key and m <= s <= 4 * m]
    if reuse:
        return min(reuse)
    _USED.add((m, key))
    return m


def fold_statistics(X, y, T, intercept: bool) -> dict:
    """Per-fold constants (NumPy, fold axis first): training weights t, means μ_x and μ_y,
    ‖xⱼ − μⱼ‖²_t, centred y and ‖y − μ_y‖_t."""
    mu_x = T @ X if intercept else np.zeros((T.shape[0], X.shape[1]))
    mu_y = T @ y if intercept else np.zeros(T.shape[0])
    col_sq = np.maximum(T @ (X * X) - mu_x * mu_x, 0.0)
    yc = y[None, :] - mu_y[:, None]
    return {
        "t": T,
        "mu_x": mu_x,
        "mu_y": mu_y,
        "col_sq": col_sq,
        "yc": yc,
        "scale": np.sqrt(np.sum(T * yc * yc, axis=1)),
    }


def _soft(z, a):
    return jnp.sign(z) * jnp.maximum(jnp.abs(z) - a, 0.0)


def penalties(alpha, rho, P: int):
    """(ℓ1, ℓ2) per feature: αρ and α(1 − ρ), α one number or one per feature."""
    alpha = jnp.broadcast_to(alpha, (P,))
    return alpha * rho, alpha * (1 - rho)


def _scaled(folds, values):
    scale = jnp.where(folds["scale"] > 0, folds["scale"], 1.0)
    return values / scale


def optimality(XT, folds, W, L1, L2):
    """Per fold, maxⱼ Δⱼ / ‖y − μ_y‖_t (0 at the solution), and the negative gradient G."""
    R = folds["yc"] - (W @ XT - jnp.sum(folds["mu_x"] * W, axis=1, keepdims=True))
    tr = folds["t"] * R
    G = tr @ XT.T - folds["mu_x"] * jnp.sum(tr, axis=1, keepdims=True)
    cs = folds["col_sq"]
    live = cs > 0
    new = _soft(cs * W + G, L1) / jnp.where(live, cs + L2, 1.0)
    steps = jnp.where(live, jnp.sqrt(cs) * jnp.abs(new - W), 0.0)
    return _scaled(folds, jnp.max(steps, axis=1)), G


def _epoch(XT, folds, W, R, L1, L2, order, size):
    """One coordinate-descent sweep over the working set (the first ``size`` features of
    ``order``, shared by the folds, so that each step reads one row of Xᵀ); returns W, the
    residuals R (kept t-centred: Σᵢ tᵢRᵢ = 0) and each fold's largest step."""

    def coordinate(i, state):
        W, R, big = state
        j = order[i]
        xj = XT[j]  # (N,)
        g = (folds["t"] * R) @ xj  # Σᵢ tᵢ(xᵢⱼ − μⱼ)Rᵢ, as R is t-centred
        cs = folds["col_sq"][:, j]
        old = W[:, j]
        live = cs > 0
        new = jnp.where(live, _soft(cs * old + g, L1[j]) / jnp.where(live, cs + L2[j], 1.0), old)
        d = new - old
        R = R - d[:, None] * xj[None, :] + (d * folds["mu_x"][:, j])[:, None]
        return W.at[:, j].add(d), R, jnp.maximum(big, jnp.sqrt(cs) * jnp.abs(d))

    return jax.lax.fori_loop(0, size, coordinate, (W, R, jnp.zeros(W.shape[0], W.dtype)))


def cd_solve(XT, folds, W0, L1, L2, tol, max_epochs):
    """Coordinate descent with working sets from W0 (K, P) until every fold's optimality is
    within tol or ``max_epochs`` epochs ran. Returns (W, optimality per fold, epochs)."""
    P = W0.shape[1]

    def more(state):
        _, _, res, _, epochs = state
        return jnp.any(res > tol) & (epochs < max_epochs)

    def round_(state):
        W, R, res, G, epochs = state
        # One working set for all folds: a feature is in if it is nonzero in any fold, then
        # by its largest |gⱼ|/ℓ1ⱼ over the folds.
        nonzero = jnp.any(W != 0, axis=0)
        closeness = jnp.max(jnp.abs(G), axis=0) / jnp.where(L1 > 0, L1, 1.0)
        order = jnp.argsort(-jnp.where(nonzero | (L1 <= 0), jnp.inf, closeness))
        support = jnp.sum(nonzero)
        size = jnp.minimum(P, support + jnp.maximum(support // 2, _SMALLEST))
        target = jnp.maximum(tol, res / 3) * folds["scale"]

        def sweep(inner):
            W, R, big, n = inner
            W, R, big = _epoch(XT, folds, W, R, L1, L2, order, size)
            return W, R, big, n + 1

        def go_on(inner):
            _, _, big, n = inner
            return jnp.any(big > target) & (epochs + n < max_epochs)

        start = (W, R, jnp.full(W.shape[0], jnp.inf, W.dtype), jnp.zeros((), jnp.int32))
        W, R, _, n = jax.lax.while_loop(go_on, sweep, start)
        res, G = optimality(XT, folds, W, L1, L2)
        return W, R, res, G, epochs + n

    R0 = folds["yc"] - (W0 @ XT - jnp.sum(folds["mu_x"] * W0, axis=1, keepdims=True))
    res0, G0 = optimality(XT, folds, W0, L1, L2)
    state = (W0, R0, res0, G0, jnp.zeros((), jnp.int32))
    W, _, res, _, epochs = jax.lax.while_loop(more, round_, state)
    return W, res, epochs


def validation_errors(XT, y, folds, V, W):
    """Each fold's weighted validation mean squared error (K,)."""
    pred = W @ XT - jnp.sum(folds["mu_x"] * W, axis=1, keepdims=True) + folds["mu_y"][:, None]
    return jnp.sum(V * (y[None, :] - pred) ** 2, axis=1)


@jax.jit
def forward(XT, y, folds, V, W0, u, rho, tol, max_epochs):
    """The forward solve at α = exp(u) (not differentiated): W, the largest optimality over
    folds, the epochs, each fold's validation error, and the largest support."""
    L1, L2 = penalties(jnp.exp(u), rho, W0.shape[1])
    W, res, epochs = cd_solve(XT, folds, W0, L1, L2, tol, max_epochs)
    support = jnp.max(jnp.sum(W != 0, axis=1))
    return W, jnp.max(res), epochs, validation_errors(XT, y, folds, V, W), support


def working_set(XT, folds, W, G, L1, m: int):
    """Each fold's working set of m features (its nonzero coefficients first, then those
    closest to entering, |gⱼ|/ℓ1ⱼ largest) and its Gram system: indices (K, m),
    Q = X_Iᵀ T X_I and q = X_Iᵀ T (y − μ_y) (centred X). Formed once per evaluation: it does
    not depend on α."""
    closeness = jnp.abs(G) / jnp.where(L1 > 0, L1, 1.0)
    priority = jnp.where((W != 0) | (L1 <= 0), jnp.inf, closeness)
    _, idx = jax.lax.top_k(priority, m)
    mu = jnp.take_along_axis(folds["mu_x"], idx, axis=1)
    Xs = XT[idx] - mu[..., None]  # (K, m, N)
    weighted = Xs * folds["t"][:, None, :]
    Q = jnp.einsum("kmn,kpn->kmp", weighted, Xs)
    q = jnp.einsum("kmn,kn->km", weighted, folds["yc"])
    return {"idx": idx, "Q": Q, "q": q}


def _support_matrix(system, on, l2):
    """(Q + diag ℓ2) on the support ``on``, the identity off it."""
    m = on.shape[1]
    M = jnp.where(on[:, :, None] & on[:, None, :], system["Q"], 0.0)
    return M + jnp.eye(m, dtype=M.dtype) * jnp.where(on, l2, 1.0)[:, None, :]


def _support_rhs(system, on, x, l1):
    return jnp.where(on, system["q"] - l1 * jnp.sign(x), 0.0)


def newton_step(system, x, penalty):
    """Each fold's minimiser on the support and signs of x (K, m) within its working set
    ``system``: (Q + diag ℓ2) w = q − ℓ1 s there, 0 elsewhere (NaN if Q is singular there)."""
    on = x != 0
    M = _support_matrix(system, on, penalty["l2"])
    return jnp.where(on, spd_solve(M, _support_rhs(system, on, x, penalty["l1"])), 0.0)


def support_newton(system, factor, x, penalty):
    """N(x, (ℓ1, ℓ2)): `newton_step` with the support's matrix factorized once, at the α where
    it is differentiated (``factor``: the Cholesky factor of (Q + diag ℓ2) on the support of
    the point x̄ where N is evaluated, the identity off it). `jax.lax.custom_linear_solve` differentiates the
    solve exactly there: ẋ = M⁻¹(ṙ − Ṁx).

    Only floating-point arrays are closed over (Q, q and the factor), as iterdiff's modes
    differentiate this map: the working set's indices stay outside."""
    on = x != 0
    M = _support_matrix(system, on, penalty["l2"])
    rhs = _support_rhs(system, on, x, penalty["l1"])
    solution = jax.lax.custom_linear_solve(
        lambda v: jnp.einsum("kmp,kp->km", M, v),
        rhs,
        lambda matvec, b: factor_solve(factor, b),
        symmetric=True,
    )
    return jnp.where(on, solution, 0.0)


def _ws_optimality(system, v, a, b):
    """Per fold, the largest prediction-scale step of an exact coordinate update within the
    working set (unscaled), and the exact updates' targets z."""
    Q, q = system["Q"], system["q"]
    diag = jnp.diagonal(Q, axis1=1, axis2=2)
    live = diag > 0
    z = q - jnp.einsum("kmp,kp->km", Q, v) + diag * v
    new = jnp.where(live, _soft(z, a) / jnp.where(live, diag + b, 1.0), 0.0)
    return jnp.max(jnp.sqrt(jnp.maximum(diag, 0.0)) * jnp.abs(new - v), axis=1)


def ws_solve(system, v, a, b, target, max_rounds):
    """Solve every fold's problem restricted to its working set from v (K, m): rounds of a
    feature-sign step (towards the exact minimiser on the current support and signs, cut
    where the first coefficient reaches zero, which decreases the objective) and
    coordinate-descent epochs on the Gram matrix, until each fold's largest step is within
    ``target`` (K,) or ``max_rounds`` rounds ran (at least one runs). Returns (v, rounds)."""
    Q, q = system["Q"], system["q"]
    m = v.shape[1]
    diag = jnp.diagonal(Q, axis1=1, axis2=2)
    live = diag > 0
    denom = jnp.where(live, diag + b, 1.0)

    def coordinate(i, v):
        j = i % m
        pick = lambda x: jax.lax.dynamic_index_in_dim(x, j, axis=1, keepdims=False)  # noqa: E731
        z = pick(q) - jnp.einsum("kp,kp->k", pick(Q), v) + pick(diag) * pick(v)
        new = jnp.where(pick(live), _soft(z, pick(a)) / pick(denom), 0.0)
        return jax.lax.dynamic_update_index_in_dim(v, new, j, axis=1)

    def round_(state):
        v, _, rounds = state
        # Feature-sign step: towards the exact minimiser on the support and signs of v, cut
        # where the first coefficient reaches zero (the objective decreases along the whole
        # segment). From a solution at a nearby α with the same support, it is the solution.
        on = v != 0
        exact = newton_step(system, v, {"l1": a, "l2": b})
        crosses = on & (exact * v <= 0)
        tau_j = jnp.where(crosses, v / jnp.where(crosses, v - exact, 1.0), 1.0)
        tau = jnp.clip(jnp.min(tau_j, axis=1, keepdims=True), 0.0, 1.0)
        stepped = jnp.where(crosses & (tau_j <= tau), 0.0, v + tau * (exact - v))
        v = jnp.where(jnp.all(jnp.isfinite(stepped), axis=1, keepdims=True), stepped, v)
        # Coordinate descent then adds and removes features; its soft-thresholding leaves
        # exact zeros where a coefficient is optimal at zero (a Newton step can leave 1e-17).
        v = jax.lax.fori_loop(0, CD_EPOCHS * m, coordinate, v)
        return v, _ws_optimality(system, v, a, b), rounds + 1

    def more(state):
        _, steps, rounds = state
        return jnp.any(steps > target) & (rounds < max_rounds)

    v, steps, rounds = round_((v, None, jnp.zeros((), jnp.int32)))
    v, steps, rounds = jax.lax.while_loop(more, round_, (v, steps, rounds))
    return v, rounds


def _scatter(idx, x, P: int):
    K = x.shape[0]
    return jnp.zeros((K, P), x.dtype).at[jnp.arange(K)[:, None], idx].add(x)


@functools.partial(jax.jit, static_argnames=("m", "mode"))
def evaluate(u, XT, y, folds, weights, W, rho, tol, max_rounds, *, m, mode):
    """Solve at α = exp(u) from W (a solution at a nearby α) and differentiate the validation
    loss. The solve: on each fold's working set of m features (`working_set`, `ws_solve`),
    then a check of every coordinate; the derivative: the Newton step on the support
    (`support_newton`) through `iterdiff.implicit_solve` in ``mode``. ``weights``: validation
    row weights "objective", "monitor" and "full" (K, N) and the fold weights "fold" (K,).

    Returns (loss, gradient in u, W̄, largest optimality, ok, fold errors on the full
    validation rows, monitor loss, coordinate-descent epochs); ok: W̄ is the solution
    (optimality within tol everywhere, N(W̄) = W̄ as `implicit_solve` checks it) and the
    gradient is finite."""
    P = W.shape[1]
    L1, L2 = penalties(jnp.exp(u), rho, P)
    _, G = optimality(XT, folds, W, L1, L2)
    system = working_set(XT, folds, W, G, L1, m)
    idx = system["idx"]
    scale = jnp.where(folds["scale"] > 0, folds["scale"], 1.0)
    v, rounds = ws_solve(
        system,
        jnp.take_along_axis(W, idx, axis=1),
        L1[idx],
        L2[idx],
        tol * scale / 10,
        max_rounds,
    )
    # The support's matrix, factorized once; x̄ = N(v) with it, so that N(x̄) = x̄ holds to
    # rounding (and only then: a support or sign that changes fails `implicit_solve`'s check).
    v = jax.lax.stop_gradient(v)
    factor = spd_factor(_support_matrix(system, v != 0, L2[idx]))
    penalty0 = {"l1": L1[idx], "l2": L2[idx]}
    x_bar = jax.lax.stop_gradient(support_newton(system, factor, v, penalty0))
    W_bar = _scatter(idx, x_bar, P)

    def loss(u):
        L1, L2 = penalties(jnp.exp(u), rho, P)
        penalty = {"l1": L1[idx], "l2": L2[idx]}
        newton = functools.partial(support_newton, system, factor)
        sol = implicit_solve(
            lambda x0, theta: x0, x_bar, penalty, fixed_point=newton, mode=mode, throw=False
        )
        errors = validation_errors(XT, y, folds, weights["objective"], _scatter(idx, sol.value, P))
        return weights["fold"] @ errors, sol.result

    (value, result), grad = jax.value_and_grad(loss, has_aux=True)(u)
    res, _ = optimality(XT, folds, W_bar, L1, L2)
    ok = (result == RESULTS.successful) & jnp.all(res <= tol) & jnp.all(jnp.isfinite(grad))
    errors = validation_errors(XT, y, folds, weights["full"], W_bar)
    monitor = weights["fold"] @ validation_errors(XT, y, folds, weights["monitor"], W_bar)
    return value, grad, W_bar, jnp.max(res), ok, errors, monitor, rounds * CD_EPOCHS
