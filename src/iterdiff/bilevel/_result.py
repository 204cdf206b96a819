"""What hypergradient descent returns: the final and best points, why it stopped, a history."""

import dataclasses
from typing import Any

import numpy as np


class InnerSolveError(RuntimeError):
    """The inner fixed-point solve failed during hypergradient descent (see the message)."""


class InnerSolveWarning(RuntimeWarning):
    """The inner solve failed and hypergradient descent stopped early (``throw=False``)."""


@dataclasses.dataclass
class History:
    """One entry per evaluation of the outer loss (the start, then after each update).

    Attributes:
        loss: outer loss L(θ_k).
        grad_norm: ‖∇_u L‖₂, the hypergradient norm in the optimizer's (unconstrained) coordinates.
        inner_steps: iterations of the inner solve (the most over a batch of solves).
        time: seconds since the start of `minimize`, when the evaluation finished (the first
            one includes compilation).
        theta: θ_k (constrained, as NumPy arrays).
    """

    loss: list = dataclasses.field(default_factory=list)
    grad_norm: list = dataclasses.field(default_factory=list)
    inner_steps: list = dataclasses.field(default_factory=list)
    time: list = dataclasses.field(default_factory=list)
    theta: list = dataclasses.field(default_factory=list)

    def as_arrays(self) -> dict[str, np.ndarray]:
        """loss, grad_norm, inner_steps and time as NumPy arrays (θ is left out)."""
        return {
            "loss": np.asarray(self.loss, float),
            "grad_norm": np.asarray(self.grad_norm, float),
            "inner_steps": np.asarray(self.inner_steps, int),
            "time": np.asarray(self.time, float),
        }

    def __len__(self) -> int:
        return len(self.loss)


STATUS_MESSAGES = {
    "grad_tol": "the hypergradient norm fell below grad_tol.",
    "no_progress": "the outer loss stopped improving by rtol within patience evaluations.",
    "max_iter": "max_iter optimizer updates were made (not a sign of failure).",
    "callback": "the callback asked to stop.",
    "inner_failed": "the inner solve failed; θ is the last point where it converged.",
    "nonfinite": "the outer loss or its hypergradient was NaN or inf; θ is the last finite point.",
}


@dataclasses.dataclass
class BilevelResult:
    """The outcome of `minimize`.

    Attributes:
        theta: the last θ evaluated successfully (constrained coordinates).
        x: the inner solution x̄(θ) at ``theta``.
        loss: the outer loss at ``theta``.
        best_theta, best_x, best_loss: the evaluated point with the lowest outer loss.
        status: why the loop stopped, a key of ``STATUS_MESSAGES`` ("grad_tol", "no_progress",
            "max_iter", "callback", "inner_failed", "nonfinite").
        message: a sentence about ``status`` (and the inner solver's message on failure).
        n_iter: optimizer updates made.
        history: a `History`.
    """

    theta: Any
    x: Any
    loss: float
    best_theta: Any
    best_x: Any
    best_loss: float
    status: str
    message: str
    n_iter: int
    history: History

    @property
    def failed(self) -> bool:
        """True when the loop stopped on a failure (inner solve or non-finite values)."""
        return self.status in ("inner_failed", "nonfinite")
