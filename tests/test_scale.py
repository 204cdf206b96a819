"""Scale (issue 11): batches under vmap stop per problem, sharded runs agree with unsharded
ones, and the multi-host recipe runs on localhost.

Batching: `jax.vmap` of the forward while loop keeps iterating until the slowest member has
stopped, but JAX's batching rule for a while loop with a batched predicate selects the old
carry for members whose predicate is false, so a member that has stopped is frozen (its
value, step count, residual and observer state stay those of its own last step). These tests
pin that down against unbatched solves, value and derivative, in every mode, with members
that need from 6 to 566 steps.
"""

import functools
import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
import tolerances

ROOT = pathlib.Path(__file__).resolve().parents[1]

# F(x, θ) = r·sin(x) + c with c = x̄ − r·sin(x̄): the fixed point is x̄ for every r, and the
# contraction rate is ≈ r, so members with r from 0.05 to 0.98 stop after 6 to 566 steps.
XBAR = jnp.asarray([0.1, 0.2, 0.3])
RATES = jnp.asarray([0.05, 0.98, 0.5, 0.9])


def F(x, theta):
    return theta["r"] * jnp.sin(x) + theta["c"]


def thetas():
    r = RATES
    return {"r": r, "c": XBAR[None, :] - r[:, None] * jnp.sin(XBAR)[None, :]}


def x0s():
    return jnp.stack([jnp.full(3, s) for s in (1.0, -1.0, 0.5, 2.0)])


MODES = {
    "Implicit": itd.Implicit(),
    # 4 stored iterates: runs of 6 to 566 steps thin the store and recompute stretches at
    # several levels, each member at its own depth
    "Unrolled": itd.Unrolled(checkpoints=4),
    "OneStep": itd.OneStep(),
    "Truncated": itd.Truncated(5),
}
SOLVERS = {"Picard": itd.Picard(), "Anderson": itd.Anderson(history=3)}


def _solve(mode, solver, observe=None):
    def solve(x0, theta):
        return itd.fixed_point(
            F, x0, theta, mode=mode, solver=solver, max_steps=2000, observe=observe
        )

    def everything(x0, theta):
        sol = solve(x0, theta)

        def out(x0, theta):
            return solve(x0, theta).value

        def loss(x0, theta):
            return jnp.sum(out(x0, theta) ** 2)

        grads = jax.grad(loss, argnums=(0, 1))(x0, theta)
        direction = (jnp.ones_like(x0), jax.tree_util.tree_map(jnp.ones_like, theta))
        tangent = jax.jvp(out, (x0, theta), direction)[1]
        return sol, grads, tangent

    return everything


CASES = [
    ("Implicit", "Picard"),
    ("Unrolled", "Picard"),
    ("OneStep", "Picard"),
    ("Truncated", "Picard"),
    ("Unrolled", "Anderson"),  # the derivative goes through Anderson's own update
]


# Two runs of one computation that round differently (a batched LU or reduction against a
# single one) differ by the rounding of that computation at its condition number
# (tolerances.rounding), plus, where a run stops on a tolerance, what the stopping allows:
# * the fixed point of a ρ-contraction has condition number 1/(1 − ρ), and so does its
#   derivative (I − A)⁻¹B;
# * Anderson's small least-squares systems are conditioned at worst m/regularization (the
#   Tikhonov weight bounds the Gram matrix's smallest eigenvalue): their rounding moves the
#   mixing weights by that relative amount, and the weights multiply the history's spread,
#   which is the distance to x̄ (tolerances.stopping); Unrolled differentiates those solves;
# * Implicit's GMRES stops at a relative residual tol: two runs may stop at different
#   iterations, each within cond·tol of the exact derivative.
ANDERSON = SOLVERS["Anderson"]
GMRES_TOL = 1e-10  # itd.linear_solve.GMRES's float64 default


