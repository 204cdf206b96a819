"""`check_gradients`: every mode and a finite-difference reference side by side on a user's map,
with a verdict per mode (`_verdicts`) against a step study (`_finite_differences`)."""

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
from .._solution import RESULTS
from . import _finite_differences as fd
from . import _flat
from ._estimates import error_estimates
from ._krylov import golub_kahan
from ._verdicts import FD_NAME, SAFETY, warn_about_verdicts
from ._verdicts import verdict as _verdict


class GradientRow(NamedTuple):
    """One line of the table: a mode (or finite differences) and what it gave.

    Attributes:
        name: the mode's label, or ``"finite differences"``.
        value: the directional derivative it gave (flattened).
        estimated_error: its stated error (`error_estimates` for a mode; the step study's for
            finite differences), absolute, Euclidean; NaN when unknown.
        seconds: one call of its compiled derivative (steady state; for finite differences
            one central difference, two solves); NaN when not measured (a slow first call).
        verdict: ``"agrees"``, ``"disagrees"`` or ``"undefined"`` (``"reference"`` for the
            finite-difference row when it is usable).
        reason: one sentence: the numbers behind the verdict, or why there is none.
        first_call_seconds: trace + compile + first call of its program (the compiles run side
            by side in threads, so each includes some contention).
        result: the status code (`RESULTS`) of the row's forward solve.
    """

    name: str
    value: np.ndarray  # the directional derivative of the readout, flat
    estimated_error: float  # absolute, Euclidean; NaN when unknown
    seconds: float  # wall time of one compiled derivative evaluation (steady state)
    verdict: str = ""
    reason: str = ""
    first_call_seconds: float = float("nan")
    result: int = RESULTS.successful


