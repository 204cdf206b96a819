"""Nonsmooth calculus for iterative algorithms: kink selections, conservative Jacobian sets,
set-valued fixed points and the heavy-ball counterexample.

Reference: Bolte, Pauwels & Vaiter, "Automatic differentiation of nonsmooth iterative
algorithms", NeurIPS 2022; Bolte & Pauwels, "Conservative set valued fields, automatic
differentiation, stochastic gradient methods and deep learning", Math. Prog. 2021.
See docs/nonsmooth.md.
"""

from ._heavy_ball import JSRLowerBound as JSRLowerBound
from ._heavy_ball import gradient_descent_map as gradient_descent_map
from ._heavy_ball import heavy_ball_map as heavy_ball_map
from ._heavy_ball import joint_spectral_radius_lower_bound as joint_spectral_radius_lower_bound
from ._heavy_ball import piecewise_quadratic_grad as piecewise_quadratic_grad
from ._jacobian_set import JacobianSet as JacobianSet
from ._jacobian_set import jacobian_set as jacobian_set
from ._kinks import abs as abs
from ._kinks import clip as clip
from ._kinks import maximum as maximum
from ._kinks import minimum as minimum
from ._kinks import negative_part as negative_part
from ._kinks import relu as relu
from ._kinks import sign as sign
from ._selection import GradientSelection as GradientSelection
from ._set_fixed_point import SetFixedPoint as SetFixedPoint
from ._set_fixed_point import a_priori_bound as a_priori_bound
from ._set_fixed_point import gap as gap
from ._set_fixed_point import hausdorff as hausdorff
from ._set_fixed_point import implicit_set as implicit_set
from ._set_fixed_point import piggyback as piggyback
from ._set_fixed_point import prune as prune
from ._set_fixed_point import set_fixed_point as set_fixed_point
