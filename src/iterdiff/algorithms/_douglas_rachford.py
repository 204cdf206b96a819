"""Douglas–Rachford splitting as a fixed-point map on the governing sequence z."""

from ._base import (
    AbstractAlgorithm,
    Scalar,
    check_callable,
    check_scalar,
    require_x0,
    resolve,
    tree_axpy,
    tree_scale,
    tree_sub,
)
from ._forward_backward import Prox


class DouglasRachford(AbstractAlgorithm):
    """Douglas–Rachford splitting for min_x f(x, θ) + g(x, θ), both with easy proxes.

    State z (the governing sequence), readout x = prox_{γf}(z):
    x = prox_{γf}(z), w = prox_{γg}(2x − z), F(z, θ) = z + λ(w − x).
    F is firmly nonexpansive (averaged for λ ∈ (0, 2)); its fixed points z̄ give the minimisers
    x̄ = prox_{γf}(z̄). Derivatives of x_k = prox_{γf}(z_k) converge linearly on problems such as
    sparse inverse covariance selection (Bolte, Pauwels & Vaiter, NeurIPS 2022), where
    f = −log det Θ + tr(SΘ) (prox by an eigendecomposition) and g = λ‖Θ‖₁ off the diagonal.

    Reference: Lions & Mercier, "Splitting algorithms for the sum of two nonlinear operators",
    SIAM J. Numer. Anal. 1979; Eckstein & Bertsekas, Math. Program. 1992.

    Arguments:
        prox_f, prox_g: ``prox(v, step, theta)``, argmin_u h(u, θ) + ‖u − v‖²/(2·step).
        step: γ > 0 (number or function of θ).
        relaxation: λ ∈ (0, 2), default 1.
    """

    prox_f: Prox
    prox_g: Prox
    step: Scalar = 1.0
    relaxation: Scalar = 1.0

    def __check_init__(self):
        check_callable("DouglasRachford", "prox_f", self.prox_f, "prox(v, step, theta)")
        check_callable("DouglasRachford", "prox_g", self.prox_g, "prox(v, step, theta)")
        check_scalar("DouglasRachford", "step", self.step)
        check_scalar("DouglasRachford", "relaxation", self.relaxation, high=2.0)

    def init(self, theta, x0=None):
        """The starting state: x0 itself (x0 = prox_{γf}(x0))."""
        return require_x0("DouglasRachford", x0)

    def F(self, z, theta):
        gamma, lam = resolve(self.step, theta), resolve(self.relaxation, theta)
        x = self.prox_f(z, gamma, theta)
        w = self.prox_g(tree_sub(tree_scale(2.0, x), z), gamma, theta)
        return tree_axpy(lam, tree_sub(w, x), z)

    def readout(self, z, theta):
        """The primal point x = prox_{γf}(z)."""
        return self.prox_f(z, resolve(self.step, theta), theta)
