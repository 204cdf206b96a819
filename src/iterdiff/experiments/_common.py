"""Small helpers shared by the experiments: float64 check, figures, timing, rate comparisons."""

from __future__ import annotations

import math
import time

import jax
import numpy as np


def require_float64() -> None:
    """Raise a clear error unless JAX computes in float64 (every experiment needs it)."""
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError(
            "the experiments run in float64: call jax.config.update('jax_enable_x64', True) "
            "before running them (the `iterdiff` command does this)."
        )


def figure(ncols: int, nrows: int = 1, width: float = 4.2, height: float = 3.3):
    """A matplotlib Figure and its axes (Agg canvas, no pyplot state, nothing shown)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def exponent_gap(fitted: float, predicted: float) -> float:
    """|log q / log ρ − 1|: the relative difference of two linear rates' exponents.

    Two rates q and ρ are compared by the number of steps they need per decade,
    −1/log₁₀ q, which is what a log-error plot shows (0.95 vs 0.96 differ by 20 % here).
    """
    if not (0 < fitted < 1 and 0 < predicted < 1):
        return math.inf
    return abs(math.log(fitted) / math.log(predicted) - 1.0)


def sci(value: float, digits: int = 2) -> str:
    """A number in short scientific notation, e.g. 1.2e-11."""
    if value is None or not np.isfinite(value):
        return str(value)
    return f"{value:.{digits - 1}e}"


def paired_ratio(fn, reference, *args, repeats: int = 5, batch_seconds: float = 0.02) -> float:
    """time(fn)/time(reference): the fastest of ``repeats`` batches of each, batches interleaved.

    A batch runs the function enough times to last about ``batch_seconds``, and the minimum over
    batches is kept (as `timeit` advises): on a shared machine, preemption only ever adds time,
    and sub-millisecond calls are otherwise dominated by it. Both are called once first
    (compilation).
    """
    jax.block_until_ready(fn(*args))
    jax.block_until_ready(reference(*args))
    start = time.perf_counter()
    jax.block_until_ready(reference(*args))
    once = max(time.perf_counter() - start, 1e-6)
    calls = max(1, min(1000, int(batch_seconds / once)))

    def batch(f):
        start = time.perf_counter()
        for _ in range(calls):
            out = f(*args)
        jax.block_until_ready(out)
        return time.perf_counter() - start

    best_fn, best_ref = float("inf"), float("inf")
    for _ in range(repeats):
        best_fn = min(best_fn, batch(fn))
        best_ref = min(best_ref, batch(reference))
    return best_fn / best_ref
