"""Wall-clock timing of compiled JAX functions (used by the demo and the benchmarks)."""

import time

import jax
import numpy as np


def median_time(fn, *args, repeats: int = 5) -> float:
    """Median seconds of ``fn(*args)`` over ``repeats`` runs, after one warm-up (compile) run.

    Arguments:
        fn: a (compiled) JAX function; its outputs are waited for (`jax.block_until_ready`).
        args: its arguments.
        repeats: timed runs.

    Returns:
        the median time in seconds.
    """
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def paired_ratio(fn, reference, *args, repeats: int = 11) -> float:
    """Median over ``repeats`` of time(fn)/time(reference), the two run back to back each time.

    Interleaving makes the ratio robust to the machine's drift (other processes, frequency
    scaling), which moves sequential medians by tens of percent on a shared 2-core machine.

    Arguments:
        fn, reference: (compiled) JAX functions of the same arguments.
        args: their arguments.
        repeats: timed pairs.

    Returns:
        the median of the per-pair ratios time(fn)/time(reference).
    """
    jax.block_until_ready(fn(*args))
    jax.block_until_ready(reference(*args))
    ratios = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        middle = time.perf_counter()
        jax.block_until_ready(reference(*args))
        ratios.append((middle - start) / (time.perf_counter() - middle))
    return float(np.median(ratios))
