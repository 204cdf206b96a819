"""Test configuration, set once before any test runs: float64 everywhere, and strict dtype
promotion (as optimistix's test suite uses), so that no implicit int32/int64 or
float32/float64 promotion can creep into the library unnoticed."""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
