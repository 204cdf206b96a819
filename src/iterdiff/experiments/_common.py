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


class Timing:
    """Repeated measurements of one time (or time ratio): their median and spread.

    On a shared machine a single timing can be off by a factor of two; the claims use the
    median of ``repeats`` measurements and the report shows the range (min–max).
    """

    def __init__(self, samples):
        self.samples = np.asarray(samples, dtype=float)

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def low(self) -> float:
        return float(np.min(self.samples))

    @property
    def high(self) -> float:
        return float(np.max(self.samples))

    def text(self, digits: int = 2) -> str:
        """E.g. "1.31 (1.27–1.40)": the median, then the range over the repeats."""
        f = f".{digits}f"
        return f"{self.median:{f}} ({self.low:{f}}–{self.high:{f}})"

    def __float__(self) -> float:
        return self.median

    def __repr__(self) -> str:
        return f"Timing(median={self.median:.4g}, range={self.low:.4g}–{self.high:.4g}, n={self.samples.size})"


def _calls_per_batch(fn, args, batch_seconds: float) -> int:
    jax.block_until_ready(fn(*args))  # compile
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    once = max(time.perf_counter() - start, 1e-6)
    return max(1, min(1000, int(batch_seconds / once)))


def _batch(fn, args, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls


def call_times(fn, *args, repeats: int = 5, batch_seconds: float = 0.03) -> Timing:
    """Seconds per call of ``fn(*args)``, once per repeat: each repeat is a batch of calls
    lasting about ``batch_seconds`` (sub-millisecond calls are otherwise all noise); the first
    call (compilation) is not timed."""
    calls = _calls_per_batch(fn, args, batch_seconds)
    return Timing([_batch(fn, args, calls) for _ in range(repeats)])


def paired_ratios(fn, reference, *args, repeats: int = 5, batch_seconds: float = 0.02) -> Timing:
    """time(fn)/time(reference), once per repeat, from a batch of each run back to back (so
    that both see the same load; which one goes first alternates); compiled beforehand."""
    jax.block_until_ready(fn(*args))
    calls = _calls_per_batch(reference, args, batch_seconds)
    ratios = []
    for i in range(repeats):
        if i % 2:
            ref = _batch(reference, args, calls)
            ratios.append(_batch(fn, args, calls) / ref)
        else:
            ratios.append(_batch(fn, args, calls) / _batch(reference, args, calls))
    return Timing(ratios)
