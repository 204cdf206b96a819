"""The stopping rule (rtol, atol, norm), has_aux, per-step observers and the Solution's record of
how it was made (issue 14)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd

# A contracting rotation around c(θ) = (10θ, 10θ): ‖x‖ ≈ 14 at θ = 1, so a relative rule and an
# absolute rule with the same number stop at different places.
R = 0.9 * jnp.asarray([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])


def rotation(x, t):
    c = 10 * t * jnp.ones(2)
    return c + R @ (x - c)


def test_absolute_rule_stops_exactly_where_it_says():
    sol = itd.fixed_point(rotation, jnp.zeros(2), 1.0, rtol=0.0, atol=1e-3, norm=itd.two_norm)
    assert float(sol.residual) <= 1e-3
    # one step earlier the residual was above atol: ‖F(x) − x‖ shrinks by exactly 0.9 per step
    assert float(sol.residual) / 0.9 > 1e-3
    # and the distance to x̄ = c is within residual / (1 − 0.9) (a contraction of rate 0.9)
    assert float(jnp.linalg.norm(sol.value - 10.0)) <= 1e-2 + 1e-12


def test_tol_is_shorthand_for_equal_rtol_and_atol():
    a = itd.fixed_point(rotation, jnp.zeros(2), 1.0, tol=1e-3)
    b = itd.fixed_point(rotation, jnp.zeros(2), 1.0, rtol=1e-3, atol=1e-3)
    assert int(a.steps) == int(b.steps)
    np.testing.assert_array_equal(a.value, b.value)


def test_relative_rule_is_looser_than_absolute_at_large_norm():
    rel = itd.fixed_point(rotation, jnp.zeros(2), 1.0, rtol=1e-3, atol=0.0)
    abs_ = itd.fixed_point(rotation, jnp.zeros(2), 1.0, rtol=0.0, atol=1e-3)
    assert int(rel.steps) < int(abs_.steps)
    assert float(rel.residual) <= 1e-3 * float(itd.max_norm(rel.value))


@pytest.mark.parametrize("norm", [itd.max_norm, itd.rms_norm, itd.two_norm])
def test_norms_are_reported_in_the_residual(norm):
    sol = itd.fixed_point(rotation, jnp.zeros(2), 1.0, norm=norm)
    expected = norm(rotation(sol.value, 1.0) - sol.value)
    np.testing.assert_allclose(sol.residual, expected, rtol=1e-12)


def test_norms_do_not_under_or_overflow():
    for scale in (1e-170, 1e170):
        v = {"a": jnp.asarray([3.0, 4.0]) * scale}
        np.testing.assert_allclose(itd.two_norm(v), 5 * scale, rtol=1e-14)
        np.testing.assert_allclose(itd.rms_norm(v), 5 * scale / np.sqrt(2), rtol=1e-14)


@pytest.mark.parametrize("wrap", [lambda f: f, jax.jit], ids=["eager", "jit"])
def test_norms_of_mixed_precision_trees_below_float32_range(wrap):
    """A float64 leaf sets a scale (1e-300) that float32 cannot hold: the float32 leaf (0 here)
    must not be divided by that scale in float32 (0/0 gave NaN; found by the conformance grid:
    reverse-mode Neumann/GMRES on a map with ρ = 1e-300)."""
    v = [jnp.zeros(2, jnp.float32), jnp.asarray([3e-300, 4e-300])]
    np.testing.assert_allclose(wrap(itd.two_norm)(v), 5e-300, rtol=1e-14)
    np.testing.assert_allclose(wrap(itd.rms_norm)(v), 5e-300 / 2, rtol=1e-14)
    w = [jnp.asarray([1e-30], jnp.float32), jnp.asarray([1e-300])]  # float32 leaf dominates
    np.testing.assert_allclose(wrap(itd.two_norm)(w), 1e-30, rtol=1e-6)


# has_aux


def F_aux(x, t):
    new = 0.5 * jnp.cos(x) + t
    return new, {"gap": jnp.max(jnp.abs(new - x)), "calls": jnp.asarray(1, jnp.int32)}


@pytest.mark.parametrize("mode", [itd.Implicit(), itd.Unrolled(), itd.OneStep()])
def test_has_aux_returns_aux_at_the_solution_and_differentiates(mode):
    def f(t):
        sol = itd.fixed_point(F_aux, jnp.zeros(3), t, has_aux=True, mode=mode)
        return jnp.sum(sol.value), sol.aux

    (value, aux), grad = jax.jit(jax.value_and_grad(f, has_aux=True))(0.3)
    assert float(aux["gap"]) < 1e-7 and aux["calls"].dtype == jnp.int32
    x = itd.fixed_point(lambda x, t: F_aux(x, t)[0], jnp.zeros(3), 0.3).value
    expected = jnp.sum(1 / (1 + 0.5 * jnp.sin(x)))
    # one-step is off by ≈ ‖A‖ here; unrolled derivatives converge a little slower than iterates
    rtol = {itd.OneStep: 0.6, itd.Unrolled: 1e-6}.get(type(mode), 1e-7)
    np.testing.assert_allclose(grad, expected, rtol=rtol)


def test_has_aux_under_vmap():
    sols = jax.vmap(lambda t: itd.fixed_point(F_aux, jnp.zeros(3), t, has_aux=True))(
        jnp.asarray([0.1, 0.2])
    )
    assert sols.aux["gap"].shape == (2,)


def test_has_aux_requires_a_pair():
    with pytest.raises(ValueError, match=r"pair \(x, aux\)"):
        itd.fixed_point(lambda x, t: x / 2, jnp.zeros(3), 1.0, has_aux=True)


def test_aux_forgotten_names_has_aux():
    with pytest.raises(ValueError, match="has_aux=True"):
        itd.fixed_point(F_aux, jnp.zeros(3), 1.0)


# Observers


def residual_trace(size):
    return itd.Trace(lambda k, x, fx: jnp.max(jnp.abs(fx - x)), size=size)


def test_trace_records_every_step_when_it_fits():
    sol = jax.jit(
        lambda t: itd.fixed_point(
            lambda x, t: 0.5 * x + t, jnp.zeros(2), t, observe={"r": residual_trace(64)}
        )
    )(1.0)
    record = sol.stats["r"]
    k = int(sol.steps)
    assert int(record["count"]) == k + 1
    np.testing.assert_array_equal(record["step"][: k + 1], np.arange(k + 1))
    # residual of x_k for x ← x/2 + 1 from 0: 2^{−k}
    np.testing.assert_allclose(record["value"][: k + 1], 0.5 ** np.arange(k + 1), rtol=1e-12)


def test_trace_thins_to_span_the_whole_run():
    sol = itd.fixed_point(
        lambda x, t: 0.95 * x + t, jnp.zeros(1), 1.0, observe={"r": residual_trace(8)}
    )
    record = sol.stats["r"]
    count = int(record["count"])
    steps = np.asarray(record["step"][:count])
    assert 4 <= count <= 8 and steps[0] == 0
    stride = steps[1] - steps[0]
    assert np.all(np.diff(steps) == stride) and stride & (stride - 1) == 0
    assert steps[-1] + stride > int(sol.steps)  # the last record is within one stride of the end
    np.testing.assert_allclose(record["value"][:count], 0.95**steps, rtol=1e-8)


def test_observers_under_vmap_and_grad():
    def f(t):
        sol = itd.fixed_point(
            lambda x, t: 0.5 * x + t, jnp.zeros(2), t, observe={"r": residual_trace(16)}
        )
        return jnp.sum(sol.value), sol.stats["r"]["count"]

    grads, counts = jax.vmap(jax.grad(f, has_aux=True))(jnp.asarray([1.0, 1e-3]))
    np.testing.assert_allclose(grads, 4.0, rtol=1e-10)  # x̄ = 2t in each of two entries
    assert counts[0] != counts[1]


class PowerIteration(itd.AbstractObserver):
    """‖∂ₓF(x_k)v‖ along the trajectory by one JVP per step (the shape of a trust diagnostic)."""

    def init(self, F, x0, fx0, theta):
        return jnp.ones_like(x0) / jnp.sqrt(x0.size), jnp.zeros(())

    def update(self, F, state, step, x, fx, theta):
        v, _ = state
        w = jax.jvp(lambda y: F(y, theta), (x,), (v,))[1]
        n = jnp.linalg.norm(w)
        return w / n, n

    def finish(self, state):
        return state[1]


def test_custom_observer_sees_the_map_with_closed_over_values():
    scale = jnp.asarray([0.3, 0.6])

    def G(x, t):
        return scale * jnp.tanh(x) + t

    sol = jax.jit(lambda t: itd.fixed_point(G, jnp.ones(2), t, observe={"rho": PowerIteration()}))(
        0.0
    )
    # x_k → x̄ = 0, where ∂ₓF = diag(scale): the power iteration ends at its top value 0.6
    np.testing.assert_allclose(sol.stats["rho"], 0.6, rtol=1e-5)


def test_solution_records_mode_and_solver():
    mode, solver = itd.Unrolled(), itd.Anderson(history=3)
    sol = jax.jit(
        lambda t: itd.fixed_point(F_aux, jnp.zeros(3), t, has_aux=True, mode=mode, solver=solver)
    )(0.1)
    assert sol.mode == mode and sol.solver == solver
    assert sol.stats == {}
