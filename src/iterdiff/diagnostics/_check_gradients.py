"""`check_gradients`: every mode and central finite differences side by side on a user's map."""

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._fixed_point import fixed_point
from .._modes import Implicit, OneStep, Truncated, Unrolled
from .._options import check_int, check_number
from . import _flat
from ._estimates import error_estimates
from ._krylov import golub_kahan


class GradientRow(NamedTuple):
    """One line of the table: a mode (or finite differences) and what it gave.

    Attributes:
        name: the mode's name, or ``"finite differences"``.
        value: the directional derivative it gave (flattened).
        estimated_error: its estimated error (`error_estimates`).
        seconds: the time of one derivative, once compiled.
    """

    name: str
    value: np.ndarray  # the directional derivative of the readout, flat
    estimated_error: float  # absolute, Euclidean; NaN when unknown
    seconds: float  # wall time of one derivative evaluation (compiled)


class GradientCheck(NamedTuple):
    """The result of `check_gradients`; ``str()`` gives the table.

    Attributes:
        rows: one `GradientRow` per mode and one for finite differences.
        contraction: the `Contraction` of ∂ₓF at the solution.
    """

    rows: tuple
    contraction: Any  # the Contraction of ∂ₓF at the solution

    def difference(self, a: str, b: str) -> float:
        """‖value_a − value_b‖ / max(‖value_b‖, tiny), by row names."""
        va, vb = self.row(a).value, self.row(b).value
        return float(np.linalg.norm(va - vb) / max(np.linalg.norm(vb), 1e-300))

    def row(self, name: str) -> GradientRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no row {name!r}; rows are {[r.name for r in self.rows]}")

    def __str__(self) -> str:
        names = [r.name for r in self.rows]
        head = ["mode", "‖value‖", "est. error"] + [f"vs {n}" for n in names] + ["time (s)"]
        lines = []
        for r in self.rows:
            cells = [r.name, f"{np.linalg.norm(r.value):.6e}", f"{r.estimated_error:.1e}"]
            cells += ["—" if n == r.name else f"{self.difference(r.name, n):.1e}" for n in names]
            cells.append(f"{r.seconds:.3f}")
            lines.append(cells)
        widths = [max(len(c[i]) for c in [head] + lines) for i in range(len(head))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [fmt.format(*head), fmt.format(*["-" * w for w in widths])]
        out += [fmt.format(*c) for c in lines]
        c = self.contraction
        out.append(
            f"‖∂ₓF‖ = {c.operator_norm:.4g}, ρ(∂ₓF) = {c.spectral_radius:.4g}, "
            f"cond(I − ∂ₓF) = {c.condition:.3g}" + (", singular (gauge)" if c.singular else "")
        )
        out.append("errors: absolute, Euclidean, along one direction θ̇; 'vs X' relative to X.")
        return "\n".join(out)


def check_gradients(
    F: Callable,
    x0,
    theta,
    *,
    readout: Callable | None = None,
    direction: Any = None,
    modes: tuple | None = None,
    max_steps: int = 1000,
    fd_step: float | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> GradientCheck:
    """Differentiate ``x̄(θ)`` with every mode and by central finite differences, and compare.

    Arguments:
        F, x0, theta: as for `iterdiff.fixed_point` (Picard solver, default tolerances).
        readout: ``readout(x, theta) -> array`` whose derivative is compared (default: x
            itself); use a gauge-free readout (e.g. the Sinkhorn plan) for singular problems.
        direction: θ̇, a pytree like θ (default: a random unit direction from ``seed``).
        modes: the modes to run (default Implicit, Unrolled, Truncated(10), OneStep).
        max_steps: forward steps of each solve.
        fd_step: finite-difference step h (default ε^{1/3}·max(1, ‖θ‖)); the forward solves
            of the finite differences run at tol 1e-13 so that their error stays below h².
        seed: seed of the default direction and of the Krylov start vectors.
        verbose: print the table (the only printing in iterdiff.diagnostics).

    Returns:
        A `GradientCheck`: rows (mode, directional derivative of the readout, estimated
        error from `error_estimates` — times ‖∂ₓ readout‖ — , seconds per derivative once
        compiled), the contraction of ∂ₓF, and a table as ``str()``. The finite-difference
        row's error is the Richardson estimate ‖D(2h) − D(h)‖/3.
    """
    max_steps = check_int("check_gradients", "max_steps", max_steps)
    if modes is None:
        modes = (Implicit(), Unrolled(), Truncated(10), OneStep())
    identity = readout is None
    readout = (lambda x, t: x) if identity else readout
    theta_dot = _flat.random_direction(theta, seed) if direction is None else direction
    flat_theta = _flat.flatten(theta)[0]
    if fd_step is None:
        eps = float(jnp.finfo(flat_theta.dtype).eps)
        fd_step = eps ** (1 / 3) * max(1.0, float(jnp.linalg.norm(flat_theta)))
    fd_step = check_number("check_gradients", "fd_step", fd_step, low=0.0)

    sol = fixed_point(F, x0, theta, max_steps=max_steps, throw=False)
    est = error_estimates(sol, F, theta, direction=theta_dot, seed=seed, warn=False)
    scale = 1.0 if identity else _readout_norm(readout, sol.value, theta, seed)

    def derivative_in(mode):
        def derivative(t, t_dot):
            def r(t):
                s = fixed_point(F, x0, t, mode=mode, max_steps=max_steps, throw=False)
                return _flat.flatten(readout(s.value, t))[0]

            return jax.jvp(r, (t,), (t_dot,))[1]

        return derivative

    def value_at(t):
        s = fixed_point(F, x0, t, max_steps=10 * max_steps, tol=1e-13, throw=False)
        return _flat.flatten(readout(s.value, t))[0]

    # Trace every program, then compile them side by side (XLA compiles outside the GIL):
    # compilation is most of the cost of a check on a small problem.
    lowered = [jax.jit(derivative_in(mode)).lower(theta, theta_dot) for mode in modes]
    lowered.append(jax.jit(value_at).lower(theta))
    with ThreadPoolExecutor(max_workers=min(len(lowered), os.cpu_count() or 1)) as pool:
        *derivatives, value_at = pool.map(lambda program: program.compile(), lowered)

    rows = []
    for mode, derivative in zip(modes, derivatives, strict=True):
        value, seconds = _timed(derivative, theta, theta_dot)
        estimate = est.for_mode(mode) * scale
        rows.append(GradientRow(mode.label(), value, estimate, seconds))

    def shifted(c):
        return jax.tree_util.tree_map(
            lambda a, d: a + jnp.asarray(c, a.dtype) * d, theta, theta_dot
        )

    def central(h):
        return (value_at(shifted(h)) - value_at(shifted(-h))) / (2 * h)

    start = time.perf_counter()
    d_h = np.asarray(central(fd_step))
    seconds = time.perf_counter() - start
    d_2h = np.asarray(central(2 * fd_step))
    rows.append(
        GradientRow("finite differences", d_h, float(np.linalg.norm(d_2h - d_h)) / 3, seconds)
    )
    result = GradientCheck(tuple(rows), est.contraction)
    if verbose:
        print(result)
    return result


def _timed(fn, *args) -> tuple[np.ndarray, float]:
    jax.block_until_ready(fn(*args))  # warm up
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return np.asarray(out), time.perf_counter() - start


def _readout_norm(readout: Callable, x, theta, seed: int) -> float:
    """‖∂ₓ readout(x, θ)‖₂ (Golub–Kahan), to carry x-errors over to the readout."""
    flat_x, unflatten = _flat.flatten(x)

    def flat_r(v):
        return _flat.flatten(readout(unflatten(v), theta), flat_x.dtype)[0]

    out, vjp = jax.vjp(flat_r, flat_x)
    jvp = jax.linearize(flat_r, flat_x)[1]
    v0 = np.asarray(_flat.random_direction(flat_x, seed))
    s = golub_kahan(jvp, lambda w: vjp(w)[0], v0, min(out.shape[0], flat_x.shape[0], 200))
    return float(s.values[0])
