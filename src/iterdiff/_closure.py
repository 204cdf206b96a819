"""Closure conversion that hoists every traced value a function closes over."""

import jax
from jax.extend.core import ClosedJaxpr, jaxpr_as_fun


def hoist_closure(F, *example_args):
    """``(converted, consts)``: F as ``converted(*args, *consts)``, where consts are all the
    traced values (tracers of an enclosing transformation) that F closes over.

    `jax.closure_convert` hoists only the values it considers differentiable and keeps integer
    (and boolean) tracers closed over. Such a tracer then escapes from any rule that evaluates F
    in a trace of its own, after the enclosing trace has moved on: under `jax.jit`, OneStep's and
    Unrolled's linear maps failed in reverse mode with "No constant handler for type
    DynamicJaxprTracer" when F closed over, e.g., a traced `lax.switch` index. Concrete values
    stay closed over (they are constants of the program).
    """
    closed, out_shape = jax.make_jaxpr(F, return_shape=True)(*example_args)
    hoist = [isinstance(c, jax.core.Tracer) for c in closed.consts]
    kept = [c for c, h in zip(closed.consts, hoist, strict=True) if not h]
    consts = [c for c, h in zip(closed.consts, hoist, strict=True) if h]
    in_tree = jax.tree_util.tree_structure(example_args)
    out_tree = jax.tree_util.tree_structure(out_shape)
    n_args = len(example_args)

    def converted(*args_and_consts):
        args, hoisted = args_and_consts[:n_args], iter(args_and_consts[n_args:])
        kept_values = iter(kept)
        values = [next(hoisted) if h else next(kept_values) for h in hoist]
        leaves, tree = jax.tree_util.tree_flatten(args)
        if tree != in_tree:
            raise TypeError(
                f"iterdiff: F was traced with arguments of structure {in_tree} and is now called "
                f"with {tree}."
            )
        out = jaxpr_as_fun(ClosedJaxpr(closed.jaxpr, values))(*leaves)
        return jax.tree_util.tree_unflatten(out_tree, out)

    return converted, consts
