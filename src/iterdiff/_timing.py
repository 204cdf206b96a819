"""Wall-clock timing of compiled JAX functions (used by the demo and the benchmarks)."""

import time

import jax
import numpy as np


def median_time(fn, *args, repeats: int = 5) -> float:
    """Median seconds of ``fn(*args)`` over ``repeats`` runs, after one warm-up (compile) run."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))
