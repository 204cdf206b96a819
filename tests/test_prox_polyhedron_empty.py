"""`prox.project_polyhedron` on an empty polyhedron (issue 28 item 7): a ValueError for
concrete inputs, NaN (value and every derivative) under jit and vmap, as `project_box_section`
does; a solve that fails on a nonempty polyhedron still raises `SolveError`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
from iterdiff import prox

X = jnp.asarray([0.3, -0.2, 0.5])
E1 = jnp.asarray([[1.0, 0, 0]])

# (A, b, E, d): three ways to be empty, and one nonempty set of the same shapes
EMPTY = {
    "inequalities": (jnp.asarray([[1.0, 0, 0], [-1.0, 0, 0]]), jnp.asarray([-1.0, -1.0])),
    "inequalities, barely": (  # y₀ ≤ −1 and y₀ ≥ −1 + 1e-3
        jnp.asarray([[1.0, 0, 0], [-1.0, 0, 0]]),
        jnp.asarray([-1.0, 1.0 - 1e-3]),
    ),
    "equalities": (
        jnp.asarray([[0.0, 1, 0], [0.0, -1, 0]]),
        jnp.asarray([1.0, 1.0]),
        jnp.asarray([[1.0, 0, 0], [2.0, 0, 0]]),
        jnp.asarray([1.0, 3.0]),
    ),
    "equality against inequality": (
        jnp.asarray([[1.0, 1, 0], [0.0, -1, 0]]),
        jnp.asarray([0.0, 1.0]),
        jnp.asarray([[1.0, 0, 0], [0.0, 0, 1]]),
        jnp.asarray([2.0, 0.0]),
    ),
}
NONEMPTY_B = jnp.asarray([1.0, 1.0])  # |y₀| ≤ 1 with the first A above


@pytest.mark.parametrize("name", list(EMPTY))
def test_empty_polyhedron_raises_for_concrete_inputs(name):
    with pytest.raises(ValueError, match="is empty"):
        prox.project_polyhedron(X, *EMPTY[name])


def value_and_derivatives(x, A, b):
    f = lambda x, b: prox.project_polyhedron(x, A, b)  # noqa: E731
    y, y_dot = jax.jvp(f, (x, b), (jnp.ones_like(x), jnp.ones_like(b)))
    grad = jax.grad(lambda x, b: jnp.sum(f(x, b)), argnums=(0, 1))(x, b)
    both = (0, 1)
    return y, y_dot, grad, jax.jacfwd(f, both)(x, b), jax.jacrev(f, both)(x, b)


def test_empty_polyhedron_is_nan_under_jit_and_vmap():
    """Under vmap, the empty member is NaN in value, jvp, grad, jacfwd and jacrev, and the
    nonempty member beside it is the clip |y₀| ≤ 1 with its derivatives; jit alone likewise."""
    A, b_empty = EMPTY["inequalities"]
    batched = jax.jit(jax.vmap(value_and_derivatives, in_axes=(None, None, 0)))
    out = batched(X, A, jnp.stack([NONEMPTY_B, b_empty]))
    nonempty = jax.tree_util.tree_map(lambda a: np.asarray(a[0]), out)
    empty = jax.tree_util.tree_map(lambda a: np.asarray(a[1]), out)
    assert all(np.all(np.isnan(leaf)) for leaf in jax.tree_util.tree_leaves(empty))
    y, y_dot, (g_x, g_b), (jf_x, _), (jr_x, _) = nonempty
    np.testing.assert_allclose(y, X, atol=1e-12)  # X is inside: the projection is X
    np.testing.assert_allclose(y_dot, np.ones(3), atol=1e-12)
    np.testing.assert_allclose(g_x, np.ones(3), atol=1e-12)
    np.testing.assert_allclose(g_b, np.zeros(2), atol=1e-12)
    np.testing.assert_allclose(jf_x, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(jr_x, np.eye(3), atol=1e-12)
    alone = jax.jit(value_and_derivatives)(X, A, b_empty)
    assert all(np.all(np.isnan(np.asarray(leaf))) for leaf in jax.tree_util.tree_leaves(alone))


@pytest.mark.parametrize("name", ["equalities", "equality against inequality"])
def test_empty_with_equalities_is_nan_under_jit(name):
    A, b, E, d = EMPTY[name]
    y = jax.jit(lambda x: prox.project_polyhedron(x, A, b, E, d))(X)
    assert np.all(np.isnan(np.asarray(y)))


def test_failed_solve_on_a_nonempty_polyhedron_still_raises():
    """Two interior-point steps cannot converge: that is a SolveError (eager and jit), not an
    empty set and not NaN."""
    A, _ = EMPTY["inequalities"]
    far = jnp.asarray([30.0, -0.2, 0.5])
    with pytest.raises(itd.SolveError, match="did not converge"):
        prox.project_polyhedron(far, A, NONEMPTY_B, max_steps=2)
    with pytest.raises(Exception, match="did not converge"):
        jax.block_until_ready(
            jax.jit(lambda x: prox.project_polyhedron(x, A, NONEMPTY_B, max_steps=2))(far)
        )
