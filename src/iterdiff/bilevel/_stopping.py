"""When hypergradient descent stops."""

import equinox as eqx

from .._options import check_int, check_number


class StoppingRule(eqx.Module):
    """Stop the outer loop at the first of these events (checked after each evaluation):

    * ``max_iter`` optimizer updates have been made;
    * the hypergradient is small: ‖∇_u L‖₂ ≤ ``grad_tol`` (u: the unconstrained parameters the
      optimizer moves; with 0 it stops only at an exactly zero hypergradient);
    * no progress: the best outer loss has not decreased by more than
      ``rtol``·|best loss| during the last ``patience`` evaluations (rtol = 0 disables the test;
      with a stochastic or oscillating optimizer such as Adam this is the useful rule).

    Arguments:
        max_iter: most optimizer updates (≥ 0; 0 only evaluates the starting point).
        grad_tol: hypergradient-norm threshold (≥ 0).
        rtol: relative improvement that counts as progress (≥ 0).
        patience: evaluations without progress before stopping (≥ 1).
    """

    max_iter: int = 100
    grad_tol: float = 0.0
    rtol: float = 0.0
    patience: int = 10

    def __check_init__(self):
        check_int("StoppingRule", "max_iter", self.max_iter, low=0)
        check_number("StoppingRule", "grad_tol", self.grad_tol, low=0.0, closed_low=True)
        check_number("StoppingRule", "rtol", self.rtol, low=0.0, closed_low=True)
        check_int("StoppingRule", "patience", self.patience, low=1)

    def reason(self, iteration: int, grad_norm: float, losses: list[float]) -> str | None:
        """Why to stop after evaluation number ``iteration`` (0-based), or None to go on."""
        if grad_norm <= self.grad_tol:
            return "grad_tol"
        if self.rtol > 0 and len(losses) > self.patience:
            before = min(losses[: -self.patience])
            recent = min(losses[-self.patience :])
            if not recent < before - self.rtol * abs(before):
                return "no_progress"
        if iteration >= self.max_iter:
            return "max_iter"
        return None
