"""Observer: the piggyback derivative J_k θ̇ along the forward run, and divergence detection.

Inside the forward solve (``fixed_point(..., observe={"trace": DerivativeTrace()})``) it carries
the forward-mode tangent of the plain Picard recursion, ẋ_{k+1} = ∂ₓF(x_k) ẋ_k + ∂_θF(x_k) θ̇
(docs/theory.md §1), one JVP of F per step, and records per step ‖ẋ_k − ẋ_{k−1}‖, ‖ẋ_k‖, the
residual ‖F(x_k) − x_k‖ (Euclidean norms) and, given a reference, ‖ẋ_k − reference‖.

From the records it fits the derivative's linear rate (ρ for a smooth contraction, and an
asymptotic rate bounded by ρ^{1/2}·const for piecewise-smooth maps, Bolte–Pauwels–Vaiter 2022)
and flags derivatives that diverge while the iterates converge (heavy ball with switching kink
selections: the joint spectral radius of the Jacobians exceeds 1).
"""

from typing import Any

import jax
import jax.numpy as jnp

from .._observe import AbstractObserver, Records
from .._options import check_int
from . import _flat
from ._rates import fit_rate

DIVERGENCE_MARGIN = 1e-3  # a fitted derivative rate above 1 + margin is called divergent


class DerivativeTrace(AbstractObserver):
    """Record the piggyback derivative ẋ_k = J_k θ̇ of the iterations, step by step.

    Arguments:
        direction: θ̇, a pytree like θ (default: a random unit direction from ``seed``).
        reference: optional ẋ (pytree like x), e.g. a closed form; then the error
            ‖ẋ_k − reference‖ is recorded as well.
        size: most records kept (thinned as the run grows, as `iterdiff.Trace` does).
        seed: seed of the default direction.

    ``sol.stats[name]`` gets a dict: ``step``, ``delta`` (‖ẋ_k − ẋ_{k−1}‖, 0 at step 0), ``norm`` (‖ẋ_k‖),
    ``residual`` (‖F(x_k) − x_k‖), ``error`` (NaN without reference) — arrays of ``size`` —
    ``count``, ``tangent`` (ẋ_K, a pytree like x), ``last_step`` (ẋ_{K+1} − ẋ_K, one step
    beyond the run, a pytree like x) and its norm ``last_delta``, ``derivative_rate`` and ``iterate_rate`` (fitted per-step rates of delta
    and residual, `fit_rate`), and ``diverging`` (derivative rate > 1 + 1e-3 while the
    iterates converge).

    The tangent follows Picard's recursion at the iterates the solver produced: with
    ``Picard()`` it is exactly the forward-mode derivative that ``Unrolled()`` computes; with
    another solver it is the Picard derivative along that solver's trajectory. Cost: one JVP
    of F per step (about 2–3 evaluations of F), only when this observer is given.
    """

    direction: Any = None
    reference: Any = None
    size: int = 256
    seed: int = 0

    def __check_init__(self):
        check_int("DerivativeTrace", "size", self.size, low=4)
        check_int("DerivativeTrace", "seed", self.seed, low=0)

    def _direction(self, theta):
        if self.direction is None:
            return _flat.random_direction(theta, self.seed)
        return self.direction

    def _values(self, prev, cur, x, fx) -> dict:
        """The record of step k: ‖ẋ_k − ẋ_{k−1}‖, ‖ẋ_k‖, ‖F(x_k) − x_k‖ and the error."""
        error = jnp.full((), jnp.nan, _flat.widest_float(x))
        if self.reference is not None:
            error = _flat.norm(jax.tree_util.tree_map(jnp.subtract, cur, self.reference))
        return {
            "delta": _flat.norm(jax.tree_util.tree_map(jnp.subtract, cur, prev)),
            "norm": _flat.norm(cur),
            "residual": _flat.norm(jax.tree_util.tree_map(jnp.subtract, fx, x)),
            "error": error,
        }

    def init(self, F, x0, fx0, theta):
        # ẋ_0 = 0 (x0 does not depend on θ); step 0 is recorded with delta 0, which
        # `fit_rate` ignores, so that the records are stride-aligned from step 0.
        zero = jax.tree_util.tree_map(jnp.zeros_like, x0)
        first = jax.jvp(F, (x0, theta), (zero, self._direction(theta)))[1]
        values = self._values(zero, zero, x0, fx0)
        records = Records.empty(self.size, values).add(0, values)
        return {"prev": zero, "cur": first, "records": records}

    def update(self, F, state, step, x, fx, theta):
        prev, cur = state["prev"], state["cur"]
        records = state["records"].add(step, self._values(prev, cur, x, fx))
        nxt = jax.jvp(F, (x, theta), (cur, self._direction(theta)))[1]
        return {"prev": cur, "cur": nxt, "records": records}

    def finish(self, state):
        rec = state["records"]
        out = dict(rec.value)
        out["step"] = rec.step
        out["count"] = rec.count
        out["tangent"] = state["prev"]
        out["last_step"] = jax.tree_util.tree_map(jnp.subtract, state["cur"], state["prev"])
        out["last_delta"] = _flat.norm(out["last_step"])
        out["derivative_rate"] = fit_rate(rec.value["delta"], rec.step)
        out["iterate_rate"] = fit_rate(rec.value["residual"], rec.step)
        out["diverging"] = diverging(out)
        return out


def diverging(record: dict) -> jax.Array:
    """True where the derivative differences grow (fitted rate > 1 + 1e-3) while the
    iterates converge (fitted residual rate < 1, or the residual did not grow)."""
    residual = record["residual"]
    used = record["step"] >= 0
    first = residual[0]
    last = residual[jnp.maximum(record["count"] - 1, 0)]
    iterates_converge = (record["iterate_rate"] < 1) | (last <= first) | ~jnp.any(used)
    grows = record["derivative_rate"] > 1 + DIVERGENCE_MARGIN
    return jnp.asarray(grows & iterates_converge)
