"""Entropic optimal transport: Sinkhorn's algorithm in the log domain, gauge fixed."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ._base import AbstractAlgorithm


class OTParams(NamedTuple):
    """An entropic OT problem: cost C (n×m), marginals a (n,) and b (m,) with equal positive
    mass, and the regularisation ε > 0.

    Attributes:
        cost: C, shape (n, m).
        a: the first marginal, shape (n,), positive.
        b: the second marginal, shape (m,), positive, with Σb = Σa.
        epsilon: ε > 0, the entropic regularisation.
    """

    cost: Any
    a: Any
    b: Any
    epsilon: Any


class Sinkhorn(AbstractAlgorithm):
    """Sinkhorn's algorithm for min_P ⟨P, C⟩ − ε H(P) s.t. P1 = a, Pᵀ1 = b, in the log domain.

    State: the potential f ∈ Rⁿ. With
    g(f)_j = ε log b_j − ε LSE_i((f_i − C_ij)/ε) and
    T(f)_i = ε log a_i − ε LSE_j((g(f)_j − C_ij)/ε),
    one Sinkhorn iteration is f ↦ T(f) (Cuturi 2013, in log form: no under/overflow, stable
    for ε down to 1e-3 on costs in [0, 1]). The readout is the plan
    P_ij = exp((f_i + g(f)_j − C_ij)/ε), whose column sums are b exactly.

    Gauge: T(f + c1) = T(f) + c1, so ∂T has the eigenvalue 1 (eigenvector 1) and I − ∂T is
    singular (docs/theory.md §2). The map used here is F(f) = T(f) − mean(T(f))·1, which picks the
    representative with mean zero. F is invariant to constants (∂F 1 = 0), its Jacobian
    (I − 11ᵀ/n)∂T has spectrum {0} ∪ spec(∂T) \\ {1}, so I − ∂F is invertible and the iterates and
    their derivatives converge linearly at the rate of the second eigenvalue of ∂T. With equal
    masses Σa = Σb its fixed points are exactly the Sinkhorn fixed points with mean(f) = 0. So
    implicit differentiation with the default GMRES is exact, and dP̂ is gauge independent with
    zero row and column sums when a and b are held fixed (Pauwels & Vaiter, "The derivatives of
    Sinkhorn–Knopp converge", SIAM J. Optim. 2023).

    Arguments:
        params: ``params(theta) -> OTParams``, how to read the problem from θ (e.g. a cost
            computed from point positions). None (default): θ is an `OTParams` itself.
    """

    params: Callable[[Any], OTParams] | None = None

    def __check_init__(self):
        if self.params is not None and not callable(self.params):
            raise TypeError(
                "Sinkhorn(params=...) must be a function theta -> OTParams(cost, a, b, epsilon) "
                f"or None, got {type(self.params).__name__}."
            )

    def problem(self, theta) -> OTParams:
        """The checked (cost, a, b, ε) for θ."""
        p = theta if self.params is None else self.params(theta)
        if not isinstance(p, OTParams):
            raise TypeError(
                "Sinkhorn: theta must be an OTParams(cost, a, b, epsilon), or pass "
                f"Sinkhorn(params=lambda theta: OTParams(...)); got {type(p).__name__}."
            )
        cost, a, b, eps = (jnp.asarray(v) for v in p)
        if cost.ndim != 2 or a.shape != cost.shape[:1] or b.shape != cost.shape[1:]:
            raise ValueError(
                f"Sinkhorn: the cost must be n×m with a of shape (n,) and b of shape (m,); got "
                f"cost {cost.shape}, a {a.shape}, b {b.shape}."
            )
        if eps.shape != ():
            raise ValueError(f"Sinkhorn: epsilon must be a scalar, got shape {eps.shape}.")
        return OTParams(cost, a, b, eps)

    def init(self, theta, x0=None):
        """The row potential f: ``x0`` (a warm start) or f = 0 (the plan of the first iterate
        is then the Gibbs kernel rescaled to b)."""
        cost = self.problem(theta).cost
        dtype = jnp.result_type(cost.dtype, float)
        return jnp.zeros(cost.shape[:1], dtype) if x0 is None else jnp.asarray(x0, dtype)

    def g_potential(self, f, theta):
        """g(f): the column potential that makes the column sums of P equal to b."""
        cost, _, b, eps = self.problem(theta)
        return eps * jnp.log(b) - eps * logsumexp((f[:, None] - cost) / eps, axis=0)

    def F(self, f, theta):
        cost, a, _, eps = self.problem(theta)
        g = self.g_potential(f, theta)
        t = eps * jnp.log(a) - eps * logsumexp((g[None, :] - cost) / eps, axis=1)
        return t - jnp.mean(t)

    def potentials(self, f, theta):
        """The dual potentials (f, g(f))."""
        return f, self.g_potential(f, theta)

    def readout(self, f, theta):
        """The transport plan P = exp((f ⊕ g(f) − C)/ε)."""
        cost, _, _, eps = self.problem(theta)
        g = self.g_potential(f, theta)
        return jnp.exp((f[:, None] + g[None, :] - cost) / eps)
