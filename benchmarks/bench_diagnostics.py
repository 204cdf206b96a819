"""Cost of the diagnostics on ridge gradient descent (n = 200): the observers per step, relative
to the plain Picard loop they ride on, and the one-off checks relative to one solve.

    PYTHONPATH=src python benchmarks/bench_diagnostics.py

The observers are driven by the same scan with and without them (K = 300 steps), so the ratio
is their per-step overhead; with no observer the loop is unchanged (nothing is added)."""

import time

import jax
import jax.numpy as jnp
import numpy as np

import iterdiff as itd
from iterdiff import diagnostics as dg

jax.config.update("jax_enable_x64", True)


def best_of(fn, repeat=5):
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def main(n=200, K=300):
    rng = np.random.default_rng(0)
    A = jnp.asarray(rng.normal(size=(300, n)))
    y = jnp.asarray(rng.normal(size=300))
    H = A.T @ A
    step = 1.0 / (jnp.linalg.eigvalsh(H).max() + 50.0)
    theta = jnp.asarray(50.0)

    def F(x, theta):
        return x - step * (H @ x - A.T @ y + theta * x)

    def loop(observer):
        @jax.jit
        def go(theta):
            x0 = jnp.zeros(n)
            state = None if observer is None else observer.init(F, x0, F(x0, theta), theta)

            def body(carry, k):
                x, state = carry
                x = F(x, theta)
                if observer is not None:
                    state = observer.update(F, state, k, x, F(x, theta), theta)
                return (x, state), None

            ks = jnp.arange(1, K + 1, dtype=jnp.int32)
            (x, state), _ = jax.lax.scan(body, (x0, state), ks)
            return x if observer is None else (x, observer.finish(state))

        return lambda: go(theta)

    plain = best_of(loop(None))
    print(f"Picard loop, {K} steps, n = {n}: {plain * 1e3:.2f} ms")
    for name, obs in [
        ("DerivativeTrace", dg.DerivativeTrace()),
        ("ContractionTrace", dg.ContractionTrace()),
    ]:
        t = best_of(loop(obs))
        print(f"  with {name}: {t * 1e3:.2f} ms  ({t / plain:.2f}x)")
    solve = jax.jit(lambda t: itd.fixed_point(F, jnp.zeros(n), t, max_steps=2000))
    t_solve = best_of(lambda: solve(theta).value)
    sol = solve(theta)
    print(f"fixed_point solve ({int(sol.steps)} steps): {t_solve * 1e3:.2f} ms")
    for name, fn in [
        ("contraction", lambda: dg.contraction(F, sol.value, theta)),
        ("error_estimates", lambda: dg.error_estimates(sol, F, theta, warn=False)),
    ]:
        fn()
        start = time.perf_counter()
        fn()
        t = time.perf_counter() - start
        print(f"  {name} (eager, second call): {t * 1e3:.0f} ms  ({t / t_solve:.0f}x the solve)")
    # issue 8's target: check_gradients on a user map with n ≤ 200 in under 10 s (first call,
    # compilation included; CPU time of this process and wall time)
    cpu, wall = time.process_time(), time.perf_counter()
    dg.check_gradients(F, jnp.zeros(n), theta, max_steps=2000)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        f"check_gradients, first call (n = {n}): {cpu:.1f} s CPU, {wall:.1f} s wall (target < 10 s)"
    )


if __name__ == "__main__":
    main()
