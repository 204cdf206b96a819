"""float32 end to end (issue 11): the stopping tolerances follow the dtype, a float32 problem
stays float32 in every mode (no float64 value anywhere in the traced program, float64 enabled),
derivatives are accurate to float32 level, and half precision is rejected with a clear error.

Measured (ℓ2-logistic regression by gradient descent, 6 weights, ∂‖w̄‖²/∂λ, and ∂w̄/∂λ):
* float32 against float64 run with the same tolerance (1e-5), same mode: relative difference
  ≤ 2e-7 in every mode (rounding alone; float32's ε is 6e-8).
* float32 at the default tolerance (1e-5) against the exact derivative (float64, tol 1e-13):
  Implicit 2.2e-4, Unrolled 2.2e-3 (Unrolled and Truncated(20) also carry their own truncation
  error, OneStep is not consistent for gradient descent); with tol=1e-6, Implicit 2.4e-5 —
  the stopping tolerance, not rounding, sets the accuracy.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
from iterdiff import linear_solve as ls

# --- a float32 problem: ℓ2-regularized logistic regression by gradient descent -------------

_rng = np.random.default_rng(0)
M, N = 40, 6
X = _rng.standard_normal((M, N))
Y = np.where(_rng.random(M) < 0.5, -1.0, 1.0)
STEP = float(1.0 / (np.linalg.norm(X, 2) ** 2 / (4 * M) + 1.0))


def logistic_map(dtype):
    Xd, Yd = jnp.asarray(X, dtype), jnp.asarray(Y, dtype)

    def F(w, lam):
        z = Yd * (Xd @ w)
        grad = -(Xd.T @ (Yd * jax.nn.sigmoid(-z))) / M + lam * w
        return w - STEP * grad

    return F


MODES = {
    "Implicit": itd.Implicit(),
    "Implicit-CG": itd.Implicit(ls.CG()),
    "Implicit-LU": itd.Implicit(ls.LU()),
    "Unrolled": itd.Unrolled(),
    "OneStep": itd.OneStep(),
    "Truncated": itd.Truncated(20),
}


def _weights(dtype, mode, solver=itd.Picard(), tol=None):
    F = logistic_map(dtype)

    def weights(lam):
        return itd.fixed_point(
            F, jnp.zeros(N, dtype), lam, mode=mode, solver=solver, tol=tol, max_steps=10_000
        )

    return weights


def _float64_values(jaxpr) -> list[str]:
    """Every float64 value in a jaxpr (and the jaxprs inside it) that could promote: arrays,
    and scalars that are not weakly typed. (Weakly typed scalars, such as a Python ``nan`` in
    ``jnp.where(bad, nan, x)``, take the dtype of what they meet and never upcast.)"""
    found = []

    def visit_var(v, where):
        aval = getattr(v, "aval", None)
        if getattr(aval, "dtype", None) == jnp.float64 and (
            aval.ndim > 0 or not getattr(aval, "weak_type", False)
        ):
            found.append(f"{aval.str_short()} in {where}")

    def visit(jx):
        jx = getattr(jx, "jaxpr", jx)
        for v in (*jx.invars, *jx.outvars, *jx.constvars):
            visit_var(v, "a jaxpr's inputs/outputs")
        for eqn in jx.eqns:
            for v in (*eqn.invars, *eqn.outvars):
                visit_var(v, eqn.primitive.name)
            for param in eqn.params.values():
                for sub in param if isinstance(param, list | tuple) else (param,):
                    if hasattr(sub, "eqns") or hasattr(getattr(sub, "jaxpr", None), "eqns"):
                        visit(sub)

    visit(jaxpr)
    return found


SOLVERS = {"Picard": itd.Picard(), "Anderson": itd.Anderson(history=3)}
DTYPE_CASES = [(m, "Picard") for m in MODES] + [("Implicit", "Anderson"), ("Unrolled", "Anderson")]


@pytest.mark.parametrize(("mode_name", "solver_name"), DTYPE_CASES)
def test_float32_problem_stays_float32(mode_name, solver_name):
    weights = _weights(jnp.float32, MODES[mode_name], SOLVERS[solver_name])
    lam = jnp.asarray(0.1, jnp.float32)

    def loss(lam):
        return jnp.sum(weights(lam).value ** 2)

    programs = {
        "solve": weights,
        "grad": jax.grad(loss),
        "jvp": lambda lam: jax.jvp(lambda t: weights(t).value, (lam,), (jnp.ones_like(lam),)),
        "jacrev": jax.jacrev(lambda t: weights(t).value),
        "hessian": jax.hessian(loss),
    }
    for name, program in programs.items():
        jaxpr = jax.make_jaxpr(program)(lam)
        dtypes = {aval.dtype for aval in jaxpr.out_avals}
        assert dtypes <= {jnp.dtype(jnp.float32), jnp.dtype(jnp.int32)}, (name, dtypes)
        assert _float64_values(jaxpr) == [], name


def test_float32_solution_fields_and_defaults():
    sol = jax.jit(_weights(jnp.float32, itd.Implicit()))(jnp.asarray(0.1, jnp.float32))
    assert sol.value.dtype == jnp.float32 and sol.residual.dtype == jnp.float32
    assert sol.steps.dtype == jnp.int32 and bool(sol.converged)
    # the default stopping rule in float32 is rtol = atol = 1e-5 (1e-8 in float64)
    assert float(sol.residual) <= 1e-5 * (1 + float(jnp.max(jnp.abs(sol.value))))
    same = jax.jit(_weights(jnp.float32, itd.Implicit(), tol=1e-5))(jnp.asarray(0.1, jnp.float32))
    assert int(same.steps) == int(sol.steps)
    wide = jax.jit(_weights(jnp.float64, itd.Implicit()))(jnp.asarray(0.1))
    assert int(wide.steps) > int(sol.steps)
    assert float(wide.residual) <= 1e-8 * (1 + float(jnp.max(jnp.abs(wide.value))))
    # the implicit derivative's linear solve defaults to a relative residual of 1e-5
    assert ls.default_tol(jnp.float32) == 1e-5 and ls.default_tol(jnp.float64) == 1e-10
    # a pytree with a float32 and a float64 leaf takes the float32 default
    mixed = itd.fixed_point(
        lambda x, t: {"a": 0.5 * x["a"] + t, "b": 0.5 * x["b"] + 1.0},
        {"a": jnp.zeros(2, jnp.float32), "b": jnp.zeros(2)},
        jnp.asarray(1.0, jnp.float32),
    )
    assert mixed.value["a"].dtype == jnp.float32 and mixed.value["b"].dtype == jnp.float64
    assert float(mixed.residual) <= 1e-5 * (1 + 2.0) and float(mixed.residual) > 1e-8


ACCURACY_MODES = ["Implicit", "Unrolled", "OneStep", "Truncated"]


def _hypergradients(dtype, tol):
    """{mode: (∂‖w̄‖²/∂λ, ∂w̄/∂λ)} at λ = 0.1, all modes in one compiled program."""

    def all_modes(lam):
        out = {}
        for name in ACCURACY_MODES:
            weights = _weights(dtype, MODES[name], tol=tol)
            grad = jax.grad(lambda t, w=weights: jnp.sum(w(t).value ** 2))(lam)
            tangent = jax.jvp(lambda t, w=weights: w(t).value, (lam,), (jnp.ones_like(lam),))[1]
            out[name] = (grad, tangent)
        return out

    return jax.jit(all_modes)(jnp.asarray(0.1, dtype))


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def exact():
    weights = _weights(jnp.float64, itd.Implicit(), tol=1e-13)
    lam = jnp.asarray(0.1)
    grad = jax.grad(lambda t: jnp.sum(weights(t).value ** 2))(lam)
    return grad, jax.jacfwd(lambda t: weights(t).value)(lam)


def test_float32_derivatives_are_accurate_to_float32_level(exact):
    f32 = _hypergradients(jnp.float32, None)  # default tolerance 1e-5
    f64 = _hypergradients(jnp.float64, 1e-5)  # same tolerance, float64 arithmetic
    for name in ACCURACY_MODES:
        assert f32[name][0].dtype == jnp.float32 and f32[name][1].dtype == jnp.float32
        # rounding: float32 against float64 with the same stopping rule, same mode
        assert _rel(f32[name][0], f64[name][0]) < 1e-6, name
        assert _rel(f32[name][1], f64[name][1]) < 1e-6, name
    # against the exact derivative the stopping tolerance dominates (measured 2.2e-4)
    assert _rel(f32["Implicit"][0], exact[0]) < 1e-3
    assert _rel(f32["Implicit"][1], exact[1]) < 1e-3


def test_float32_tighter_tolerance_buys_accuracy(exact):
    weights = _weights(jnp.float32, itd.Implicit(), tol=1e-6)
    grad = jax.jit(jax.grad(lambda t: jnp.sum(weights(t).value ** 2)))(
        jnp.asarray(0.1, jnp.float32)
    )
    assert grad.dtype == jnp.float32
    assert _rel(grad, exact[0]) < 1e-4  # measured 2.1e-5


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_is_rejected_with_a_clear_error(dtype):
    with pytest.raises(TypeError, match="Half precision is not supported"):
        itd.fixed_point(lambda x, t: 0.5 * x + t, jnp.zeros(3, dtype), jnp.asarray(1.0, dtype))
    with pytest.raises(TypeError, match=r"x0\['b'\] has dtype"):
        itd.fixed_point(
            lambda x, t: x,
            {"a": jnp.zeros(2, jnp.float32), "b": jnp.zeros(2, dtype)},
            jnp.asarray(1.0, jnp.float32),
        )
