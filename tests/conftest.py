"""Test configuration: float64 everywhere, set once before any test runs."""

import jax

jax.config.update("jax_enable_x64", True)
