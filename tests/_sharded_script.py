"""Sharded solves against unsharded ones, on 4 virtual CPU devices (run by tests/test_scale.py).

Run as ``python -m tests._sharded_script`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` set before JAX starts. Prints one line
of JSON: for each case and mode, whether the input was sharded, whether the step counts are
equal, and the largest differences of the value, a gradient and a jvp from the unsharded run.

Cases:
* ``batch_jit_named_sharding``: a batch of 8 problems (members needing 7 to 561 steps) placed
  with ``NamedSharding(mesh, P("batch"))`` and solved by ``jit(vmap(...))``: XLA partitions
  the batched loop (it runs until the slowest member of the whole batch stops; each member
  is frozen at its own stop).
* ``batch_shard_map``: the same batch with ``jax.shard_map``: each device runs its own loop
  over its 2 members, so a device stops when its own members have stopped.
* ``lasso_rows_sharded``: one Lasso solved by forward–backward with the rows of A and b
  sharded (``P("rows", None)``, ``P("rows")``): Aᵀ(Ax − b) becomes a sum over devices.

``shard_map`` runs with ``check_vma=False``: iterdiff's internal loops (the forward loop, the
linear solves, the error check) start their carries from constants, which the varying-manual-
axes type check rejects as "not varying over 'batch'"; the computation itself is per device.
"""

import json
import os

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import iterdiff as itd  # noqa: E402

MODES = {
    "Implicit": itd.Implicit(),
    "Unrolled": itd.Unrolled(),
    "OneStep": itd.OneStep(),
    "Truncated": itd.Truncated(5),
}


def _err(a, b) -> float:
    leaves = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in leaves)


def _is_sharded(arr) -> bool:
    return len(arr.sharding.device_set) == 4 and not arr.sharding.is_fully_replicated


# --- a batch of small problems: F(x, θ) = r·sin(x) + c, fixed point XBAR, rate ≈ r ----------

XBAR = jnp.asarray([0.1, 0.2, 0.3])
RATES = jnp.asarray([0.05, 0.98, 0.5, 0.9, 0.3, 0.7, 0.95, 0.2])


def batch_inputs():
    x0 = jnp.stack([jnp.full(3, s) for s in np.linspace(-1.0, 2.0, 8)])
    theta = {"r": RATES, "c": XBAR[None, :] - RATES[:, None] * jnp.sin(XBAR)[None, :]}
    return x0, theta


def member(mode):
    """(x0, θ) -> (value, steps, grad of ‖x‖² in (x0, θ), jvp along ones) for one problem."""

    def out(x0, theta):
        return itd.fixed_point(
            lambda x, t: t["r"] * jnp.sin(x) + t["c"], x0, theta, mode=mode, max_steps=2000
        )

    def everything(x0, theta):
        sol = out(x0, theta)
        grad = jax.grad(lambda a, t: jnp.sum(out(a, t).value ** 2), argnums=(0, 1))(x0, theta)
        ones = (jnp.ones_like(x0), jax.tree_util.tree_map(jnp.ones_like, theta))
        jvp = jax.jvp(lambda a, t: out(a, t).value, (x0, theta), ones)[1]
        return sol.value, sol.steps, grad, jvp

    return everything


def compare(sharded, plain, sharded_input) -> dict:
    return {
        "sharded": bool(_is_sharded(sharded_input) and _is_sharded(sharded[0])),
        "steps_equal": bool(np.array_equal(sharded[1], plain[1])),
        "value_err": _err(sharded[0], plain[0]),
        "grad_err": _err(sharded[2], plain[2]),
        "jvp_err": _err(sharded[3], plain[3]),
    }


def every_mode(make):
    """One function running ``make(mode)`` for every mode (one compile per placement)."""
    fns = {name: make(mode) for name, mode in MODES.items()}
    return lambda *args: {name: fn(*args) for name, fn in fns.items()}


def batch_cases(mesh) -> dict:
    x0, theta = batch_inputs()
    spec = NamedSharding(mesh, P("batch"))
    x0_s, theta_s = jax.device_put((x0, theta), spec)
    batched = jax.jit(jax.vmap(every_mode(member)))
    per_device = jax.jit(
        jax.shard_map(
            jax.vmap(every_mode(member)),
            mesh=mesh,
            in_specs=P("batch"),
            out_specs=P("batch"),
            check_vma=False,  # iterdiff's loops start from constants (see docs/scaling_up.md)
        )
    )
    plain, by_jit, by_map = batched(x0, theta), batched(x0_s, theta_s), per_device(x0_s, theta_s)
    return {
        "batch_jit_named_sharding": {m: compare(by_jit[m], plain[m], x0_s) for m in MODES},
        "batch_shard_map": {m: compare(by_map[m], plain[m], x0_s) for m in MODES},
    }


# --- one Lasso with its rows sharded -----------------------------------------------------------


def lasso_inputs():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((64, 8)) / 8.0
    x_true = np.array([1.0, -2.0, 0.0, 0.0, 0.5, 0.0, 0.0, 3.0])
    b = A @ x_true + 0.01 * rng.standard_normal(64)
    step = 1.0 / np.linalg.norm(A, 2) ** 2
    return jnp.asarray(A), jnp.asarray(b), jnp.asarray(0.05), float(step)


def lasso(mode, step):
    """(A, b, λ) -> (x̄, steps, grad of ‖A x̄ − b‖² in (b, λ), jvp along (b, λ) = ones)."""

    def out(A, b, lam):
        def F(x, theta):
            b, lam = theta
            z = x - step * (A.T @ (A @ x - b))
            return itd.prox.soft_threshold(z, step * lam)

        return itd.fixed_point(F, jnp.zeros(A.shape[1]), (b, lam), mode=mode, max_steps=5000)

    def everything(A, b, lam):
        sol = out(A, b, lam)

        def loss(b, lam):
            return jnp.sum((A @ out(A, b, lam).value - b) ** 2)

        grad = jax.grad(loss, argnums=(0, 1))(b, lam)
        jvp = jax.jvp(
            lambda b, lam: out(A, b, lam).value, (b, lam), (jnp.ones_like(b), jnp.ones_like(lam))
        )[1]
        return sol.value, sol.steps, grad, jvp

    return everything


def lasso_case(mesh) -> dict:
    A, b, lam, step = lasso_inputs()
    A_s = jax.device_put(A, NamedSharding(mesh, P("rows", None)))
    b_s = jax.device_put(b, NamedSharding(mesh, P("rows")))
    f = jax.jit(every_mode(lambda mode: lasso(mode, step)))
    plain, sharded = f(A, b, lam), f(A_s, b_s, lam)
    rows = {}
    for name in MODES:
        row = compare(sharded[name], plain[name], A_s)
        # x̄ is small and replicated; the sharded inputs are A, b and the gradient in b
        row["sharded"] = bool(_is_sharded(A_s) and _is_sharded(sharded[name][2][0]))
        rows[name] = row
    return {"lasso_rows_sharded": rows}


def main():
    devices = jax.devices()
    mesh = Mesh(np.array(devices), ("batch",))
    rows_mesh = Mesh(np.array(devices), ("rows",))
    cases = {**batch_cases(mesh), **lasso_case(rows_mesh)}
    print(
        json.dumps(
            {"devices": len(devices), "xla_flags": os.environ.get("XLA_FLAGS"), "cases": cases}
        )
    )


if __name__ == "__main__":
    main()