class GradientCheck(NamedTuple):
    """The result of `check_gradients`; ``str()`` gives the table and the verdicts.

    Attributes:
        rows: one `GradientRow` per mode and one for finite differences (last).
        contraction: the `Contraction` of ∂ₓF at the solution.
        finite_differences: the step study behind the last row (`FiniteDifferences`: the chosen
            step, the errors of every step, the one-sided differences and the kink test).
        estimates: the `ErrorEstimates` the stated errors come from.
    """

    rows: tuple
    contraction: Any  # the Contraction of ∂ₓF at the solution
    finite_differences: Any = None
    estimates: Any = None

    @property
    def passed(self) -> bool:
        """Every mode's verdict is ``"agrees"``."""
        return all(r.verdict == "agrees" for r in self.rows if r.name != FD_NAME)

    @property
    def kink(self) -> bool:
        """The finite differences found a kink at θ along θ̇."""
        return bool(self.finite_differences is not None and self.finite_differences.kink)

    def difference(self, a: str, b: str) -> float:
        """‖value_a − value_b‖ / ‖value_b‖, by row names (0 for two zeros, inf against a
        zero value_b)."""
        va, vb = self.row(a).value, self.row(b).value
        gap, size = np.linalg.norm(va - vb), np.linalg.norm(vb)
        if size == 0:
            return float(np.inf if gap > 0 else gap)  # 0, or NaN for a NaN value
        return float(gap / size)

    def row(self, name: str) -> GradientRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no row {name!r}; rows are {[r.name for r in self.rows]}")

    def verdict(self, name: str) -> str:
        """The verdict of the row ``name``."""
        return self.row(name).verdict

    def __str__(self) -> str:
        names = [r.name for r in self.rows]
        head = ["mode", "‖value‖", "est. error"] + [f"vs {n}" for n in names]
        head += ["verdict", "first/per-call time"]
        lines = []
        for r in self.rows:
            cells = [r.name, f"{np.linalg.norm(r.value):.6e}", f"{r.estimated_error:.1e}"]
            cells += ["—" if n == r.name else f"{self.difference(r.name, n):.1e}" for n in names]
            cells.append(r.verdict)
            cells.append(f"{_seconds(r.first_call_seconds)}/{_seconds(r.seconds)}")
            lines.append(cells)
        widths = [max(len(c[i]) for c in [head] + lines) for i in range(len(head))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [fmt.format(*head), fmt.format(*["-" * w for w in widths])]
        out += [fmt.format(*c).rstrip() for c in lines]
        c = self.contraction
        out.append(
            f"‖∂ₓF‖ = {c.operator_norm:.4g}, ρ(∂ₓF) = {c.spectral_radius:.4g}, "
            f"cond(I − ∂ₓF) = {c.condition:.3g}" + (", singular (gauge)" if c.singular else "")
        )
        out.append("errors: absolute, Euclidean, along one direction θ̇; 'vs X' relative to X.")
        out.append(
            f"verdicts against finite differences (agrees: gap ≤ {SAFETY:g} × (stated error + "
            "finite-difference error)):"
        )
        out += [f"  {r.name}: {r.verdict}, {r.reason}" for r in self.rows]
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
    solver: Any = None,
    tol: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    norm: Callable | None = None,
    fd_max_steps: int | None = None,
    warn: bool = True,
) -> GradientCheck:
    """Differentiate ``x̄(θ)`` with every mode and by finite differences, compare, and judge.

    Arguments:
        F, x0, theta: as for `iterdiff.fixed_point`.
        readout: ``readout(x, theta) -> array`` whose derivative is compared (default: x
            itself); use a gauge-free readout (e.g. the Sinkhorn plan) for singular problems.
        direction: θ̇, a pytree like θ (default: a random unit direction from ``seed``).
        modes: the modes to run (default Implicit, Unrolled, Truncated(10), OneStep).
        max_steps, solver, tol, rtol, atol, norm: the forward solve, as for `fixed_point`
            (defaults: its defaults). Every solve here uses this stopping rule.
        fd_step: one finite-difference step h (the study then uses h and 4h only); default: a
            study over h = s·4⁻ᵏ, k = 2..10, s = max(1, ‖θ‖)/‖θ̇‖, keeping the h with the
            smallest stated error.
        fd_max_steps: the steps the finite-difference solves may take to meet the stopping rule
            (default max(10·max_steps, 10 000)): the reference is computed to convergence even
            when the solve under test is not.
        seed: seed of the default direction and of the Krylov start vectors.
        verbose: print the table (the only printing in iterdiff.diagnostics).
        warn: issue `TrustWarning`s: those of `error_estimates` (a non-converged forward solve,
            a failed linear solve, …), and `DisagreementWarning`, `KinkWarning` or
            `GradientCheckWarning` for the verdicts.

    Returns:
        A `GradientCheck`. Each row: the directional derivative of the readout along θ̇, its
        stated error (`error_estimates` times ‖∂ₓ readout‖ for a mode), the time of its first
        call (trace, compile, run) and of a compiled call, and a verdict — agrees, disagrees or
        undefined, with the reason — against the finite-difference row. That row is a central
        difference from a step study (`FiniteDifferences`): its error is Richardson's term plus
        the forward solves' own error divided by h (each solve stops at the stopping rule's
        residual r, i.e. ‖x − x̄‖ ≈ ‖r‖₂/σ_min(I − ∂ₓF) to first order); at a kink (one-sided
        differences disagree) it states ‖R − L‖/2 and every mode's verdict is undefined.
        Not itself traceable (it compiles and runs programs, and prints): call it eagerly; F
        may be jitted.
    """
    max_steps = check_int("check_gradients", "max_steps", max_steps)
    fd_max_steps = max(10 * max_steps, 10_000) if fd_max_steps is None else fd_max_steps
    fd_max_steps = check_int("check_gradients", "fd_max_steps", fd_max_steps)
    if modes is None:
        modes = (Implicit(), Unrolled(), Truncated(10), OneStep())
    identity = readout is None
    readout = (lambda x, t: x) if identity else readout
    theta_dot = _flat.random_direction(theta, seed) if direction is None else direction
    if fd_step is not None:
        fd_step = check_number("check_gradients", "fd_step", fd_step, low=0.0)
    rule = {
        k: v
        for k, v in dict(solver=solver, tol=tol, rtol=rtol, atol=atol, norm=norm).items()
        if v is not None
    }

    def solve(t, mode=Implicit(), steps=max_steps):
        return fixed_point(F, x0, t, mode=mode, max_steps=steps, throw=False, **rule)

    def derivative_in(mode):
        def derivative(t, t_dot):
            def r(t):
                s = solve(t, mode)
                return _flat.flatten(readout(s.value, t))[0], (s.result, s.steps)

            return jax.jvp(r, (t,), (t_dot,), has_aux=True)[1:]

        return derivative

    def value_at(t):
        s = solve(t, steps=fd_max_steps)
        fx = F(s.value, t)
        x, r = _flat.flatten(s.value)[0], _flat.flatten(fx)[0] - _flat.flatten(s.value)[0]
        r_next = _flat.flatten(F(fx, t))[0] - _flat.flatten(fx)[0]  # one more Picard step
        out = _flat.flatten(readout(s.value, t))[0]
        norms = [jnp.linalg.norm(v) for v in (r, r_next, x, out)]
        return s, out, *norms

    # Trace every program, then compile them side by side (XLA compiles outside the GIL) while
    # this thread runs the solve and the error estimates: compilation is most of the cost of a
    # check on a small problem.
    programs = [(jax.jit(value_at), (theta,))]
    programs += [(jax.jit(derivative_in(mode)), (theta, theta_dot)) for mode in modes]
    traced = []
    for program, args in programs:
        start = time.perf_counter()
        traced.append((program.lower(*args), time.perf_counter() - start))
    with ThreadPoolExecutor(max_workers=min(len(traced), os.cpu_count() or 1)) as pool:
        compiled = [pool.submit(_compile, lowered, seconds) for lowered, seconds in traced]
        value_c, seconds = compiled[0].result()
        start = time.perf_counter()
        center = jax.block_until_ready(value_c(theta))
        center_seconds = time.perf_counter() - start
        sol = center[0]
        if not (bool(sol.converged) and int(sol.steps) <= max_steps):
            # the solve under test stops earlier than the reference's: run it on its own
            sol = jax.jit(solve)(theta)
        est = error_estimates(sol, F, theta, direction=theta_dot, seed=seed, warn=warn)
        scale = 1.0 if identity else _readout_norm(readout, sol.value, theta, seed)
        done = [future.result() for future in compiled[1:]]

    measured = []
    for mode, (program, first_seconds) in zip(modes, done, strict=True):
        (value, (code, steps)), first, per_call = _timed(program, first_seconds, theta, theta_dot)
        measured.append((mode, value, int(code), int(steps), first, per_call))
    reference, first, per_call = _reference(
        value_c, (center, seconds + center_seconds), theta, theta_dot, est, scale, fd_step,
        fd_max_steps,
    )  # fmt: skip
    rows = []
    for mode, value, code, steps, first_m, per_call_m in measured:
        stated = est.for_mode(mode) * scale
        verdict, reason = _verdict(value, stated, code, steps, max_steps, est, reference)
        rows.append(
            GradientRow(mode.label(), value, stated, per_call_m, verdict, reason, first_m, code)
        )
    fd_verdict = "reference" if reference.usable and not reference.kink else "undefined"
    rows.append(
        GradientRow(
            FD_NAME, np.asarray(reference.value), reference.error, per_call, fd_verdict,
            reference.reason, first,
        )
    )  # fmt: skip
    result = GradientCheck(tuple(rows), est.contraction, reference, est)
    if warn:
        warn_about_verdicts(result)
    if verbose:
        print(result)
    return result


