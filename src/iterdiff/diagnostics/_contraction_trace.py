"""Observer: ‖∂ₓF(x_k)‖ along the trajectory, by warm-started power iteration.

One power step on AᵀA per iteration (one JVP and one VJP of F), with the vector carried over
from the previous iterate: near convergence A changes little, so the estimate settles on
‖∂ₓF‖ at the solution; each value is a lower bound of ‖∂ₓF(x_k)‖. The maximum over the run
is the numerical check of Assumption A along the trajectory (docs/theory.md §3).
"""

import jax
import jax.numpy as jnp

from .._observe import AbstractObserver, Records
from .._options import check_int
from . import _flat


class ContractionTrace(AbstractObserver):
    """Estimate ‖∂ₓF(x_k, θ)‖₂ at every step of the forward run.

    Arguments:
        power_steps: power iterations per step (default 1; warm-started).
        size: most records kept (thinned as the run grows).
        seed: seed of the start vector.

    ``sol.stats[name]`` gets ``step`` and ``norm`` (records), ``count``, ``last`` (the
    estimate at x_K) and ``max`` (the largest estimate along the run). Cost: power_steps
    JVPs and VJPs of F per step, only when this observer is given.
    """

    power_steps: int = 1
    size: int = 256
    seed: int = 0

    def __check_init__(self):
        check_int("ContractionTrace", "power_steps", self.power_steps)
        check_int("ContractionTrace", "size", self.size, low=4)
        check_int("ContractionTrace", "seed", self.seed, low=0)

    def _power(self, F, x, theta, v):
        flat_x, unflatten = _flat.flatten(x)

        def flat_A(u):
            return _flat.flatten(F(unflatten(u), theta), flat_x.dtype)[0]

        _, a_jvp = jax.linearize(flat_A, flat_x)
        a_vjp = jax.linear_transpose(a_jvp, flat_x)
        estimate = jnp.zeros((), flat_x.dtype)
        for _ in range(self.power_steps):
            w = a_jvp(v)
            estimate = jnp.linalg.norm(w)
            u = a_vjp(w)[0]
            size = jnp.linalg.norm(u)
            v = jnp.where(size > 0, u / jnp.where(size > 0, size, 1), v)
        return estimate, v

    def init(self, F, x0, fx0, theta):
        v0 = _flat.flatten(_flat.random_direction(x0, self.seed))[0]
        estimate, v = self._power(F, x0, theta, v0)
        records = Records.empty(self.size, {"norm": estimate}).add(0, {"norm": estimate})
        return {"v": v, "last": estimate, "max": estimate, "records": records}

    def update(self, F, state, step, x, fx, theta):
        estimate, v = self._power(F, x, theta, state["v"])
        return {
            "v": v,
            "last": estimate,
            "max": jnp.maximum(state["max"], estimate),
            "records": state["records"].add(step, {"norm": estimate}),
        }

    def finish(self, state):
        rec = state["records"]
        return {
            "step": rec.step,
            "norm": rec.value["norm"],
            "count": rec.count,
            "last": state["last"],
            "max": state["max"],
        }
