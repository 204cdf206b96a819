"""The methods compared: iterdiff's modes and the plain-JAX baselines.

A method turns a problem into two functions of θ: ``solve(θ) -> (x, steps)`` (the forward
pass, x the problem's readout) and ``loss(θ) -> L(x(θ), θ)`` to differentiate (None for a
forward-only method). Anchor libraries are in `benchmarks.anchors`.
"""

import dataclasses
from collections.abc import Callable

import jax

import iterdiff as itd

from .problems import plain_while_loop


@dataclasses.dataclass(frozen=True)
class Method:
    """A named way to solve and differentiate; ``families`` lists the problems it applies to."""

    name: str
    library: str
    build: Callable  # (problem, tol) -> (solve, loss)
    families: tuple = ("first-order", "sinkhorn", "newton")
    tol: float = 1e-10

    def make(self, problem):
        return self.build(problem, self.tol)

    def with_tol(self, tol):
        return dataclasses.replace(self, tol=tol)


def readout_loss(problem, solve_state):
    """(solve, loss) from ``solve_state(θ) -> (state, steps)`` via the problem's readout."""

    def solve(theta):
        state, steps = solve_state(theta)
        return problem.readout(state, theta), steps

    def loss(theta):
        x, _ = solve(theta)
        return problem.outer(x, theta)

    return solve, loss


def iterdiff_mode(mode):
    def build(problem, tol):
        def solve_state(theta):
            sol = itd.fixed_point(
                problem.F, problem.x0, theta, mode=mode, tol=tol, max_steps=problem.max_steps
            )
            return sol.value, sol.steps

        return readout_loss(problem, solve_state)

    return build


def handwritten_while_loop(problem, tol):
    """The same stopping rule as iterdiff in a plain `lax.while_loop` (forward only)."""
    solve, _ = readout_loss(
        problem, plain_while_loop(problem.F, problem.x0, problem.max_steps, tol)
    )
    return solve, None


def steps_needed(problem, tol):
    """K: the steps the hand-written loop takes to reach ``tol``."""
    solve = jax.jit(plain_while_loop(problem.F, problem.x0, problem.max_steps, tol))
    return int(solve(problem.theta)[1])


def scan_autodiff(problem, tol):
    """Plain `jax.grad` through `lax.scan` of exactly K steps, K from the hand-written loop
    at the same tolerance (memory O(K), no checkpointing)."""
    K = steps_needed(problem, tol)

    def solve_state(theta):
        def body(x, _):
            return problem.F(x, theta), None

        return jax.lax.scan(body, problem.x0, length=K)[0], K

    return readout_loss(problem, solve_state)


def iterdiff_methods():
    return [
        Method("while_loop (hand-written, forward)", "jax", handwritten_while_loop),
        Method("iterdiff Implicit()", "iterdiff", iterdiff_mode(itd.Implicit())),
        Method("iterdiff Unrolled()", "iterdiff", iterdiff_mode(itd.Unrolled())),
        Method("iterdiff OneStep()", "iterdiff", iterdiff_mode(itd.OneStep())),
        Method("iterdiff Truncated(20)", "iterdiff", iterdiff_mode(itd.Truncated(20))),
        Method("jax.grad through lax.scan (K steps)", "jax", scan_autodiff),
    ]