def _tolerances(mode_name, solver_name, rho, residual):
    """(value atol, derivative rtol) for one member (its values are O(1): XBAR)."""
    cond = 1.0 / (1.0 - rho)
    value = tolerances.rounding(jnp.float64, cond=cond, n=len(XBAR))
    derivative = tolerances.rounding(jnp.float64, cond=cond, n=len(XBAR))
    if solver_name == "Anderson":
        kappa = ANDERSON.history / ANDERSON.regularization
        mixing = tolerances.rounding(jnp.float64, cond=kappa, n=ANDERSON.history + 1)
        value += mixing * tolerances.stopping(residual, rho)
        if mode_name == "Unrolled":
            derivative += tolerances.rounding(jnp.float64, cond=cond * kappa, n=len(XBAR))
    if mode_name == "Implicit":
        derivative += 2 * tolerances.SAFETY * cond * GMRES_TOL
    return value, derivative


@functools.cache
def _batched_and_single(mode_name, solver_name):
    """The batch solved under jit(vmap) and each member solved alone (one compile each)."""
    everything = _solve(MODES[mode_name], SOLVERS[solver_name])
    batched = jax.jit(jax.vmap(everything))(x0s(), thetas())
    single = jax.jit(everything)
    refs = [single(x0s()[i], _member(thetas(), i)) for i in range(len(RATES))]
    return batched, refs


def _member(tree, i):
    return jax.tree_util.tree_map(lambda a: a[i], tree)


@pytest.mark.parametrize(("mode_name", "solver_name"), CASES)
def test_batched_members_stop_on_their_own_and_match_unbatched(mode_name, solver_name):
    batched, refs = _batched_and_single(mode_name, solver_name)
    steps = []
    for i, ref in enumerate(refs):
        got = _member(batched, i)
        sol, ref_sol = got[0], ref[0]
        # the reported Solution is the member's own: same step count, value, residual
        assert int(sol.steps) == int(ref_sol.steps)
        assert int(sol.result) == int(ref_sol.result) == itd.RESULTS.successful
        value_tol, derivative_rtol = _tolerances(
            mode_name, solver_name, float(RATES[i]), float(ref_sol.residual)
        )
        np.testing.assert_allclose(sol.value, ref_sol.value, rtol=0, atol=value_tol)
        # F − I is (1 + ρ)-Lipschitz: the residuals differ by at most (1 + ρ) times the values
        np.testing.assert_allclose(
            sol.residual, ref_sol.residual, rtol=0, atol=(1 + float(RATES[i])) * value_tol
        )
        assert float(ref_sol.residual) <= 1e-8 * (1 + float(jnp.max(jnp.abs(ref_sol.value))))
        # and the member's derivatives, reverse (grad in x0 and θ) and forward (jvp), are the
        # unbatched ones
        for a, b in zip(
            jax.tree_util.tree_leaves(got[1:]), jax.tree_util.tree_leaves(ref[1:]), strict=True
        ):
            scale = float(np.max(np.abs(b))) or 1.0
            np.testing.assert_allclose(a, b, rtol=0, atol=derivative_rtol * scale)
        steps.append(int(ref_sol.steps))
    # the members really do stop at very different steps
    assert max(steps) > 10 * min(steps)


def test_batched_implicit_derivative_is_the_closed_form():
    """dx̄/dc = (I − r·diag(cos x̄))⁻¹ (diagonal), so the jvp along ċ = 1, ṙ = 1, ẋ0 = 1 is
    (sin x̄ + 1)/(1 − r cos x̄): checks the batched rule against the math."""
    (_, _, tangent), _ = _batched_and_single("Implicit", "Picard")
    expected = (jnp.sin(XBAR)[None, :] + 1) / (1 - RATES[:, None] * jnp.cos(XBAR)[None, :])
    np.testing.assert_allclose(tangent, expected, rtol=1e-5)


def test_batched_observers_record_each_member_until_its_own_stop():
    trace = {"t": itd.Trace(lambda k, x, fx: jnp.sum(x), size=8)}

    def solve(x0, theta):
        return itd.fixed_point(F, x0, theta, max_steps=2000, observe=trace)

    batched = jax.jit(jax.vmap(solve))(x0s(), thetas())
    single = jax.jit(solve)
    for i in range(len(RATES)):
        got, ref = _member(batched, i).stats["t"], single(x0s()[i], _member(thetas(), i)).stats["t"]
        np.testing.assert_array_equal(got["step"], ref["step"])
        np.testing.assert_allclose(got["value"], ref["value"], rtol=1e-12)


