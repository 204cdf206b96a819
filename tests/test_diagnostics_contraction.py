"""Contraction checks of ∂ₓF at a point against dense linear algebra (zoo problems)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from iterdiff import diagnostics as dg


def _dense(case):
    x_bar = case.exact(case.theta)
    A, _ = zoo.dense_pieces(case, x_bar, case.theta)
    return x_bar, np.asarray(A)


def test_operator_norm_of_gradient_descent_is_norm_of_I_minus_eta_H():
    # ridge GD: ∂ₓF = I − η(H + θI), so ‖∂ₓF‖ = max |1 − η λ| over the eigenvalues λ of H + θI
    # (n = 60: many Krylov steps; the 5-dim ridge is covered by the estimates tests)
    n_features = 60
    case = zoo.ridge(n_samples=2 * n_features, n_features=n_features)
    x_bar, A = _dense(case)
    exact = np.max(np.abs(np.linalg.eigvalsh(A)))
    assert abs(dg.operator_norm(case.F, x_bar, case.theta) - exact) < 1e-6
    c = dg.contraction(case.F, x_bar, case.theta)
    assert abs(c.operator_norm - exact) < 1e-6
    assert abs(c.spectral_radius - exact) < 1e-6  # symmetric: ρ = ‖A‖
    s = np.linalg.svd(np.eye(n_features) - A, compute_uv=False)
    assert abs(c.sigma_min - s[-1]) < 1e-6 * s[0] and abs(c.sigma_max - s[0]) < 1e-8 * s[0]
    assert not c.singular and c.condition == pytest.approx(s[0] / s[-1], rel=1e-5)


def test_nonsymmetric_pytree_map():
    case = zoo.pytree_affine()
    x_bar, A = _dense(case)
    c = dg.contraction(case.F, x_bar, case.theta)
    assert abs(c.operator_norm - 0.6) < 1e-12  # M was scaled to ‖M‖ = 0.6
    assert abs(c.spectral_radius - np.max(np.abs(np.linalg.eigvals(A)))) < 1e-10
    assert abs(dg.spectral_radius(case.F, x_bar, case.theta) - c.spectral_radius) < 1e-12
    assert abs(c.sigma_min - np.linalg.svd(np.eye(7) - A, compute_uv=False)[-1]) < 1e-10


def test_rejects_bad_krylov_dim():
    case = zoo.ridge()
    with pytest.raises(ValueError, match="krylov_dim"):
        dg.contraction(case.F, case.x0, case.theta, krylov_dim=0)


def test_fit_rate_on_geometric_sequences():
    k = jnp.arange(60.0)
    assert abs(float(dg.fit_rate(3.0 * 0.8**k)) - 0.8) < 1e-12
    assert abs(float(dg.fit_rate(0.5 * 1.1**k)) - 1.1) < 1e-12
    # noise floor and unused slots are ignored; too few points give NaN
    v = jnp.where(k < 40, 0.7**k, 1e-300)
    steps = jnp.where(k % 3 == 0, k, -1.0).astype(jnp.int32)
    assert abs(float(jax.jit(dg.fit_rate)(v, steps)) - 0.7) < 1e-10
    assert np.isnan(float(dg.fit_rate(jnp.asarray([1.0, 0.5]))))
