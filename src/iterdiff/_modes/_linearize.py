"""F's linearization in the live parameters, and the one-step map u̇ ↦ ∂_u F(x, θ) u̇ as a
`linear_call` (shared by `Implicit`'s right-hand side and `OneStep`)."""

import jax
import jax.numpy as jnp

from .._linear_call import LinearMap
from .._tangents import Live, fill_zeros


def linearize(fn, x, params, live: Live):
    """``(F(x, θ), u̇ ↦ ∂F/∂u·u̇, aux)`` with u the live leaves of params."""

    def f(u):
        return fn(x, live.merge_params(params, u))

    return jax.linearize(f, live.pick_params(params), has_aux=True)


def one_step_map(fn, live: Live) -> LinearMap:
    """u̇ ↦ ∂_u F(x, θ) u̇ on residuals (x, params, cache), where cache holds the intermediate
    values of F's linearization at x (None: linearize again), with its transpose and its
    derivatives in x and params (JAX's own, for second order)."""

    def linearized(x, params, cache):
        _, f_jvp, _ = linearize(fn, x, params, live)
        if cache is None:
            return f_jvp
        fresh, treedef = jax.tree_util.tree_flatten(f_jvp)
        same = [(jnp.shape(a), jnp.result_type(a)) for a in fresh] == [
            (jnp.shape(a), jnp.result_type(a)) for a in cache
        ]
        return jax.tree_util.tree_unflatten(treedef, cache) if same else f_jvp

    def apply(res, u):
        return linearized(*res)(u)

    def transpose(res, ct):
        x, params, _ = res
        return jax.linear_transpose(linearized(*res), live.pick_params(params))(ct)[0]

    def tangent_map(x, params, u):
        return linearize(fn, x, params, live)[1](u)

    def cotangent_map(x, params, ct):
        def f(v):
            return fn(x, live.merge_params(params, v))[0]

        return jax.vjp(f, live.pick_params(params))[1](ct)[0]

    def derivative(inner):
        def d(res, lin, res_dot):
            x, params, _ = res
            x_dot, params_dot = fill_zeros(res_dot[0], x), fill_zeros(res_dot[1], params)
            return jax.jvp(lambda x, p: inner(x, p, lin), (x, params), (x_dot, params_dot))[1]

        return d

    return LinearMap(
        apply, transpose, derivative(tangent_map), derivative(cotangent_map), "one-step map"
    )
