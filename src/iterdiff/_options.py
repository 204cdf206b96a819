"""Validation of configuration options (mode, solver, linear solver and `fixed_point` options).

One rule for every option, so that the same kind of value is accepted everywhere: integers may
be Python or NumPy integers but not bools; numbers may be Python or NumPy reals but not bools or
strings, and must be finite. Each failure names the owner, the option and the allowed range.
"""

import math
import numbers

import numpy as np

INT32_MAX = 2**31 - 1  # step counters are int32 (they live inside jit)


def check_int(owner: str, name: str, value, *, low: int = 1, high: int = INT32_MAX) -> int:
    """An integer in [low, high]; returns it as a Python int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{owner}({name}={value!r}): {name} must be an int, got {type(value).__name__}."
        )
    value = int(value)
    if not low <= value <= high:
        raise ValueError(f"{owner}({name}={value!r}): {name} must be an int in [{low}, {high}].")
    return value


def check_number(
    owner: str,
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    closed_low: bool = False,
    closed_high: bool = False,
    hint: str = "",
) -> float:
    """A finite real number in the interval (brackets per ``closed_*``); returns a float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{owner}({name}={value!r}): {name} must be a real number, got "
            f"{type(value).__name__}.{hint}"
        )
    value = float(value)
    too_low = low is not None and (value < low if closed_low else not value > low)
    too_high = high is not None and (value > high if closed_high else not value < high)
    if not math.isfinite(value) or too_low or too_high:
        left = "[" if closed_low else "("
        right = "]" if closed_high else ")"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ValueError(
            f"{owner}({name}={value!r}): {name} must be a finite number in {left}{lo}, {hi}{right}."
            f"{hint}"
        )
    return value
