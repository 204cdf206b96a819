"""Proximal operators and projections with an explicit derivative at their kinks.

All of them are piecewise smooth. Away from kinks their derivative is the classical one (tested
against closed forms); *at* a kink, ``at_kink = s ∈ [0, 1]`` chooses the derivative

    s · (derivative of the pass-through piece) + (1 − s) · (derivative of the clamped piece),

where "pass-through" is the piece on the side where the input still moves the output (|x| > λ
for soft-thresholding, the inside of a box, ball or halfspace, a coordinate on the support, an
inactive constraint) and "clamped" the other. The default ``at_kink=0`` treats a point exactly
on a kink as clamped, the convention of relu'(0) = 0 and of the usual implementation
sign(x)·relu(|x| − λ): a Lasso coordinate with |z| = λ counts as off the support. Every choice of
s is an element of the Clarke Jacobian of the operator; the extremes s ∈ {0, 1} are the
Jacobians of the two pieces (what `nonsmooth.jacobian_set` enumerates). Where a kink is decided
on a computed sum (a norm on a sphere, aᵀx on a hyperplane) it is decided up to the rounding of
that sum: |residual| ≤ 4√n·ε·scale. See docs/nonsmooth.md for the table of conventions.

Pytrees: separable operators (thresholding, ridge, orthant, box) act leaf by leaf, with
parameters shared or given per leaf; set projections (balls, spheres, simplex, hyperplane,
halfspace, affine set, box section, polyhedron) treat all leaves of x as one vector (in
``jax.tree_util`` leaf order, each leaf raveled). The transport polytope takes one matrix.

Use them inside a fixed-point map, e.g. forward–backward on the Lasso:
``F(x, lam) = soft_threshold(x − γ Aᵀ(Ax − b), γ·lam)``.

Reference: Bolte, Pauwels & Vaiter, "Automatic differentiation of nonsmooth iterative
algorithms", NeurIPS 2022.
"""

from ._affine import project_affine_set as project_affine_set
from ._affine import project_halfspace as project_halfspace
from ._affine import project_hyperplane as project_hyperplane
from ._balls import project_l2_ball as project_l2_ball
from ._balls import project_l2_sphere as project_l2_sphere
from ._box_section import project_box_section as project_box_section
from ._elementwise import group_soft_threshold as group_soft_threshold
from ._elementwise import project_box as project_box
from ._elementwise import project_nonnegative as project_nonnegative
from ._elementwise import prox_elastic_net as prox_elastic_net
from ._elementwise import prox_nonnegative_lasso as prox_nonnegative_lasso
from ._elementwise import prox_nonnegative_ridge as prox_nonnegative_ridge
from ._elementwise import prox_ridge as prox_ridge
from ._elementwise import soft_threshold as soft_threshold
from ._indicator import prox_from_projection as prox_from_projection
from ._polyhedron import project_polyhedron as project_polyhedron
from ._simplex import project_l1_ball as project_l1_ball
from ._simplex import project_l1_sphere as project_l1_sphere
from ._simplex import project_simplex as project_simplex
from ._simplex import project_sparse_simplex as project_sparse_simplex
from ._transport import project_birkhoff as project_birkhoff
from ._transport import project_transport as project_transport
