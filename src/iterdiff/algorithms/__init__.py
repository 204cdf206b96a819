"""Classic optimisation algorithms as parametric fixed-point maps F(state, θ).

Each algorithm is an immutable object built from problem ingredients (callables of
``(x, theta)``) with ``F(state, theta)``, ``init(...)`` and ``readout(state, theta)``. None of them
runs a loop; solve and differentiate with `iterdiff.fixed_point`:

    alg = ForwardBackward(grad=grad_f, prox=soft_threshold, step=1 / L)
    sol = itd.fixed_point(alg.F, alg.init(theta, x0), theta, mode=itd.Implicit())
    x = alg.readout(sol.value, theta)

A prox is a function ``prox(v, step, theta) = argmin_u g(u, θ) + ‖u − v‖²/(2·step)``.
"""

from ._admm import ADMM as ADMM
from ._admm import ADMMState as ADMMState
from ._base import AbstractAlgorithm as AbstractAlgorithm
from ._descent import BacktrackingLineSearch as BacktrackingLineSearch
from ._douglas_rachford import DouglasRachford as DouglasRachford
from ._forward_backward import ForwardBackward as ForwardBackward
from ._gradient_descent import GradientDescent as GradientDescent
from ._heavy_ball import HeavyBall as HeavyBall
from ._heavy_ball import HeavyBallState as HeavyBallState
from ._interior_point import InteriorPointQP as InteriorPointQP
from ._interior_point import QPParams as QPParams
from ._interior_point import QPState as QPState
from ._nesterov import Nesterov as Nesterov
from ._nesterov import NesterovState as NesterovState
from ._newton import Newton as Newton
from ._sinkhorn import OTParams as OTParams
from ._sinkhorn import Sinkhorn as Sinkhorn
