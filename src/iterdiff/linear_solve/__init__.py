"""Linear solvers for the implicit system (I − ∂ₓF) v = b and its transpose.

Every solver is matrix-free unless its name says dense, works on any pytree b of float32/float64
arrays (each leaf keeps its dtype), and returns ``(x, LinearSolveStats)``. Success always means
a *true* backward error ‖b − Mx‖₂ ≤ tol · (‖M‖·‖x‖₂ + ‖b‖₂) (residual recomputed at the end, ‖M‖
estimated from below; this contains ‖b − Mx‖₂ ≤ tol · ‖b‖₂ and also accepts the backward-stable
answer of a regular but ill-conditioned system) and a solution that passes the conditioning
checks of `_stats` (otherwise `linear_ill_conditioned`); the stats report the backward error
and the achieved forward accuracy. A failure says why through its `iterdiff.RESULTS` code.

``tol=None`` picks a precision-aware default from the least precise leaf of b: 1e-10 in float64,
1e-5 in float32 (the anchors' 1e-5 default in float64 loses four digits of the derivative; see
benchmarks/RESULTS.md). float16 and bfloat16 are rejected.

Every solver first rescales b to unit norm (and x back), so right-hand sides of any scale
(1e-160 or 1e160 in float64, 1e-20 or 1e19 in float32) give the same relative accuracy; only
operators of extreme scale can still under- or overflow inside dot products.

Choosing a solver:

* `GMRES` (default): any nonsingular system, and consistent singular ones in practice.
* `CG`: I − ∂ₓF symmetric positive definite (gradient descent on a smooth convex problem).
* `BiCGStab`: general systems, short recurrences (memory O(n) instead of O(restart·n)).
* `Neumann`: the piggyback recursion run at x̄, v ← b + ∂ₓF v; needs a contraction.
* `LU`: dense, materialises the n×n matrix with n matvecs; for small n.
* `LeastSquares` (matrix-free, CGLS) / `DenseLeastSquares` (SVD): the minimum-norm solution,
  for singular systems such as the gauge direction of Sinkhorn.

A new solver subclasses `AbstractLinearSolver` and implements `solve_unit` (returning an
`Attempt`), and `prepare` for work done once per operator; `materialize` and `restarted` are the
building blocks of the dense and the iterative built-in solvers (docs/extending.md).
"""

from ._base import AbstractLinearSolver as AbstractLinearSolver
from ._base import Attempt as Attempt
from ._base import Matvec as Matvec
from ._base import restarted as restarted
from ._bicgstab import BiCGStab as BiCGStab
from ._cg import CG as CG
from ._dense_least_squares import DenseLeastSquares as DenseLeastSquares
from ._gmres import GMRES as GMRES
from ._least_squares import LeastSquares as LeastSquares
from ._lu import LU as LU
from ._materialize import materialize as materialize
from ._neumann import Neumann as Neumann
from ._stats import LinearSolveStats as LinearSolveStats
from ._stats import default_tol as default_tol
