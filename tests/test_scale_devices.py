"""Sharded batches on virtual CPU devices (issue 28 item 8).

A batch of 1024 Lasso hypergradients sharded over 2 virtual CPU devices of a 2-core machine
hung in execution (benchmarks/bench_scale.py). The cause is in jaxlib 0.10
(jaxlib/cpu/lapack_kernels.cc, ``ParallelBatchMap``): a batched LAPACK call whose work
(batch × FLOPs per matrix) reaches 2·10⁵ splits its batch into tasks on XLA's intra-op thread
pool and blocks its own pool thread until they finish. Each device runs its program on one pool
thread, so when as many devices as pool threads (one per core) are inside such a call at once,
no thread is left to run the tasks: a deadlock at 0% CPU. A gdb backtrace of the hang shows both
pool threads in ``BlockingCounter::Wait`` under ``lapack_strsm_ffi``; a ten-line script with
``jax.scipy.linalg.solve_triangular`` under ``shard_map`` (no iterdiff) hangs the same way, and
never on one device. Upstream no longer parallelises these kernels in open-source builds (jax
commit 859992407d, after jax 0.11.0), which Python 3.11 cannot install.

The library's part: the hung program ran GMRES, which then ended each restart cycle with a
batched triangular solve. GMRES now updates R⁻¹ column by column (no LAPACK call), so the
default derivative path — and every matrix-free linear solver, and every mode — contains no
LAPACK call at all: checked here on the compiled program, and by running the 1024-batch
program on 2 devices with a timeout. The components that are dense by design (`Anderson`'s
small least-squares solve, `linear_solve.LU` and `DenseLeastSquares`, `algorithms.Newton` and
`InteriorPointQP`, `root`/`argmin`) still call LAPACK; docs/scaling_up.md states the limit
and the workarounds.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd

ROOT = Path(__file__).resolve().parents[1]
LS = itd.linear_solve


def lasso_hypergradients(mode, solver):
    """jit(vmap) of (b, λ) ↦ d/dλ ‖x̄(b, λ)‖² for a Lasso solved by forward–backward."""
    rng = np.random.default_rng(0)
    A = jnp.asarray(rng.standard_normal((16, 8)))
    step = float(1 / np.linalg.norm(np.asarray(A), 2) ** 2)

    def F(x, theta):
        b, lam = theta
        return itd.prox.soft_threshold(x - step * A.T @ (A @ x - b), step * lam)

    def one(b, lam):
        def loss(lam):
            sol = itd.fixed_point(F, jnp.zeros(8), (b, lam), mode=mode, solver=solver)
            return jnp.sum(sol.value**2)

        return jax.grad(loss)(lam)

    args = (jnp.asarray(rng.standard_normal((4, 16))), jnp.full(4, 0.1))
    return jax.jit(jax.vmap(one)), args


def lapack_calls(mode, solver=itd.Picard()):
    fn, args = lasso_hypergradients(mode, solver)
    text = fn.lower(*args).as_text()
    return sorted(set(re.findall(r"lapack_\w+", text)))


LAPACK_FREE = {
    "Implicit (GMRES, the default)": (itd.Implicit(), itd.Picard()),
    "Implicit (CG)": (itd.Implicit(LS.CG()), itd.Picard()),
    "Implicit (BiCGStab)": (itd.Implicit(LS.BiCGStab()), itd.Picard()),
    "Implicit (Neumann)": (itd.Implicit(LS.Neumann()), itd.Picard()),
    "Implicit (LeastSquares)": (itd.Implicit(LS.LeastSquares()), itd.Picard()),
    "Unrolled": (itd.Unrolled(), itd.Picard()),
    "OneStep": (itd.OneStep(), itd.Picard()),
    "Truncated": (itd.Truncated(5), itd.Picard()),
}
DENSE = {
    "Implicit (LU)": (itd.Implicit(LS.LU()), itd.Picard()),
    "Implicit (DenseLeastSquares)": (itd.Implicit(LS.DenseLeastSquares()), itd.Picard()),
    "Anderson": (itd.Implicit(), itd.Anderson()),
}


@pytest.mark.parametrize("name", list(LAPACK_FREE))
def test_matrix_free_paths_call_no_lapack(name):
    """A batched solve and its derivative, in every mode and with every matrix-free linear
    solver, lower to a program without LAPACK custom calls (which can deadlock on several CPU
    devices, see the module docstring)."""
    assert lapack_calls(*LAPACK_FREE[name]) == []


@pytest.mark.parametrize("name", list(DENSE))
def test_dense_paths_are_the_documented_exceptions(name):
    """The dense components do call LAPACK (the list docs/scaling_up.md gives)."""
    assert lapack_calls(*DENSE[name]) != []


SCRIPT = """
import json
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from benchmarks.bench_scale import lasso_batch, lasso_solve

mesh = Mesh(np.array(jax.devices()), ("batch",))
shared, b, lam = lasso_batch(1024)
batched = jax.vmap(lasso_solve(shared))
by_map = jax.jit(jax.shard_map(batched, mesh=mesh, in_specs=P("batch"), out_specs=P("batch"),
                               check_vma=False))
placed = jax.device_put((b, lam), NamedSharding(mesh, P("batch")))
report = {"devices": len(jax.devices())}
for name, fn, args in (("shard_map", by_map, (b, lam)), ("named_sharding", jax.jit(batched), placed)):
    for _ in range(5):  # the hang was a race: run it several times
        value, grad, steps = jax.block_until_ready(fn(*args))
    report[name] = {"finite": bool(np.all(np.isfinite(np.asarray(grad)))), "steps": int(steps.max())}
print(json.dumps(report))
"""


def test_batch_of_1024_on_two_devices_finishes():
    """The benchmark's program that hung (bench_scale: 1024 Lasso hypergradients, float32,
    Implicit with the default GMRES) on 2 virtual CPU devices, with shard_map and with jit +
    NamedSharding, five runs each. Before GMRES stopped calling LAPACK it hung on every try (4
    of 4 at the commit that documented the hang, 2 of 2 at the parent of the GMRES rewrite);
    it ran 8 of 8 tries since."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    try:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            "the sharded 1024-batch hung again: a LAPACK call under vmap on several CPU devices "
            "(see docs/scaling_up.md)"
        )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["devices"] == 2
    for name in ("shard_map", "named_sharding"):
        assert report[name]["finite"] and report[name]["steps"] > 0, report
