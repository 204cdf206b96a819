"""Test configuration, set once before any test runs: float64 everywhere, and strict dtype
promotion (as optimistix's test suite uses), so that no implicit int32/int64 or
float32/float64 promotion can creep into the library unnoticed."""

import os

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")

# A persistent compilation cache: the suite is compile-bound, and its programs repeat across
# test modules, xdist workers and runs (ITERDIFF_JAX_CACHE= empty turns it off).
_CACHE = os.environ.get("ITERDIFF_JAX_CACHE", os.path.expanduser("~/.cache/iterdiff/jax"))
if _CACHE:
    jax.config.update("jax_compilation_cache_dir", _CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

# Generative tests (hypothesis): a fixed seed and a small budget by default, so that CI runs the
# same examples on every machine in a few minutes; `ITERDIFF_HYPOTHESIS=thorough` runs 500
# examples per property (the profile run before resolving a conformance issue).
from hypothesis import HealthCheck, settings  # noqa: E402

_QUIET = dict(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("ci", max_examples=8, **_QUIET)
settings.register_profile("thorough", max_examples=500, **_QUIET)
settings.load_profile(os.environ.get("ITERDIFF_HYPOTHESIS", "ci"))

# Every compiled XLA executable keeps ~3 memory mappings of its machine code for as long as
# JAX's in-memory caches hold it. A test worker that compiles tens of thousands of programs (the
# generative conformance suite does) reaches the kernel's vm.max_map_count (65530 by default);
# LLVM's JIT then cannot map the next program and the process aborts inside
# `backend_compile_and_load` ("Fatal Python error: Aborted", no Python traceback). So after each
# test, and after each example of a generative test, JAX's caches are dropped once the process
# holds more than a third of that many mappings (suite_hygiene.py).
import functools  # noqa: E402

import pytest  # noqa: E402

from suite_hygiene import release_compiled_programs  # noqa: E402


@pytest.fixture(autouse=True)
def _release_compiled_programs():
    yield
    release_compiled_programs()


def _releasing(inner):
    @functools.wraps(inner)
    def run_example(*args, **kwargs):
        try:
            return inner(*args, **kwargs)
        finally:
            release_compiled_programs()

    run_example._releases = True
    return run_example


def pytest_collection_modifyitems(items):
    """Wrap each hypothesis test's per-example body (``.hypothesis.inner_test``, the hook
    hypothesis documents for plugins) so that one generative test cannot exhaust the
    mappings either."""
    for item in items:
        handle = getattr(getattr(item, "obj", None), "hypothesis", None)
        if handle is not None and not getattr(handle.inner_test, "_releases", False):
            handle.inner_test = _releasing(handle.inner_test)
