"""Kink primitives: the selection is exactly what AD returns at the kink (jvp, grad, jit, vmap),
the defaults match JAX, the classical derivative away from kinks, and the seed-002 artefacts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
from iterdiff import nonsmooth as ns

# (primitive, JAX reference, kink point(s) as args, Clarke interval, default)
UNARY = [
    (ns.relu, jax.nn.relu, (0.0, 1.0), 0.0),
    (ns.abs, jnp.abs, (-1.0, 1.0), 1.0),
]


def _grad_all_ways(f, x):
    """Derivative of scalar f at x by jvp, grad, jacrev, jacfwd, jit(grad) and vmap(grad)."""
    return [
        jax.jvp(f, (x,), (1.0,))[1],
        jax.grad(f)(x),
        jax.jacrev(f)(x),
        jax.jacfwd(f)(x),
        jax.jit(jax.grad(f))(x),
        jax.vmap(jax.grad(f))(jnp.stack([x, x]))[1],
    ]


@pytest.mark.parametrize("prim,ref,interval,default", UNARY)
def test_unary_default_matches_jax(prim, ref, interval, default):
    xs = jnp.array([-1.5, -0.0, 0.0, 0.25, 2.0])
    np.testing.assert_array_equal(prim(xs), ref(xs))
    ours = jax.vmap(jax.grad(prim))(xs)
    np.testing.assert_array_equal(ours, jax.vmap(jax.grad(ref))(xs))
    assert float(jax.grad(prim)(0.0)) == default


@pytest.mark.parametrize("prim,ref,interval,default", UNARY)
@pytest.mark.parametrize("t", [0.0, 0.3, 1.0])
def test_unary_selection_is_exact_in_every_transform(prim, ref, interval, default, t):
    lo, hi = interval
    s = lo + t * (hi - lo)
    for d in _grad_all_ways(lambda x: prim(x, at_kink=s), jnp.asarray(0.0)):
        assert float(d) == s
    # away from the kink the selection is irrelevant
    for x, slope in [(-2.0, ref(-1.0) * -1), (3.0, 1.0)]:
        d = jax.grad(lambda v: prim(v, at_kink=s))(x)
        assert float(d) == float(jax.grad(ref)(x)), (x, slope)


def test_selection_per_coordinate_and_traced():
    s = jnp.array([0.0, 0.25, 1.0])
    J = jax.jacfwd(lambda x: ns.relu(x, at_kink=s))(jnp.zeros(3))
    np.testing.assert_array_equal(J, jnp.diag(s))
    # a traced selection (e.g. swept under vmap) is used as is
    ds = jax.vmap(lambda w: jax.grad(lambda x: ns.relu(x, at_kink=w))(0.0))(s)
    np.testing.assert_array_equal(ds, s)


@pytest.mark.parametrize(
    "call",
    [
        lambda: ns.relu(0.0, at_kink=1.5),
        lambda: ns.relu(0.0, at_kink=-0.1),
        lambda: ns.abs(0.0, at_kink=2.0),
        lambda: ns.maximum(0.0, 0.0, at_kink=1.01),
        lambda: ns.clip(0.0, 0.0, 1.0, at_kink=-1.0),
        lambda: ns.negative_part(0.0, at_kink=0.5),
        lambda: ns.relu(jnp.zeros(2), at_kink=jnp.array([0.5, jnp.nan])),
    ],
)
def test_selection_outside_clarke_set_is_refused(call):
    with pytest.raises(ValueError, match="must lie in"):
        call()


def test_selection_checked_at_trace_time_under_jit():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        jax.jit(lambda x: ns.relu(x, at_kink=2.0))(0.0)


def test_maximum_minimum_at_ties():
    a, b = jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 5.0, -1.0])
    np.testing.assert_array_equal(ns.maximum(a, b), jnp.maximum(a, b))
    np.testing.assert_array_equal(ns.minimum(a, b), jnp.minimum(a, b))
    for w in [0.5, 0.0, 1.0, 0.2]:
        ga, gb = jax.grad(lambda u, v, w=w: ns.maximum(u, v, at_kink=w).sum(), argnums=(0, 1))(a, b)
        np.testing.assert_array_equal(ga, [w, 0.0, 1.0])
        np.testing.assert_array_equal(gb, [1 - w, 1.0, 0.0])
        ga, gb = jax.grad(lambda u, v, w=w: ns.minimum(u, v, at_kink=w).sum(), argnums=(0, 1))(a, b)
        np.testing.assert_array_equal(ga, [w, 1.0, 0.0])
        np.testing.assert_array_equal(gb, [1 - w, 0.0, 1.0])
    # default equals JAX (1/2 at ties), broadcasting a scalar b
    g = jax.grad(lambda u, v: ns.maximum(u, v).sum(), argnums=(0, 1))(a, 1.0)
    g_ref = jax.grad(lambda u, v: jnp.maximum(u, v).sum(), argnums=(0, 1))(a, 1.0)
    np.testing.assert_array_equal(g[0], g_ref[0])
    assert float(g[1]) == float(g_ref[1]) == 0.5


def test_clip_selection_and_default():
    x = jnp.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    lo, hi = 0.0, 1.0
    np.testing.assert_array_equal(ns.clip(x, lo, hi), jnp.clip(x, lo, hi))

    def grads(f):
        return jax.vmap(jax.grad(f, argnums=(0, 1, 2)), in_axes=(0, None, None))(x, lo, hi)

    ours, ref = grads(ns.clip), grads(jnp.clip)
    for o, r in zip(ours, ref, strict=True):
        np.testing.assert_array_equal(o, r)
    gx, gl, gu = grads(lambda v, l, u: ns.clip(v, l, u, at_kink=0.0))
    np.testing.assert_array_equal(gx, [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(gl, [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(gu, [0, 0, 0, 1, 1])
    gx, gl, gu = grads(lambda v, l, u: ns.clip(v, l, u, at_kink=1.0))
    np.testing.assert_array_equal(gx, [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(gl + gu, [1, 0, 0, 0, 1])
    with pytest.raises(ValueError, match="lower > upper"):
        ns.clip(x, 1.0, 0.0)


def test_negative_part_and_sign():
    assert float(ns.negative_part(-2.0)) == 2.0 and float(ns.negative_part(3.0)) == 0.0
    assert float(jax.grad(ns.negative_part)(-2.0)) == -1.0
    assert float(jax.grad(ns.negative_part)(0.0)) == 0.0
    assert float(jax.grad(lambda t: ns.negative_part(t, at_kink=-1.0))(0.0)) == -1.0
    assert float(jax.grad(lambda t: ns.negative_part(t, at_kink=-0.25))(0.0)) == -0.25
    np.testing.assert_array_equal(ns.sign(jnp.array([-2.0, 0.0, 3.0])), [-1, 0, 1])
    assert float(jax.grad(ns.sign)(1.0)) == 0.0


def test_away_from_kinks_matches_central_differences():
    def f(x):
        return jnp.sum(ns.relu(x) * ns.abs(x - 0.3) + ns.maximum(x, 2 * x) - ns.clip(x, -0.5, 0.7))

    x = jnp.array([-0.8, -0.2, 0.1, 0.45, 1.3])
    g = jax.jit(jax.grad(f))(x)
    eps = 1e-6
    steps = eps * jnp.eye(5)
    fd = (jax.vmap(f)(x + steps) - jax.vmap(f)(x - steps)) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-8, atol=1e-8)


# --- seed 002: artefacts of AD at kinks -------------------------------------------------------


def relu2(t, at_kink=0.0):
    return ns.relu(-t, at_kink=at_kink) + t


def relu3(t, at_kink=0.0):
    return (ns.relu(t, at_kink=at_kink) + relu2(t, at_kink)) / 2


def zero(t, at_kink=0.0):
    return relu2(t, at_kink) - ns.relu(t, at_kink=at_kink)


def test_seed_002_artefacts():
    t = jnp.linspace(-2, 2, 9)
    np.testing.assert_array_equal(relu2(t), ns.relu(t))
    np.testing.assert_array_equal(relu3(t), ns.relu(t))
    np.testing.assert_array_equal(zero(t), jnp.zeros_like(t))
    # the same functions, three different AD derivatives at 0 (relu'(0) = 0 everywhere)
    assert float(jax.grad(ns.relu)(0.0)) == 0.0
    assert float(jax.grad(relu2)(0.0)) == 1.0
    assert float(jax.grad(relu3)(0.0)) == 0.5
    assert float(jax.grad(zero)(0.0)) == 1.0
    # identical with JAX's own relu: nothing changed silently
    assert float(jax.grad(lambda s: jax.nn.relu(-s) + s)(0.0)) == 1.0
    # the artefact moves with the selection: relu2'(0) = 1 − s, zero'(0) = 1 − 2s
    for s in [0.0, 0.25, 1.0]:
        assert float(jax.grad(lambda u, s=s: relu2(u, s))(0.0)) == 1 - s
        assert float(jax.grad(lambda u, s=s: zero(u, s))(0.0)) == 1 - 2 * s
    # all are elements of the Clarke subdifferential of relu at 0 except zero'(0) = 1 (Clarke {0})
    # and x − zero(x) has an artificial critical point at 0
    assert float(jax.grad(lambda u: u - zero(u))(0.0)) == 0.0


def test_primitives_compose_with_fixed_point_modes():
    # x = x/2 + relu(θ, s): at θ = 0 every iteration evaluates relu on its kink, so the
    # selection enters every mode: x̄ = 2 relu(θ), Implicit/Unrolled → 2s, OneStep → s,
    # Truncated(k) → s (2 − 2^{1−k}).
    s = 0.75

    def F(x, theta):
        return 0.5 * x + ns.relu(theta, at_kink=s)

    def solve(mode):
        def f(th):
            return itd.fixed_point(F, jnp.asarray(1.0), th, mode=mode, tol=1e-13).value

        return f

    cases = [
        (itd.Implicit(), 2 * s),
        (itd.Unrolled(), 2 * s),
        (itd.OneStep(), s),
        (itd.Truncated(3), s * (2 - 2**-2)),
    ]

    @jax.jit
    def derivatives(th):
        fwd = [jax.jvp(solve(m), (th,), (jnp.ones_like(th),))[1] for m, _ in cases]
        rev = [jax.grad(solve(m))(th) for m, _ in cases]
        return jnp.stack(fwd), jnp.stack(rev)

    # one compilation: the kink θ = 0 and two points away from it, where x̄'(θ) = 2·[θ > 0]
    fwd, rev = jax.vmap(derivatives)(jnp.array([0.0, -0.5, 1.5]))
    expected = np.array([e for _, e in cases])
    for d in (fwd, rev):
        np.testing.assert_allclose(d[0], expected, rtol=0, atol=1e-10)
        np.testing.assert_allclose(d[1:, :2], [[0.0, 0.0], [2.0, 2.0]], atol=1e-10)
        np.testing.assert_allclose(d[1:, 2], [0.0, 1.0], atol=1e-10)  # OneStep: ∂_θF
