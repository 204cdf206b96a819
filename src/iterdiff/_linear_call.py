"""A linear map with a hand-written transpose and a hand-written derivative: one JAX primitive.

A `custom_jvp` rule must return tangents that JAX can transpose (that is how reverse mode is
obtained from it). A tangent computed by a while loop (the unrolled piggyback recursion) cannot
be transposed by JAX, so its transpose is supplied by hand: `linear_call(lmap, res, lin, out_like)`
evaluates ``lmap.apply(res, lin)``, a map linear in ``lin`` with residual (non-linear) inputs
``res``, and

* transposes to ``lmap.transpose(res, ct)`` (a `linear_call` of the transposed map, so
  transposing twice gives the map back);
* differentiates in ``lin`` as itself, and in ``res`` through ``lmap.d_apply(res, lin, res_dot)``
  (resp. ``d_transpose``), which returns the tangent — usually another `linear_call`, so that
  second derivatives in every order of forward and reverse mode are available;
* batches by `jax.vmap` of all four functions (linear inputs are batched along axis 0).

Neither `lax.custom_linear_solve` nor JAX's internal ``linear_call`` can do the second point: both
treat the residual inputs as constants, which silently drops part of a second derivative.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from ._tangents import ZERO

tree_flatten = jax.tree_util.tree_flatten
tree_unflatten = jax.tree_util.tree_unflatten


class LinearMap:
    """y = apply(res, lin), linear in lin, with its transpose and derivatives in res.

    Arguments:
        apply: ``(res, lin) -> y``, linear in lin.
        transpose: ``(res, ct) -> lin_ct``, the adjoint of ``apply(res, ·)``.
        d_apply: ``(res, lin, res_dot) -> y_dot``, the derivative of ``apply`` in res along
            res_dot (a pytree like res with `_tangents.ZERO` for zero tangents); None if not
            differentiable.
        d_transpose: the same for ``transpose``.
        name: for error messages.

    Objects are compared by identity (they are static parameters of the primitive).
    """

    def __init__(
        self,
        apply: Callable,
        transpose: Callable,
        d_apply: Callable | None = None,
        d_transpose: Callable | None = None,
        name: str = "linear map",
    ):
        self.apply = apply
        self.transpose = transpose
        self.d_apply = d_apply
        self.d_transpose = d_transpose
        self.name = name

    def transposed(self) -> "LinearMap":
        return LinearMap(
            self.transpose, self.apply, self.d_transpose, self.d_apply, self.name + "ᵀ"
        )


class _Spec:
    """Static parameters of one `linear_call`: the map and the pytree layout of its arguments."""

    def __init__(self, lmap, res_tree, lin_tree, lin_avals, out_tree, out_avals):
        self.lmap = lmap
        self.res_tree = res_tree
        self.lin_tree = lin_tree
        self.lin_avals = tuple(lin_avals)
        self.out_tree = out_tree
        self.out_avals = tuple(out_avals)

    @property
    def n_res(self) -> int:
        return self.res_tree.num_leaves

    def transposed(self) -> "_Spec":
        return _Spec(
            self.lmap.transposed(),
            self.res_tree,
            self.out_tree,
            self.out_avals,
            self.lin_tree,
            self.lin_avals,
        )

    def split(self, flat):
        res, lin = flat[: self.n_res], flat[self.n_res :]
        return tree_unflatten(self.res_tree, res), tree_unflatten(self.lin_tree, lin)


def _aval(x):
    return jax.core.ShapedArray(jnp.shape(x), jnp.result_type(x))


def linear_call(lmap: LinearMap, res, lin, out_like):
    """``lmap.apply(res, lin)``, differentiable and transposable as described in the module.

    Arguments:
        lmap: the `LinearMap`.
        res: residual inputs (pytree of arrays).
        lin: linear inputs (pytree of arrays).
        out_like: a pytree of arrays (or ShapeDtypeStructs) with the layout of the result.

    Returns:
        ``lmap.apply(res, lin)``, with the layout of ``out_like``.
    """
    res_flat, res_tree = tree_flatten(res)
    lin_flat, lin_tree = tree_flatten(lin)
    out_flat, out_tree = tree_flatten(out_like)
    spec = _Spec(lmap, res_tree, lin_tree, map(_aval, lin_flat), out_tree, map(_aval, out_flat))
    out = _linear_call_p.bind(*res_flat, *lin_flat, spec=spec)
    return tree_unflatten(out_tree, out)


def _impl(*args, spec: _Spec):
    res, lin = spec.split(args)
    out = spec.lmap.apply(res, lin)
    return [
        jnp.asarray(o, a.dtype) for o, a in zip(tree_flatten(out)[0], spec.out_avals, strict=True)
    ]


def _abstract_eval(*args, spec: _Spec):
    return list(spec.out_avals)


def _jvp(primals, tangents, *, spec: _Spec):
    out = _linear_call_p.bind(*primals, spec=spec)
    res_dot, lin_dot = tangents[: spec.n_res], tangents[spec.n_res :]
    terms = []
    if any(type(t) is not ad.Zero for t in lin_dot):
        lin_dot = [ad.instantiate_zeros(t) for t in lin_dot]
        terms.append(_linear_call_p.bind(*primals[: spec.n_res], *lin_dot, spec=spec))
    if any(type(t) is not ad.Zero for t in res_dot):
        if spec.lmap.d_apply is None:
            raise NotImplementedError(
                f"iterdiff: the derivative of the {spec.lmap.name} is not implemented (this is "
                f"a derivative of order three or higher)."
            )
        res, lin = spec.split(primals)
        live = tree_unflatten(spec.res_tree, [ZERO if type(t) is ad.Zero else t for t in res_dot])
        d = spec.lmap.d_apply(res, lin, live)
        terms.append(tree_flatten(d)[0])
    if not terms:
        return out, [ad.Zero(a.to_tangent_aval()) for a in spec.out_avals]
    tangent = terms[0]
    for term in terms[1:]:
        tangent = [a + b for a, b in zip(tangent, term, strict=True)]
    return out, tangent


def _transpose(cts, *args, spec: _Spec):
    res, lin = args[: spec.n_res], args[spec.n_res :]
    if any(ad.is_undefined_primal(r) for r in res):
        raise NotImplementedError("iterdiff: linear_call is not linear in its residual inputs.")
    if not any(ad.is_undefined_primal(v) for v in lin):
        return [None] * len(args)
    cts = [
        jnp.zeros(a.shape, a.dtype) if type(ct) is ad.Zero else ct
        for ct, a in zip(cts, spec.out_avals, strict=True)
    ]
    lin_ct = _linear_call_p.bind(*res, *cts, spec=spec.transposed())
    return [None] * spec.n_res + [
        ct if ad.is_undefined_primal(v) else None for v, ct in zip(lin, lin_ct, strict=True)
    ]


def _batch(axis_data, args, dims, *, spec: _Spec):
    if all(d is None for d in dims):
        out = _linear_call_p.bind(*args, spec=spec)
        return out, [None] * len(out)
    size = axis_data.size
    res, lin = list(args[: spec.n_res]), list(args[spec.n_res :])
    res_dims = dims[: spec.n_res]
    lin = [
        jnp.broadcast_to(v, (size,) + jnp.shape(v)) if d is None else jnp.moveaxis(v, d, 0)
        for v, d in zip(lin, dims[spec.n_res :], strict=True)
    ]
    batched = _batched_spec(spec, list(res_dims), size)
    out = _linear_call_p.bind(*res, *lin, spec=batched)
    return out, [0] * len(out)


def _batched_spec(spec: _Spec, res_dims: list, size: int) -> _Spec:
    lmap = spec.lmap
    res_axes = tree_unflatten(spec.res_tree, res_dims)

    def vmapped(fn):
        if fn is None:
            return None
        return jax.vmap(fn, in_axes=(res_axes, 0), axis_size=size)

    def vmapped_derivative(fn):
        """fn(res, lin, res_dot) batched: the `ZERO` markers of res_dot (leaves that are not
        arrays) stay outside the vmap, the tangents batch like their residuals."""
        if fn is None:
            return None

        def call(res, lin, res_dot):
            flat = tree_flatten(res_dot)[0]  # aligned with the leaves of res
            keep = [i for i, t in enumerate(flat) if t is not ZERO]

            def inner(res, lin, live):
                full = [ZERO] * len(flat)
                for i, t in zip(keep, live, strict=True):
                    full[i] = t
                return fn(res, lin, tree_unflatten(spec.res_tree, full))

            axes = (res_axes, 0, [res_dims[i] for i in keep])
            return jax.vmap(inner, in_axes=axes, axis_size=size)(res, lin, [flat[i] for i in keep])

        return call

    batched = LinearMap(
        vmapped(lmap.apply),
        vmapped(lmap.transpose),
        vmapped_derivative(lmap.d_apply),
        vmapped_derivative(lmap.d_transpose),
        lmap.name,
    )

    def lift(avals):
        return [jax.core.ShapedArray((size,) + a.shape, a.dtype) for a in avals]

    return _Spec(
        batched,
        spec.res_tree,
        spec.lin_tree,
        lift(spec.lin_avals),
        spec.out_tree,
        lift(spec.out_avals),
    )


_linear_call_p = Primitive("iterdiff_linear_call")
_linear_call_p.multiple_results = True
_linear_call_p.def_impl(_impl)
_linear_call_p.def_abstract_eval(_abstract_eval)
ad.primitive_jvps[_linear_call_p] = _jvp
ad.primitive_transposes[_linear_call_p] = _transpose
batching.fancy_primitive_batchers[_linear_call_p] = _batch
mlir.register_lowering(_linear_call_p, mlir.lower_fun(_impl, multiple_results=True))

__all__: list[Any] = ["LinearMap", "linear_call"]
