"""Measure one method on one problem: times, ratio, compile time, errors, memory.

All timings use the compiled executables (`jax.jit(...).lower(...).compile()`, compiled once),
medians of interleaved pairs from `iterdiff.internal`; read ratios, not milliseconds.
"""

import dataclasses
import os
import threading
import time

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

import iterdiff as itd
from iterdiff.internal import median_time, paired_ratio


def iterdiff_forward(problem, tol):
    """iterdiff's forward solve at its default settings (θ ↦ x̄), for the loop-overhead ratio."""

    def solve(theta):
        sol = itd.fixed_point(problem.F, problem.x0, theta, tol=tol, max_steps=problem.max_steps)
        return problem.readout(sol.value, theta)

    return solve


def compile_stats(fn, *args):
    """(compiled executable, seconds to lower and compile, XLA temp bytes or NaN)."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    seconds = time.perf_counter() - start
    try:
        temp = float(compiled.memory_analysis().temp_size_in_bytes)
    except Exception:  # memory_analysis is backend-dependent
        temp = float("nan")
    return compiled, seconds, temp


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every ``interval`` seconds by a
    thread while the block runs (Linux /proc; NaN elsewhere)."""

    def __init__(self, interval=0.002):
        self.interval, self.peak = interval, float("nan")

    def __enter__(self):
        try:
            self.base = _rss_bytes()
        except OSError:
            return self
        self.peak, self._stop = 0.0, threading.Event()

        def sample():
            while not self._stop.is_set():
                self.peak = max(self.peak, float(_rss_bytes() - self.base))
                time.sleep(self.interval)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if hasattr(self, "_thread"):
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, float(_rss_bytes() - self.base))


def relative_error(got, want):
    """‖got − want‖₂ / ‖want‖₂ over all leaves."""
    got, want = ravel_pytree(got)[0], ravel_pytree(want)[0]
    return float(jnp.linalg.norm(got - want) / jnp.linalg.norm(want))


@dataclasses.dataclass
class Row:
    """One line of a results table (NaN where a quantity does not apply)."""

    problem: str
    method: str
    steps: int = -1
    forward_ms: float = float("nan")
    ratio: float = float("nan")  # (solve + gradient) / solve, interleaved
    compile_s: float = float("nan")  # lower + compile solve + gradient
    gradient_error: float = float("nan")
    forward_error: float = float("nan")
    temp_mib: float = float("nan")  # XLA temp of the compiled solve + gradient
    rss_mib: float = float("nan")  # peak RSS above the baseline during one solve + gradient
    note: str = ""


def options(args):
    """The keyword arguments of `measure` from the command line's options."""
    return dict(
        repeats=args.repeats,
        time_budget_s=args.budget,
        memory_limit_bytes=args.memory_limit_gib * 2**30,
    )


def measure(problem, method, *, repeats, time_budget_s, memory_limit_bytes):
    """Measure ``method`` (see `benchmarks.methods`) on ``problem``; returns a `Row`."""
    solve, loss = method.make(problem)
    theta = problem.theta
    row = Row(problem.name, method.name)
    solve_c, _, _ = compile_stats(solve, theta)
    x, steps = solve_c(theta)
    row.steps, row.forward_error = int(steps), relative_error(x, problem.x_ref)
    if loss is None:  # forward only: ratio = time(iterdiff's forward) / time(this), paired
        row.forward_ms = 1e3 * median_time(solve_c, theta, repeats=repeats)
        ours, _, _ = compile_stats(iterdiff_forward(problem, method.tol), theta)
        row.ratio = paired_ratio(ours, solve_c, theta, repeats=repeats)
        row.note = "ratio: iterdiff forward / this (paired)"
        return row
    grad_c, row.compile_s, temp = compile_stats(jax.value_and_grad(loss), theta)
    row.temp_mib = temp / 2**20
    if temp > memory_limit_bytes:
        row.note = f"does not fit: XLA temp {temp / 2**30:.1f} GiB"
        return row
    with PeakRSS() as rss:
        _, grad = jax.block_until_ready(grad_c(theta))
    row.rss_mib = rss.peak / 2**20
    row.gradient_error = relative_error(grad, problem.reference)
    start = time.perf_counter()
    jax.block_until_ready(grad_c(theta))
    one_pair = 2 * (time.perf_counter() - start)
    n = max(3, min(repeats, int(time_budget_s / max(one_pair, 1e-9))))
    row.forward_ms = 1e3 * median_time(solve_c, theta, repeats=n)
    row.ratio = paired_ratio(grad_c, solve_c, theta, repeats=n)
    return row
