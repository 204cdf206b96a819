"""Hypothesis strategies for generated fixed-point problems (issue 28): pytree structures of
x and θ, dependency patterns between their leaves, how the parameters reach F, the kind of
contractive map and its rate ρ.

A drawn `ProblemSpec` is static (hashable: it decides the traced program); the numbers of a
problem (matrices, parameters, directions) are drawn separately as a seed and a rate, so that
one compiled program serves every example that shares a spec. `generated.build` turns a spec,
a rate and a seed into arrays and the map F.

Names meant for reuse by other conformance tests: `LeafSpec`, `leaf_specs`, `tree_specs`,
`ProblemSpec`, `problem_specs`, `rates`, `seeds`, `uniform`, `KINDS`.
"""

import dataclasses
from typing import Any

import jax
from hypothesis import strategies as st

# Leaf shapes come from a small set, so that generated structures share compiled programs.
SHAPES = ((), (2,), (3,), (2, 2))

# Contractive maps x ↦ φ(Wx + Uθ + c) with ‖W‖₂ = ρ and φ 1-Lipschitz ("affine", "tanh",
# "softplus", "prox": soft-threshold), a gradient step on a strongly convex objective whose
# Jacobian I − ηH is symmetric ("gradstep": the map CG applies to), and a map with ∂ₓF = 0 at
# its fixed point ("cubic": F = h(θ) + κ(x − h(θ))³, where OneStep is exact).
KINDS = ("affine", "tanh", "softplus", "prox", "gradstep", "cubic")


@dataclasses.dataclass(frozen=True)
class LeafSpec:
    """One leaf of a generated pytree.

    Attributes:
        shape: the leaf's shape (() for scalars).
        dtype: "float64" or "float32".
        kind: "array" (a jax array), "zero_d" (a 0-d jax array) or "python" (a Python float).
    """

    shape: tuple[int, ...]
    dtype: str = "float64"
    kind: str = "array"

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def is_leaf_spec(node) -> bool:
    return isinstance(node, LeafSpec)


def spec_leaves(tree) -> list[LeafSpec]:
    """The LeafSpecs of a spec tree, in the order jax flattens the pytree it describes."""
    return jax.tree_util.tree_leaves(tree, is_leaf=is_leaf_spec)


def leaf_specs(dtypes=("float64",), kinds=("array", "zero_d", "python"), shapes=SHAPES):
    """A LeafSpec: a Python float (float64, shape ()), a 0-d array or an array of a shape
    from ``shapes``, in one of ``dtypes``."""

    def make(kind, shape, dtype):
        if kind == "python":
            return LeafSpec((), "float64", "python")
        if kind == "zero_d":
            return LeafSpec((), dtype, "zero_d")
        return LeafSpec(shape, dtype, "array")

    return st.builds(
        make,
        st.sampled_from(kinds),
        st.sampled_from([s for s in shapes if s != ()] or [(1,)]),
        st.sampled_from(dtypes),
    )


def _containers(children):
    keys = st.sampled_from(("a", "b", "c", "d"))
    return st.one_of(
        st.lists(children, min_size=1, max_size=3).map(tuple),
        st.lists(children, min_size=1, max_size=3),
        st.dictionaries(keys, children, min_size=1, max_size=3),
    )


def tree_specs(leaves, *, max_leaves: int = 4, allow_none: bool = True, min_leaves: int = 1):
    """A pytree of LeafSpecs: tuples, lists and dicts, nested, with None subtrees when
    ``allow_none``, and between ``min_leaves`` and ``max_leaves`` leaves."""
    base = st.one_of(leaves, st.none()) if allow_none else leaves
    trees = st.one_of(leaves, st.recursive(base, _containers, max_leaves=max_leaves))
    return trees.filter(lambda t: min_leaves <= len(spec_leaves(t)) <= max_leaves)


