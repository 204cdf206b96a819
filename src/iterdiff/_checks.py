"""Trace-time checks of the inputs of `fixed_point`, with messages written for users."""

import jax
import jax.numpy as jnp


def check_options(max_steps, tol, throw) -> None:
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"fixed_point(max_steps={max_steps!r}): max_steps must be an int ≥ 1.")
    if tol is not None and (
        isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0
    ):
        raise ValueError(
            f"fixed_point(tol={tol!r}): tol must be a positive Python float (the loop stops when "
            "‖F(x) − x‖_∞ ≤ tol·(1 + ‖x‖_∞)), or None for the precision-aware default."
        )
    if not isinstance(throw, bool):
        raise TypeError(f"fixed_point(throw={throw!r}): throw must be True or False.")


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
                f"fixed_point: x0{jax.tree_util.keystr(path)} has dtype {dtype}; the iterates must "
                "be real floating-point arrays (cast integers with .astype(float))."
            )
    if sum(jnp.size(leaf) for _, leaf in leaves) == 0:
        raise ValueError("fixed_point: x0 has no entries (all its arrays are empty).")


def check_output(F, x0, theta) -> None:
    """F(x0, θ) must have the structure, shapes and dtypes of x0."""
    try:
        out = jax.eval_shape(F, x0, theta)
    except Exception as err:  # re-raised with context: the user's F failed to trace
        raise type(err)(f"fixed_point: calling F(x0, theta) failed: {err}") from err
    want, got = jax.tree_util.tree_structure(x0), jax.tree_util.tree_structure(out)
    if want != got:
        raise ValueError(
            "fixed_point: F(x, theta) must return the same pytree structure as x0.\n"
            f"  x0 has structure     {want}\n  F(x0, θ) returned {got}"
        )
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(x0), jax.tree_util.tree_leaves(out), strict=True
    ):
        name = f"x{jax.tree_util.keystr(path)}"
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
