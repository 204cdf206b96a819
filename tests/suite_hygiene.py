"""Keep a long-lived test process within the kernel's memory-mapping limit.

Each compiled XLA executable holds ~3 mappings of machine code until JAX's in-memory caches drop
it; past vm.max_map_count (65530 by default) LLVM's JIT cannot map the next program and the
process aborts in `backend_compile_and_load`. `release_compiled_programs` drops the caches once
a third of the limit is used (the on-disk compilation cache stays: recompiling is cheap).
"""

import gc

import jax


def _map_limit() -> int | None:
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


MAP_LIMIT = _map_limit()


def mapping_count() -> int:
    """The number of memory mappings of this process (0 where /proc is unavailable)."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def release_compiled_programs(fraction: float = 1 / 3) -> bool:
    """Drop JAX's in-memory caches if this process uses more than ``fraction`` of the mapping
    limit; True if it did."""
    if not MAP_LIMIT or mapping_count() <= MAP_LIMIT * fraction:
        return False
    jax.clear_caches()
    gc.collect()
    return True
