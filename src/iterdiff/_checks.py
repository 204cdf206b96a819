"""Trace-time checks of the inputs of `fixed_point`, with messages written for users."""

import jax
import jax.numpy as jnp
import numpy as np

from ._options import INT32_MAX, check_int, check_number

keystr = jax.tree_util.keystr


def default_tol(dtype) -> float:
    """The forward stopping tolerance for a dtype: 1e-8 in float64, 1e-5 in float32."""
    return 1e-8 if jnp.finfo(dtype).bits >= 64 else 1e-5


def stopping_tolerances(tol, rtol, atol, dtype) -> tuple[float, float]:
    """(rtol, atol) from the user's options; ``tol`` is shorthand for rtol = atol = tol, and
    what is left unset takes the default of the least precise leaf's ``dtype``."""
    if tol is not None:
        if rtol is not None or atol is not None:
            raise ValueError(
                "fixed_point: pass either tol= (shorthand for rtol = atol = tol) or rtol=/atol=, "
                "not both."
            )
        tol = check_number(
            "fixed_point",
            "tol",
            tol,
            low=0.0,
            hint=" The loop stops when norm(F(x) − x) ≤ tol·(1 + norm(x)); None picks the "
            "precision-aware default.",
        )
        rtol = atol = tol
    default = default_tol(dtype)
    rtol = (
        default
        if rtol is None
        else check_number("fixed_point", "rtol", rtol, low=0.0, closed_low=True)
    )
    atol = (
        default
        if atol is None
        else check_number("fixed_point", "atol", atol, low=0.0, closed_low=True)
    )
    return rtol, atol


def check_options(max_steps, throw, has_aux, norm) -> int:
    max_steps = check_int("fixed_point", "max_steps", max_steps, low=1, high=INT32_MAX - 1)
    if not isinstance(throw, bool):
        raise TypeError(f"fixed_point(throw={throw!r}): throw must be True or False.")
    if not isinstance(has_aux, bool):
        raise TypeError(f"fixed_point(has_aux={has_aux!r}): has_aux must be True or False.")
    if not callable(norm):
        raise TypeError(
            f"fixed_point(norm={norm!r}): norm must be a function of a pytree returning a scalar, "
            "e.g. iterdiff.max_norm (default), iterdiff.rms_norm or iterdiff.two_norm."
        )
    return max_steps


def check_observers(observe, base) -> dict:
    if observe is None:
        return {}
    if not isinstance(observe, dict) or not all(isinstance(k, str) for k in observe):
        raise TypeError(
            "fixed_point(observe=...) takes a dict {name: observer}, e.g. "
            "{'residual': iterdiff.Trace(lambda k, x, fx: ...)}."
        )
    for name, obs in observe.items():
        if not isinstance(obs, base):
            raise TypeError(
                f"fixed_point(observe={{{name!r}: ...}}): {obs!r} is not an observer "
                "(a subclass of iterdiff.AbstractObserver, such as iterdiff.Trace)."
            )
    return dict(observe)


def as_arrays(tree, name: str):
    """``tree`` with every leaf a JAX array; a leaf that is not one is named in the error."""

    def convert(path, leaf):
        try:
            return jnp.asarray(leaf)
        except TypeError as err:
            raise TypeError(
                f"fixed_point: {name}{keystr(path)} is a {type(leaf).__name__} ({leaf!r:.60}), "
                f"not an array. Every leaf of {name} must be an array or a number; keep other "
                "values (strings, callables, options) out of the pytree, e.g. close over them in F."
            ) from err

    return jax.tree_util.tree_map_with_path(convert, tree)


def check_x0(x0) -> None:
    leaves = jax.tree_util.tree_leaves_with_path(x0)
    if not leaves:
        raise ValueError(
            "fixed_point: x0 has no array leaves; it must be a pytree of float arrays."
        )
    for path, leaf in leaves:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"fixed_point: x0{keystr(path)} has dtype {dtype}; the iterates must be real "
                "floating-point arrays (cast integers with .astype(float))."
            )
        if jnp.finfo(dtype).bits < 32:
            raise TypeError(
                f"fixed_point: x0{keystr(path)} has dtype {dtype}. Half precision is not supported: "
                "its rounding error (~1e-3) is above any useful stopping tolerance and the implicit "
                "linear solve cannot reach its accuracy. Iterate in float32 (cast x0 and cast back "
                "after the solve)."
            )
    if sum(np.size(leaf) for _, leaf in leaves) == 0:
        raise ValueError("fixed_point: x0 has no entries (all its arrays are empty).")


def note_failed_trace(err: Exception) -> None:
    """Add our explanation to an exception raised while tracing the user's F (kept as is)."""
    hint = (
        "iterdiff.fixed_point: calling F(x0, theta) failed while tracing it with abstract "
        "values (F is traced once, then compiled)."
    )
    if isinstance(err, jax.errors.ConcretizationTypeError):
        hint += (
            " F uses the value of x or θ in Python control flow (e.g. `if t > 0:`); use "
            "jnp.where or jax.lax.cond instead, or close over Python numbers."
        )
    err.add_note(hint)


def check_output(out, x0, has_aux: bool) -> None:
    """F(x0, θ) (abstract, ``out``) must have the structure, shapes and dtypes of x0."""
    if has_aux:
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ValueError(
                "fixed_point(has_aux=True): F must return a pair (x, aux), got "
                f"{jax.tree_util.tree_structure(out)}."
            )
        out = out[0]
    want, got = jax.tree_util.tree_structure(x0), jax.tree_util.tree_structure(out)
    if want != got:
        extra = " (with has_aux=True, F returns (x, aux))" if not has_aux else ""
        raise ValueError(
            "fixed_point: F(x, theta) must return the same pytree structure as x0"
            f"{extra}.\n  x0 has structure     {want}\n  F(x0, θ) returned {got}"
        )
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(x0), jax.tree_util.tree_leaves(out), strict=True
    ):
        name = f"x{keystr(path)}"
        if jnp.shape(a) != b.shape:
            raise ValueError(
                f"fixed_point: F returned shape {b.shape} for leaf {name}, but x0 has shape "
                f"{jnp.shape(a)}. F must map x to an x of the same shape."
            )
        if jnp.result_type(a) != b.dtype:
            raise ValueError(
                f"fixed_point: F returned dtype {b.dtype} for leaf {name}, but x0 has dtype "
                f"{jnp.result_type(a)}. Cast inside F, or start from x0 of the dtype F computes in."
            )
