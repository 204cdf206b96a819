"""Unrolled mode differentiates exactly the iterations that ran, with O(√K) memory.

The reference is plain JAX autodiff through an explicit `fori_loop` of the same K solver
updates, which is exact for the unrolled program (and affordable at these sizes).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
import zoo

RIDGE = zoo.ridge()


def explicit(F, solver, K):
    """x0, θ ↦ x_K by K solver updates, differentiated by plain JAX."""

    def run(x0, theta):
        fx = F(x0, theta)
        state = solver.init(x0, fx)

        def body(_, carry):
            x, fx, state = carry
            x, state = solver.step(x, fx, state)
            return x, F(x, theta), state

        return jax.lax.fori_loop(0, K, body, (x0, fx, state))[0]

    return run


def unrolled(F, solver, max_steps, tol=1e-300, checkpoints=None):
    def run(x0, theta):
        sol = itd.fixed_point(
            F,
            x0,
            theta,
            mode=itd.Unrolled(checkpoints=checkpoints),
            solver=solver,
            max_steps=max_steps,
            tol=tol,
            throw=False,
        )
        return sol.value

    return run


SOLVERS = {
    "picard": itd.Picard(),
    "damped": itd.Picard(damping=0.6),
    "anderson": itd.Anderson(history=3),
}
# Every store layout with Picard: every iterate stored (K ≤ S), thinned once with the pieces
# recomputed directly, thinned with a second level of thinning, S = 2, K = S, K = S + 1; the
# other solvers on two layouts each, since they only change the step being differentiated.
SWEEPS = (
    [("picard", k, None) for k in (1, 2, 7)]
    + [("picard", 50, 4), ("picard", 17, 16), ("picard", 16, 16), ("picard", 7, 2)]
    + [(name, 16, None) for name in ("damped", "anderson")]
    + [("damped", 30, 4), ("anderson", 23, 4)]
)


@pytest.mark.parametrize("solver_name, max_steps, checkpoints", SWEEPS)
def test_reverse_equals_autodiff_of_the_loop(solver_name, max_steps, checkpoints):
    """K = max_steps (tol unreachable), for each layout of the stored iterates."""
    solver = SOLVERS[solver_name]
    f = unrolled(RIDGE.F, solver, max_steps, checkpoints=checkpoints)
    g = explicit(RIDGE.F, solver, max_steps)
    x0 = jnp.linspace(-1.0, 1.0, RIDGE.x0.size)
    got = jax.jit(jax.jacrev(f, argnums=(0, 1)))(x0, RIDGE.theta)
    want = jax.jacfwd(g, argnums=(0, 1))(x0, RIDGE.theta)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_forward_equals_autodiff_of_the_loop_with_tol_stopping():
    f = unrolled(RIDGE.F, itd.Anderson(), 1000, tol=1e-9)
    sol = itd.fixed_point(RIDGE.F, RIDGE.x0, RIDGE.theta, solver=itd.Anderson(), tol=1e-9)
    K = int(sol.steps)
    assert 3 < K < 1000
    g = explicit(RIDGE.F, itd.Anderson(), K)
    got = jax.jit(jax.jacfwd(f, argnums=(0, 1)))(RIDGE.x0, RIDGE.theta)
    want = jax.jacfwd(g, argnums=(0, 1))(RIDGE.x0, RIDGE.theta)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_zero_steps_when_x0_is_already_the_fixed_point():
    x_bar = RIDGE.exact(RIDGE.theta)
    f = unrolled(RIDGE.F, itd.Picard(), 100, tol=1e-8)
    sol = itd.fixed_point(RIDGE.F, x_bar, RIDGE.theta, mode=itd.Unrolled(), tol=1e-8)
    assert int(sol.steps) == 0
    jx, jt = jax.jacrev(f, argnums=(0, 1))(x_bar, RIDGE.theta)
    np.testing.assert_allclose(jx, jnp.eye(x_bar.size), atol=0)
    np.testing.assert_allclose(jt, 0.0, atol=0)


def test_vmap_with_different_step_counts():
    thetas = jnp.asarray([0.05, 0.7, 5.0])
    f = unrolled(RIDGE.F, itd.Picard(), 2000, tol=1e-10)
    steps = jax.vmap(
        lambda t: itd.fixed_point(RIDGE.F, RIDGE.x0, t, mode=itd.Unrolled(), tol=1e-10).steps
    )(thetas)
    assert len(set(np.asarray(steps).tolist())) == 3
    got = jax.jit(jax.vmap(jax.grad(lambda t: f(RIDGE.x0, t).sum())))(thetas)
    for t, k, g in zip(thetas, steps, got, strict=True):
        loop = explicit(RIDGE.F, itd.Picard(), int(k))
        want = jax.grad(lambda t, loop=loop: loop(RIDGE.x0, t).sum())(t)
        np.testing.assert_allclose(g, want, rtol=1e-10)


def test_reverse_memory_does_not_grow_with_max_steps():
    """XLA temp memory of the compiled gradient. The state (n = 3000) makes the stored iterates
    dominate; the 16 MiB budget gives a store of S = 256 rows (x and F(x)). At max_steps = 256
    every iterate fits; at 4 096 the store is thinned four times, in place (a copy of the store
    would double the memory); at 100 000 the recomputed stretches take two levels of buffers,
    and the memory is still bounded."""
    rng = np.random.default_rng(0)
    n = 3000
    d = jnp.asarray(rng.uniform(0.1, 0.9, size=n))
    b = jnp.asarray(rng.normal(size=n))

    def F(x, theta):
        return d * x + theta * jnp.tanh(x) * 0.05 + b

    def temp_bytes(max_steps):
        f = unrolled(F, itd.Picard(), max_steps, tol=1e-10)
        grad = jax.grad(lambda t: jnp.sum(f(jnp.zeros(n), t) ** 2))
        return jax.jit(grad).lower(jnp.asarray(0.5)).compile().memory_analysis().temp_size_in_bytes

    fits, thinned, long = temp_bytes(256), temp_bytes(4096), temp_bytes(100_000)
    assert fits > 200 * n * 8  # the stored iterates are counted
    assert thinned <= 1.2 * fits
    assert long <= 2.5 * fits


def test_unrolled_converges_to_implicit_and_implicit_ignores_x0():
    x0 = jnp.ones(RIDGE.x0.size)

    def solve(mode):
        return lambda x0, t: itd.fixed_point(RIDGE.F, x0, t, mode=mode, tol=1e-12).value

    ju_x0, ju_t = jax.jacrev(solve(itd.Unrolled()), argnums=(0, 1))(x0, RIDGE.theta)
    ji_x0, ji_t = jax.jacrev(solve(itd.Implicit()), argnums=(0, 1))(x0, RIDGE.theta)
    np.testing.assert_allclose(ju_t, ji_t, atol=1e-9)  # unrolled error ~ Kρ^K ‖J‖
    np.testing.assert_allclose(ji_x0, 0.0, atol=0)
    assert float(jnp.max(jnp.abs(ju_x0))) < 1e-10  # A^K → 0 for a contraction


@pytest.mark.parametrize("slots", [2, 4, 8, 16])
def test_thinning_keeps_every_checkpoint_in_its_rotated_row(slots):
    """Simulate the store with the naive rule (when full, drop the odd checkpoints and compact)
    and check `checkpoint_row` finds every kept checkpoint where the in-place store wrote it."""
    from iterdiff._loop import checkpoint_row

    naive = []  # steps of the checkpoints, in order
    rows = [None] * slots  # what the in-place store holds
    interval, count = 1, 0
    for step in range(0, 40 * slots, 1):
        if step % interval:
            continue
        if count == slots:
            naive = naive[::2]
            count, interval = slots // 2, 2 * interval
            if step % interval:
                continue
        rows[int(checkpoint_row(count, interval, slots))] = step
        naive.append(step)
        count += 1
        for j, kept in enumerate(naive):
            assert rows[int(checkpoint_row(j, interval, slots))] == kept
    assert interval >= 16


def test_reverse_sweep_recomputes_the_forward_iterates_bit_for_bit():
    """The sweep differentiates each step at the forward loop's own iterate: stored ones are
    copies, and the ones it recomputes when the store was thinned (the buffer of a stretch,
    and the checkpoints of a stretch thinned again) must be equal to the last bit, solver
    state included (Anderson amplifies any rounding difference). Checked within one compiled
    program, as under `jax.jit(jax.grad(...))`, against a `Trace` of the forward iterates."""
    from iterdiff._modes._unrolled import _program_of, _Replay
    from iterdiff.internal import Layout, Live, Rule, SolveContext

    case = zoo.sinkhorn()
    steps = 23
    layout = Layout.of(steps, 4)  # 4 rows: thinned twice, stored iterates 8 steps apart
    trace = itd.Trace(lambda k, x, fx: x, size=32)
    problem = SolveContext(
        lambda x, params: (case.F(x, params[0]), None),
        itd.Anderson(history=3),
        Rule(steps, 0.0, 0.0, itd.max_norm),
        False,
        {"x": trace},
    )
    sel = Live((False,), (True,))

    @jax.jit
    def forward_and_replays(x0, C):
        params = (C, [])
        carry, ck = problem.replace(x0=x0, params=params).run_checkpointed(layout)
        replay = _Replay(_program_of(problem), params, sel, sel.pick(x0, params))

        def from_row(j):
            it = ck.get(j)
            n = jnp.minimum(ck.interval, steps - j * ck.interval)
            sub = replay.checkpoints(it, n, 2)  # a stretch thinned again into 2 rows
            return replay.record(it, n, 8).x, sub.store.x[:, :], sub.interval

        rows = jnp.arange(layout.slots, dtype=jnp.int32)
        forward = trace.finish(carry.observed["x"])
        return carry, ck, forward, jax.lax.map(from_row, rows)

    carry, ck, forward, (records, subs, sub_interval) = forward_and_replays(case.x0, case.theta)
    assert layout.buffers == (4, 2)
    assert int(carry.steps) == steps and int(ck.count) == 3 and int(ck.interval) == 8
    xs = np.asarray(forward["value"])[: steps + 1]  # x_0 … x_K, as the forward loop made them
    assert int(forward["count"]) == steps + 1
    for j in range(3):
        n = min(8, steps - 8 * j)
        np.testing.assert_array_equal(np.asarray(ck.get(j).x), xs[8 * j])
        np.testing.assert_array_equal(np.asarray(records[j, :n]), xs[8 * j : 8 * j + n])
        i = int(sub_interval[j])
        np.testing.assert_array_equal(np.asarray(subs[j, :2]), xs[8 * j : 8 * j + 2 * i : i])