@dataclasses.dataclass(frozen=True, eq=False)
class ProblemSpec:
    """The static part of a generated problem.

    Attributes:
        x: spec tree of the iterate x (x0 is zero, in these leaves).
        params: spec trees of the differentiated parameters, by how they reach F:
            ``{"theta": ..., "closure": ..., "module": ...}`` — passed as θ, closed over by F,
            or held by F as an `equinox.Module` (with ``f_as_module``; closed over otherwise).
        theta_as_module: θ is passed wrapped in an `equinox.Module` (`generated.ThetaBox`).
        f_as_module: F is an `equinox.Module` (`generated.MapLayer`) holding its arrays.
        kind: one of `KINDS`.
        x_mask: x_mask[i][j]: output leaf i depends on x leaf j (structurally).
        p_mask: p_mask[i][l]: output leaf i depends on parameter leaf l (structurally).
    """

    x: Any
    params: Any
    theta_as_module: bool
    f_as_module: bool
    kind: str
    x_mask: tuple[tuple[bool, ...], ...]
    p_mask: tuple[tuple[bool, ...], ...]

    # Hashable although its trees hold lists and dicts: it is a static field and a cache key.
    def __eq__(self, other):
        return isinstance(other, ProblemSpec) and repr(self) == repr(other)

    def __hash__(self):
        return hash(repr(self))

    @property
    def x_leaves(self) -> list[LeafSpec]:
        return spec_leaves(self.x)

    @property
    def p_leaves(self) -> list[LeafSpec]:
        return spec_leaves(self.params)

    @property
    def dtypes(self) -> set[str]:
        return {s.dtype for s in self.x_leaves + self.p_leaves}


def _masks(draw, kind, n_x, n_p, density):
    if kind in ("cubic",):
        x_mask = tuple(tuple(i == j for j in range(n_x)) for i in range(n_x))
    else:
        x_mask = tuple(
            tuple(draw(st.booleans()) if density else True for _ in range(n_x)) for _ in range(n_x)
        )
    if kind == "gradstep":  # H symmetric: a block and its transpose, and every diagonal block
        x_mask = tuple(
            tuple(i == j or x_mask[i][j] or x_mask[j][i] for j in range(n_x)) for i in range(n_x)
        )
    p_mask = tuple(
        tuple(draw(st.booleans()) if density else True for _ in range(n_p)) for _ in range(n_x)
    )
    if not any(any(row) for row in p_mask):  # some output depends on some parameter
        i = draw(st.integers(0, n_x - 1))
        l = draw(st.integers(0, n_p - 1))  # noqa: E741
        p_mask = tuple(
            tuple(on or (a == i and b == l) for b, on in enumerate(row))
            for a, row in enumerate(p_mask)
        )
    return x_mask, p_mask


@st.composite
def problem_specs(
    draw,
    kinds=KINDS,
    x_dtypes=("float64", "float32"),
    p_dtypes=("float64", "float32"),
    deliveries=True,
    sparse=True,
    max_x_leaves: int = 3,
    max_p_leaves: int = 3,
):
    """A `ProblemSpec` with random structures, dtypes, dependency patterns and deliveries.

    Arguments:
        kinds: the map kinds to draw from.
        x_dtypes, p_dtypes: leaf dtypes of x and of the parameters.
        deliveries: draw how parameters reach F (θ, closure, module F, module θ); False: all
            through a plain θ and a plain function F.
        sparse: draw dependency patterns (else every output leaf depends on every input leaf).
        max_x_leaves, max_p_leaves: leaf counts.
    """
    kind = draw(uniform(kinds))
    x = draw(tree_specs(leaf_specs(x_dtypes), max_leaves=max_x_leaves))
    p_leaf = leaf_specs(p_dtypes)
    if deliveries:
        theta = draw(st.one_of(st.none(), tree_specs(p_leaf, max_leaves=max_p_leaves)))
        closure = draw(st.one_of(st.none(), tree_specs(p_leaf, max_leaves=2)))
        module = draw(st.one_of(st.none(), tree_specs(p_leaf, max_leaves=2)))
        theta_as_module = draw(st.booleans())
        f_as_module = draw(st.booleans())
    else:
        theta = draw(tree_specs(p_leaf, max_leaves=max_p_leaves))
        closure = module = None
        theta_as_module = f_as_module = False
    params = {"theta": theta, "closure": closure, "module": module}
    n_p = len(spec_leaves(params))
    if n_p == 0:  # something to differentiate
        params["theta"] = LeafSpec((2,))
        n_p = 1
    x_mask, p_mask = _masks(draw, kind, len(spec_leaves(x)), n_p, sparse)
    return ProblemSpec(x, params, theta_as_module, f_as_module, kind, x_mask, p_mask)


def uniform(options):
    """One of ``options``, uniformly (hypothesis starts `sampled_from` at its first option, so a
    small budget would keep drawing it; a seeded `random.Random` spreads the draws)."""
    options = tuple(options)
    return st.randoms(use_true_random=True).map(lambda r: r.choice(options))


def rates(low: float = 0.0, high: float = 0.9):
    """A contraction rate ρ ∈ [low, high]."""
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


def seeds():
    """A seed for the numbers of a problem (`numpy.random.default_rng`)."""
    return st.integers(0, 2**32 - 1)
