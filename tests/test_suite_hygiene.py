"""The test suite's guard against the kernel's mapping limit (suite_hygiene.py) rests on two
facts about JAX on CPU: compiled programs hold memory mappings, and `jax.clear_caches` returns
them. If either stops holding, the guard is void and long runs abort again."""

import jax
import jax.numpy as jnp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from suite_hygiene import MAP_LIMIT, mapping_count, release_compiled_programs

pytestmark = pytest.mark.skipif(
    not MAP_LIMIT or mapping_count() == 0, reason="needs Linux /proc (mapping counts)"
)


def _compile(count: int) -> list:
    programs = []
    for i in range(count):
        f = jax.jit(lambda x, i=i: jnp.sin(x) * i + jnp.cos(x) ** 2)
        f(jnp.ones(3)).block_until_ready()
        programs.append(f)
    return programs


def test_compiled_programs_hold_mappings_until_caches_are_cleared():
    jax.clear_caches()
    before = mapping_count()
    programs = _compile(60)
    held = mapping_count()
    assert held - before >= 60, (before, held)  # ≥ 1 mapping per program (about 3 in practice)
    del programs
    assert release_compiled_programs(fraction=0.0)
    left = mapping_count()
    assert left - before <= (held - before) / 2, (before, held, left)  # most are returned


def test_release_is_a_no_op_below_the_threshold():
    assert not release_compiled_programs(fraction=1.0)


@given(st.integers(0, 3))
def test_each_generative_example_runs_under_the_release(_):
    """conftest.py wraps every hypothesis test's per-example body (`inner_test`), so that one
    generative test compiling thousands of programs stays within the limit too."""
    body = test_each_generative_example_runs_under_the_release.hypothesis.inner_test
    assert getattr(body, "_releases", False)
