"""Projection onto an affine set with some rows switched off: the polish and the derivative of
the projections that first find their active set iteratively (polyhedron, transport polytope)."""

import jax.numpy as jnp


def project_rows(v, C, r, active):
    """(y, μ): the projection of v onto {C_i y = r_i for the active rows}, y = v − Cᵀμ with
    μ = (C̃C̃ᵀ)⁺(C̃v − r̃), C̃ the active rows (inactive rows zeroed; μ = 0 there)."""
    mask = active.astype(v.dtype)
    Ct, rt = C * mask[:, None], r * mask
    mu = jnp.linalg.pinv(Ct @ Ct.T) @ (Ct @ v - rt)
    return v - Ct.T @ mu, mu