def _reference(program, center, theta, theta_dot, est, scale, fd_step, fd_max_steps):
    """The step study (`_finite_differences.study`) on the compiled ``program``, whose output
    at θ and first-call seconds are ``center``: (result, first-call seconds, seconds of one
    central difference)."""
    flat_theta = _flat.flatten(theta)[0]
    flat_dot = _flat.flatten(theta_dot)[0]
    eps = float(jnp.finfo(flat_theta.dtype).eps)
    s = max(1.0, float(jnp.linalg.norm(flat_theta))) / max(
        float(jnp.linalg.norm(flat_dot)), np.finfo(float).tiny
    )
    sigma = est.contraction.sigma_min_off_null
    times = []

    def evaluate(c):
        if c == 0.0:
            out = center[0]
        else:
            t = jax.tree_util.tree_map(
                lambda a, d: a + jnp.asarray(c, a.dtype) * d, theta, theta_dot
            )
            start = time.perf_counter()
            out = jax.block_until_ready(program(t))
            times.append(time.perf_counter() - start)
        sol, readout, r, r_next, x, f = out
        value, code = np.asarray(readout), int(sol.result)
        ok = code == RESULTS.successful and bool(np.all(np.isfinite(value)))
        # ‖x_K − x̄‖ ≈ ‖r‖₂/σ_min(I − ∂ₓF) to first order, with σ measured at θ and, since ∂ₓF
        # changes away from θ (across a kink, e.g.), also bounded by 1 − q, q = ‖r_{K+1}‖/‖r_K‖
        # the local rate of one more Picard step; plus the rounding of x and of the readout.
        q = float(r_next) / float(r) if float(r) > 0 else 1.0
        gap = min(sigma, 1.0 - q) if q < 1 else sigma
        error = scale * (float(r) + eps * float(x)) / gap + eps * float(f)
        return fd.Evaluation(value, ok, error, code, int(sol.steps))

    result = fd.study(evaluate, fd.ladder(s, fd_step), fd_max_steps)
    return result, center[1], 2 * float(np.median(times)) if times else float("nan")


def _compile(lowered, traced_seconds):
    start = time.perf_counter()
    program = lowered.compile()
    return program, traced_seconds + time.perf_counter() - start


def _timed(program, seconds, *args):
    """(output as NumPy, trace + compile + first call, a steady-state call or NaN)."""
    start = time.perf_counter()
    out = jax.block_until_ready(program(*args))
    first_run = time.perf_counter() - start
    repeats = 3 if first_run < 0.1 else 1 if first_run < 2.0 else 0
    calls = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(program(*args))
        calls.append(time.perf_counter() - start)
    best = min(calls) if calls else float("nan")
    return jax.tree_util.tree_map(np.asarray, out), seconds + first_run, best


def _seconds(s: float) -> str:
    """A duration with its unit, no spaces ("4.13s", "2.1ms", "35µs"; "—" if unknown)."""
    if not np.isfinite(s):
        return "—"
    if s >= 1.0:
        return f"{s:.3g}s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g}ms"
    return f"{s * 1e6:.3g}µs"


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
