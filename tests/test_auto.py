"""Auto(): the rule it picks from measured properties, and that rule's accuracy (rel. 1e-8)
against closed forms / dense implicit references, in forward and reverse mode under jit, and
under vmap with members that pick different rules (a converged and a non-converged run)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
import zoo
from iterdiff.diagnostics import _flat

EXPECTED = {
    "ridge": "Implicit(GMRES)",
    "lasso": "Implicit(GMRES)",
    "logistic_newton": "OneStep",
    "sinkhorn": "Implicit(LeastSquares)",
}


def _dense_reference(case, theta_dot, cotangent):
    """(readout tangent, θ cotangent) from the dense implicit formula at x̄ (least squares when
    I − ∂ₓF is singular: the readout does not see the null direction)."""
    x_bar = case.exact(case.theta)
    readout = case.readout or (lambda x, t: x)
    A, B = zoo.dense_pieces(case, x_bar, case.theta)
    M = np.eye(A.shape[0]) - np.asarray(A)
    flat_td, _ = _flat.flatten(theta_dot)
    x_dot = np.linalg.lstsq(M, np.asarray(B) @ np.asarray(flat_td), rcond=None)[0]
    _, unravel = _flat.flatten(x_bar)
    y_dot = jax.jvp(readout, (x_bar, case.theta), (unravel(jnp.asarray(x_dot)), theta_dot))[1]
    _, pull = jax.vjp(readout, x_bar, case.theta)
    x_bar_ct, theta_ct = pull(cotangent)
    w = np.linalg.lstsq(M.T, np.asarray(_flat.flatten(x_bar_ct)[0]), rcond=None)[0]
    theta_ct = _flat.flatten(theta_ct)[0] + np.asarray(B).T @ w
    return np.asarray(y_dot), np.asarray(theta_ct)


def _relative(a, b):
    return float(np.linalg.norm(np.ravel(a) - np.ravel(b)) / np.linalg.norm(np.ravel(b)))


@pytest.mark.parametrize("make", [zoo.ridge, zoo.lasso, zoo.logistic_newton, zoo.sinkhorn])
def test_auto_picks_the_rule_and_is_accurate(make):
    case = make()
    readout = case.readout or (lambda x, t: x)
    theta_dot = _flat.random_direction(case.theta, 1)
    x_like = readout(case.exact(case.theta), case.theta)
    cotangent = jax.random.normal(jax.random.key(2), x_like.shape, x_like.dtype)

    def solve(theta):
        sol = itd.fixed_point(
            case.F, case.x0, theta, mode=itd.Auto(), tol=1e-12, max_steps=case.max_steps
        )
        return readout(sol.value, theta), sol.stats["auto"]

    # reverse mode here only where the transposed rule is not covered by the vmap test below
    reverse = case.name == "sinkhorn"

    @jax.jit
    def derivatives(theta):
        (_, record), (y_dot, _) = jax.jvp(solve, (theta,), (theta_dot,))
        grad = jax.grad(lambda t: jnp.sum(cotangent * solve(t)[0]))(theta) if reverse else theta
        return record, y_dot, _flat.flatten(grad)[0]

    record, y_dot, grad = derivatives(case.theta)
    assert itd.Auto.CHOICES[int(record["choice"])] == EXPECTED[case.name]
    assert itd.Auto().describe(record).startswith(EXPECTED[case.name])
    ref_dot, ref_grad = _dense_reference(case, theta_dot, cotangent)
    assert _relative(y_dot, ref_dot) <= 1e-8
    if reverse:
        assert _relative(grad, ref_grad) <= 1e-8


def _affine():
    """x = c·M x + s·v with ‖M‖₂ = 1: contraction rate |c|; θ = {"c", "s"}."""
    rng = np.random.default_rng(5)
    M = rng.normal(size=(6, 6))
    M = jnp.asarray(M / np.linalg.norm(M, 2))
    v = jnp.asarray(rng.normal(size=6))

    def F(x, theta):
        return theta["c"] * (M @ x) + theta["s"] * v

    def exact(theta):
        return jnp.linalg.solve(jnp.eye(6) - theta["c"] * M, theta["s"] * v)

    return F, exact


def test_auto_under_vmap_mixes_implicit_and_unrolled():
    # member 0 (‖A‖ = 0.2) converges within 12 steps: Implicit, equal to the closed form;
    # member 1 (‖A‖ = 0.95, 37 steps needed) does not: Unrolled, the exact derivative of the
    # 12 steps that ran
    F, exact = _affine()
    thetas = {"c": jnp.asarray([0.2, 0.95]), "s": jnp.asarray([1.0, 1.0])}
    steps = 12
    x0 = jnp.zeros(6)
    weights = jnp.linspace(-1.0, 1.0, 6)

    def loss(theta):
        sol = itd.fixed_point(F, x0, theta, mode=itd.Auto(), max_steps=steps, throw=False)
        return weights @ sol.value, sol.stats["auto"]

    grads, records = jax.jit(jax.vmap(jax.grad(loss, has_aux=True)))(thetas)
    assert [itd.Auto.CHOICES[int(c)] for c in records["choice"]] == ["Implicit(GMRES)", "Unrolled"]
    assert bool(records["converged"][0]) and not bool(records["converged"][1])

    def ran(theta):
        return weights @ jax.lax.fori_loop(0, steps, lambda _, x: F(x, theta), x0)

    references = [jax.grad(lambda t: weights @ exact(t)), jax.grad(ran)]
    for i, reference in enumerate(references):
        member = jax.tree_util.tree_map(lambda a, i=i: a[i], thetas)
        got = _flat.flatten(jax.tree_util.tree_map(lambda a, i=i: a[i], grads))[0]
        assert _relative(got, _flat.flatten(reference(member))[0]) <= 1e-8


def test_auto_records_its_choice_without_derivatives_and_checks_options():
    F, _ = _affine()
    theta = {"c": jnp.asarray(0.5), "s": jnp.asarray(1.0)}
    sol = jax.jit(lambda t: itd.fixed_point(F, jnp.zeros(6), t, mode=itd.Auto()))(theta)
    record = sol.stats["auto"]
    assert int(record["choice"]) == itd.Auto.CHOICES.index("Implicit(GMRES)")
    # ‖c·M‖ = 0.5 exactly, and σ(I − cM) from 6 Golub–Kahan steps on a 6-dim map are exact
    assert abs(float(record["operator_norm"]) - 0.5) < 1e-12
    dense = np.linalg.svd(np.eye(6) - np.asarray(jax.jacfwd(F)(sol.value, theta)), compute_uv=False)
    assert abs(float(record["sigma_min"]) - dense[-1]) < 1e-12 * dense[0]
    assert "regular" in itd.Auto().describe(record)
    with pytest.raises(ValueError, match="auto"):
        itd.fixed_point(
            F, jnp.zeros(6), theta, mode=itd.Auto(), observe={"auto": itd.Trace(lambda k, x, fx: k)}
        )
    with pytest.raises(ValueError, match="krylov_steps"):
        itd.Auto(krylov_steps=0)
    with pytest.raises(TypeError, match="linear_solve"):
        itd.Auto(linear_solver="gmres")
