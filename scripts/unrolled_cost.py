"""Cost of Unrolled reverse mode and OneStep relative to the forward solve, and XLA temp memory.

Usage: PYTHONPATH=src python scripts/unrolled_cost.py [--quick]
Prints, per problem: K, time(grad)/time(forward solve) as the median of paired interleaved
ratios (iterdiff._timing.paired_ratio), and the XLA temp memory of the compiled gradient at
max_steps = 1000 and 100 000. All at fixed_point's defaults (tol 1e-8 in float64).
"""

import sys

import jax

jax.config.update("jax_enable_x64", True)

from benchmarks import problems  # noqa: E402

import iterdiff as itd  # noqa: E402
from iterdiff._timing import paired_ratio  # noqa: E402


def loss_of(p, mode, max_steps):
    def loss(theta):
        sol = itd.fixed_point(p.F, p.x0, theta, mode=mode, max_steps=max_steps)
        return p.outer(p.readout(sol.value, theta), theta)

    return loss


def temp_mib(fn, theta):
    return jax.jit(fn).lower(theta).compile().memory_analysis().temp_size_in_bytes / 2**20


def main(quick: bool):
    if quick:
        cases = [problems.ridge(40, 20), problems.entropic_ot(30)]
    else:
        cases = [
            problems.ridge(200, 100),
            problems.lasso(1000, 3000, 50),
            problems.entropic_ot(100),
            problems.entropic_ot(500),
        ]
    for p in cases:
        forward = jax.jit(loss_of(p, itd.Unrolled(), 1000))
        reverse = jax.jit(jax.grad(loss_of(p, itd.Unrolled(), 1000)))
        steps = int(itd.fixed_point(p.F, p.x0, p.theta).steps)
        ratio = paired_ratio(reverse, forward, p.theta)
        mem = [temp_mib(jax.grad(loss_of(p, itd.Unrolled(), m)), p.theta) for m in (1000, 100_000)]
        print(
            f"{p.name:18s} K={steps:5d}  unrolled reverse/forward {ratio:5.2f}  "
            f"temp MiB max_steps=1e3: {mem[0]:8.2f}  1e5: {mem[1]:8.2f}",
            flush=True,
        )
    for p in (
        [problems.logistic_newton(40, 5)]
        if quick
        else [
            problems.logistic_newton(500, 50),
            problems.logistic_newton(2000, 100),
        ]
    ):
        forward = jax.jit(loss_of(p, itd.OneStep(), 100))
        reverse = jax.jit(jax.grad(loss_of(p, itd.OneStep(), 100)))
        steps = int(itd.fixed_point(p.F, p.x0, p.theta, max_steps=100).steps)
        ratio = paired_ratio(reverse, forward, p.theta, repeats=21)
        print(f"{p.name:18s} K={steps:5d}  one-step reverse/forward {ratio:5.3f}", flush=True)


if __name__ == "__main__":
    main("--quick" in sys.argv)
