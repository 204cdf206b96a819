"""Generated fixed-point problems: the arrays of a drawn `strategies.ProblemSpec`, the user-side
map F (a plain function, or an `equinox.Module`), and the same map on flat float64 vectors for
the dense reference.

The map on leaves: output leaf i is y_i = φ(c_i + Σ_j W_ij x_j + Σ_l U_il p_l), with the sums
over the blocks the spec's masks switch on only (so a leaf that does not depend on x or on θ
does not touch them: its derivative is a symbolic zero for JAX, not a computed one). W is scaled
to ‖W‖₂ = ρ and φ is 1-Lipschitz, so ‖∂ₓF‖₂ ≤ ρ: F is a ρ-contraction in the 2-norm, and
cond(I − ∂ₓF) ≤ (1 + ρ)/(1 − ρ). The kinds ``gradstep`` and ``cubic`` are described in
`strategies.KINDS`. Each output leaf is computed in float64 and cast to its own dtype.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from strategies import LeafSpec, ProblemSpec, is_leaf_spec

F64 = jnp.float64
ETA = 1 / 1.25  # gradstep: H = Q + diag(w σ'(x)) has eigenvalues in [μ, 1.25]


# --------------------------------------------------------------------------- pytrees


def _value(spec: LeafSpec, flat: np.ndarray):
    if spec.kind == "python":
        return float(flat[0])
    return jnp.asarray(flat.reshape(spec.shape), jnp.dtype(spec.dtype))


def make_tree(spec_tree, flat: np.ndarray):
    """The pytree a spec tree describes, with entries taken in order from ``flat``."""
    leaves, treedef = jax.tree_util.tree_flatten(spec_tree, is_leaf=is_leaf_spec)
    out, start = [], 0
    for s in leaves:
        out.append(_value(s, np.asarray(flat[start : start + s.size], np.float64)))
        start += s.size
    return jax.tree_util.tree_unflatten(treedef, out)


def ravel64(tree):
    """All entries of a pytree as one float64 vector (the test's own ravel)."""
    parts = [jnp.ravel(jnp.asarray(a)).astype(F64) for a in jax.tree_util.tree_leaves(tree)]
    return jnp.concatenate(parts) if parts else jnp.zeros((0,), F64)


def unravel(specs: list[LeafSpec], vector, as_float64: bool = False) -> list:
    """Leaves (arrays) of the given specs from a flat vector, cast to each leaf's dtype."""
    out, start = [], 0
    for s in specs:
        leaf = vector[start : start + s.size].reshape(s.shape)
        out.append(leaf if as_float64 else leaf.astype(jnp.dtype(s.dtype)))
        start += s.size
    return out


def sizes(specs: list[LeafSpec]) -> int:
    return sum(s.size for s in specs)


# --------------------------------------------------------------------------- the map


def _phi(kind: str, z, lam):
    if kind == "affine":
        return z
    if kind == "tanh":
        return jnp.tanh(z)
    if kind == "softplus":
        return jax.nn.softplus(z) - jnp.log(2.0)
    if kind == "prox":
        return jnp.sign(z) * jnp.maximum(jnp.abs(z) - lam, 0.0)
    raise ValueError(kind)


def theta_terms(spec: ProblemSpec, data, p_leaves) -> list:
    """z_θ,i = c_i + Σ_l U_il p_l per output leaf (float64 vectors), over the masked blocks."""
    ps = [jnp.ravel(jnp.asarray(a)).astype(F64) for a in p_leaves]
    out = []
    for i in range(len(spec.x_leaves)):
        z = data["c"][i]
        for l, on in enumerate(spec.p_mask[i]):  # noqa: E741
            if on:
                z = z + data["U"][i][l] @ ps[l]
        out.append(z)
    return out


def apply(
    spec: ProblemSpec, data, x_leaves, p_leaves, out_float64: bool = False, pre: bool = False
) -> list:
    """The output leaves of the map at x (leaves) and the parameters (leaves, in the order of
    ``spec.params``); with ``pre``, the arguments z of φ instead (kinks of "prox")."""
    xs = [jnp.ravel(jnp.asarray(a)).astype(F64) for a in x_leaves]
    out = []
    z_thetas = theta_terms(spec, data, p_leaves)
    for i, (s, z_theta) in enumerate(zip(spec.x_leaves, z_thetas, strict=True)):
        wx = [data["W"][i][j] @ xs[j] for j, on in enumerate(spec.x_mask[i]) if on]
        if spec.kind == "cubic":
            h = jnp.tanh(z_theta)
            y = h + data["kappa"] * (xs[i] - h) ** 3
        elif spec.kind == "gradstep":
            grad = sum(wx[1:], wx[0]) + data["w"][i] * jax.nn.sigmoid(xs[i]) - z_theta
            y = xs[i] - ETA * grad
        else:
            z = sum(wx, z_theta)
            y = z if pre else _phi(spec.kind, z, data["lam"])
        out.append(y.reshape(s.shape).astype(F64 if out_float64 else jnp.dtype(s.dtype)))
    return out


def params_tree(theta, closure, module):
    """The parameter pytree in its canonical layout (its leaves are the p_leaves of `apply`)."""
    return {"closure": closure, "module": module, "theta": theta}


class ThetaBox(eqx.Module):
    """θ delivered as an equinox Module (with a static field beside the arrays)."""

    tree: Any
    label: str = eqx.field(static=True, default="theta")


def _unbox(theta):
    return theta.tree if isinstance(theta, ThetaBox) else theta


class MapLayer(eqx.Module):
    """F as an equinox Module: it holds the module-delivered parameters and the map's arrays
    as fields, the closure-delivered parameters through a function field."""

    params: Any
    data: Any
    closure: Callable
    spec: ProblemSpec = eqx.field(static=True)

    def __call__(self, x, theta):
        p = params_tree(_unbox(theta), self.closure(), self.params)
        leaves, treedef = jax.tree_util.tree_flatten(x)
        out = apply(self.spec, self.data, leaves, jax.tree_util.tree_leaves(p))
        return jax.tree_util.tree_unflatten(treedef, out)


def user_map(spec: ProblemSpec, data, P):
    """(F, θ) as a user would write them for the parameters P = params_tree(θ, closure,
    module): θ (boxed or not) is passed; the rest is closed over or held by a module F."""
    theta = ThetaBox(P["theta"]) if spec.theta_as_module else P["theta"]
    closure = P["closure"]
    if spec.f_as_module:
        return MapLayer(P["module"], data, lambda: closure, spec), theta
    module = P["module"]

    def F(x, th):
        p = params_tree(_unbox(th), closure, module)
        leaves, treedef = jax.tree_util.tree_flatten(x)
        out = apply(spec, data, leaves, jax.tree_util.tree_leaves(p))
        return jax.tree_util.tree_unflatten(treedef, out)

    return F, theta


def x0(spec: ProblemSpec):
    return make_tree(spec.x, np.zeros(sizes(spec.x_leaves)))


# --------------------------------------------------------------------------- the numbers


class Numbers(NamedTuple):
    """The arrays of one problem: the map's ``data``, the parameters P, a tangent dP and a
    batch of two parameter points for vmap, the readout u, and the rate ρ."""

    data: dict
    P: Any
    dP: Any
    P_batch: Any
    dP_batch: Any
    u: Any
    rho: float


def _blocks(rng, rows: list[int], cols: list[int], mask, scale: float):
    return tuple(
        tuple(
            rng.normal(size=(r, c)) * scale if on else None
            for c, on in zip(cols, mask_row, strict=True)
        )
        for r, mask_row in zip(rows, mask, strict=True)
    )


def _dense(blocks, rows, cols) -> np.ndarray:
    out = np.zeros((sum(rows), sum(cols)))
    r0 = 0
    for i, r in enumerate(rows):
        c0 = 0
        for j, c in enumerate(cols):
            if blocks[i][j] is not None:
                out[r0 : r0 + r, c0 : c0 + c] = blocks[i][j]
            c0 += c
        r0 += r
    return out


def _split(matrix, rows, cols, mask):
    out, r0 = [], 0
    for i, r in enumerate(rows):
        row, c0 = [], 0
        for j, c in enumerate(cols):
            row.append(matrix[r0 : r0 + r, c0 : c0 + c] if mask[i][j] else None)
            c0 += c
        out.append(tuple(row))
        r0 += r
    return tuple(out)


def _draw_params(rng, spec: ProblemSpec, scale: float = 0.5):
    return make_tree(spec.params, scale * rng.normal(size=sizes(spec.p_leaves)))


def build(spec: ProblemSpec, rho: float, seed: int) -> Numbers:
    """The arrays of the problem ``spec`` at contraction rate ρ (numbers drawn from seed)."""
    rng = np.random.default_rng(seed)
    rows = [s.size for s in spec.x_leaves]
    cols = [s.size for s in spec.p_leaves]
    n = sum(rows)
    if spec.kind == "gradstep":
        # Q symmetric with eigenvalues in [μ, 1], μ = (1 − ρ)/η: A = I − η(Q + diag(wσ')) has
        # eigenvalues in [0, 1 − ημ] = [0, ρ] (ρ is raised to 0.2 so that μ ≤ 1).
        rho = max(rho, 0.2)
        mu = (1 - rho) / ETA
        R = _dense(_blocks(rng, rows, rows, spec.x_mask, 1.0), rows, rows)
        S = (R + R.T) / 2
        lo, hi = np.linalg.eigvalsh(S)[[0, -1]] if n else (0.0, 0.0)
        S = (S - lo * np.eye(n)) / (hi - lo) if hi > lo else np.zeros((n, n))
        W = (1 - mu) * S + mu * np.eye(n)
    else:
        W = _dense(_blocks(rng, rows, rows, spec.x_mask, 1.0), rows, rows)
        norm = np.linalg.norm(W, 2) if W.size else 0.0
        W = W * (rho / norm) if norm > 0 else W
    U = _blocks(rng, rows, cols, spec.p_mask, 1.0 / np.sqrt(max(sum(cols), 1)))
    c = [0.5 * rng.normal(size=r) for r in rows]
    data = {
        "W": jax.tree_util.tree_map(jnp.asarray, _split(W, rows, rows, spec.x_mask)),
        "U": jax.tree_util.tree_map(jnp.asarray, U),
        "c": tuple(jnp.asarray(v) for v in c),
        "w": tuple(jnp.asarray(rng.uniform(size=r)) for r in rows),
        "lam": jnp.asarray(rng.uniform(0.05, 0.3)),
        "kappa": jnp.asarray(rho / 3.0),
    }
    P = _draw_params(rng, spec)
    dP = _draw_params(rng, spec, 1.0)
    P_batch = _stack([_draw_params(rng, spec) for _ in range(2)])
    dP_batch = _stack([_draw_params(rng, spec, 1.0) for _ in range(2)])
    u = jnp.asarray(rng.normal(size=n))
    return Numbers(data, P, dP, P_batch, dP_batch, u, float(rho))


def _stack(trees):
    return jax.tree_util.tree_map(lambda *a: jnp.stack([jnp.asarray(v) for v in a]), *trees)


def member(tree, i: int, spec_tree):
    """Member i of a batch built by `build` (leaves of Python-float specs stay 0-d arrays)."""
    del spec_tree
    return jax.tree_util.tree_map(lambda a: a[i], tree)


# --------------------------------------------------------------------------- flat maps


def flat_maps(spec: ProblemSpec):
    """``(phi64, phi_user, pre64)``: the map on flat vectors (x_vec, p_vec) -> F(x, p) as a
    float64 vector; phi64 computes every leaf in float64, phi_user rounds inputs and outputs to
    each leaf's dtype like the user's F; pre64 gives the arguments of φ (float64)."""
    xs, ps = spec.x_leaves, spec.p_leaves

    def phi64(data, xv, pv):
        out = apply(spec, data, unravel(xs, xv, True), unravel(ps, pv, True), True)
        return jnp.concatenate([jnp.ravel(a) for a in out])

    def phi_user(data, xv, pv):
        out = apply(spec, data, unravel(xs, xv), unravel(ps, pv))
        return jnp.concatenate([jnp.ravel(a).astype(F64) for a in out])

    def pre64(data, xv, pv):
        out = apply(spec, data, unravel(xs, xv, True), unravel(ps, pv, True), True, pre=True)
        return jnp.concatenate([jnp.ravel(a) for a in out])

    return phi64, phi_user, pre64


def least_precise(spec: ProblemSpec, which: str = "all") -> str:
    leaves = {"x": spec.x_leaves, "p": spec.p_leaves, "all": spec.x_leaves + spec.p_leaves}
    return "float32" if any(s.dtype == "float32" for s in leaves[which]) else "float64"