def test_batched_failure_flags_only_the_failing_member():
    """With throw=False a member that hits max_steps is flagged; the others are untouched."""

    def solve(x0, theta):
        return itd.fixed_point(F, x0, theta, max_steps=300, throw=False)

    sol = jax.jit(jax.vmap(solve))(x0s(), thetas())
    codes = [int(c) for c in sol.result]
    assert codes[1] == itd.RESULTS.max_steps_reached  # r = 0.98 needs 566 steps
    assert int(sol.steps[1]) == 300
    assert max(int(k) for i, k in enumerate(sol.steps) if i != 1) < 300  # r ≤ 0.9: at most 138
    assert [c for i, c in enumerate(codes) if i != 1] == [itd.RESULTS.successful] * 3
    assert list(np.asarray(sol.converged)) == [True, False, True, True]


# --- Sharding: one subprocess with 4 virtual CPU devices checks everything --------------------


@pytest.fixture(scope="module")
def sharded_report():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "tests._sharded_script"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_sharded_runs_see_four_devices(sharded_report):
    assert sharded_report["devices"] == 4


@pytest.mark.parametrize("mode_name", list(MODES))
@pytest.mark.parametrize(
    "case", ["batch_jit_named_sharding", "batch_shard_map", "lasso_rows_sharded"]
)
def test_sharded_equals_unsharded(sharded_report, case, mode_name):
    row = sharded_report["cases"][case][mode_name]
    assert row["sharded"], "the input was not actually sharded over the 4 devices"
    assert row["steps_equal"], row
    assert row["value_err"] <= 1e-12, row
    assert row["grad_err"] <= 1e-10, row
    assert row["jvp_err"] <= 1e-10, row


# --- Multi-host recipe: two processes on localhost --------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_solve_their_shards_and_agree():
    port = _free_port()
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests._multihost_script", str(i), str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("the two jax.distributed processes did not finish in 240 s")
        outs.append((p.returncode, out, err))
    if any("SKIP:" in out for _, out, _ in outs):
        pytest.skip(next(o for _, o, _ in outs if "SKIP:" in o).split("SKIP:", 1)[1].strip())
    for rc, _, err in outs:
        assert rc == 0, err[-4000:]
    reports = [json.loads(out.strip().splitlines()[-1]) for _, out, _ in outs]
    assert [r["process_index"] for r in reports] == [0, 1]
    for r in reports:
        assert r["process_count"] == 2 and r["global_devices"] == 2
        assert r["local_rows"] == 4  # each process solved its half of the batch of 8
        assert r["value_err"] <= 1e-12 and r["grad_err"] <= 1e-10 and r["steps_equal"]
    # both processes gathered the same global result
    assert reports[0]["checksum"] == reports[1]["checksum"]


# --- The throughput benchmark cannot rot -------------------------------------------------------


def test_bench_scale_smoke():
    sys.path.insert(0, str(ROOT))
    from benchmarks import bench_scale

    with jax.numpy_dtype_promotion("standard"):  # the benchmark is user code
        sizes = bench_scale.batch_sizes((2,))
        spread = bench_scale.spread(4)
    assert sizes[0]["batch"] == 2 and sizes[0]["solves_per_s"] > 0
    by_case = {r["case"]: r for r in spread}
    # the loop runs as long as the slowest member: one slow member sets the batch's iterations
    assert by_case["one slow"]["loop_steps"] == by_case["all slow"]["loop_steps"]
    assert by_case["all fast"]["loop_steps"] < by_case["one slow"]["loop_steps"] / 10
    text = bench_scale.report(
        {"machine": "test", "batch_sizes": sizes, "devices": [], "spread": spread}
    )
    assert "solves/s" in text
