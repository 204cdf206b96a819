"""Throughput of batched solves: solves per second against batch size and number of devices,
and the cost of a batch whose members converge at very different speeds.

    python -m benchmarks.bench_scale            # batch sizes 1..1024, devices 1, 2, 4 (~2 min)
    python -m benchmarks.bench_scale --quick    # batch sizes 1..64, devices 1, 2 (smoke run)
    python -m benchmarks scale                  # the same through the benchmarks CLI

Workload (one "solve"): a Lasso with its own data b (64×32 design shared by the batch,
λ = 0.1 λ_max) by forward–backward in float32 at the default tolerance (1e-5), value and
hypergradient dL/dλ of a validation loss with `Implicit` — `jit(vmap(value_and_grad))`,
compiled once per batch size, best of a few timed runs. Devices: a batch of 256 split over
1, 2 or 4 virtual CPU devices with `jax.shard_map` (each device runs its own loop), each
count in a subprocess started with ``XLA_FLAGS=--xla_force_host_platform_device_count=D``
(a batch of 1024 once hung on 2 virtual devices of our 2-core machine: jaxlib's batched
LAPACK kernels deadlock the intra-op pool when every device is inside one, and GMRES then
called one; it no longer does — see RESULTS.md and docs/scaling_up.md; the timeout stays).
Spread: a batch of 256 contraction problems (x ← r·sin x + c, float32) where every member
needs 4 steps (r = 0.05), then the same with one member needing 216 (r = 0.98), then all
needing 216.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

BATCHES = (1, 4, 16, 64, 256, 1024)
DEVICES = (1, 2, 4)
DEVICE_BATCH = 256


def lasso_batch(batch: int, dtype=jnp.float32, seed: int = 0):
    """A design A (64×32), ``batch`` right-hand sides, validation data, λ per member."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((64, 32))
    x_true = np.zeros((batch, 32))
    x_true[:, :4] = rng.standard_normal((batch, 4))
    b = x_true @ A.T + 0.1 * rng.standard_normal((batch, 64))
    lam = 0.1 * np.max(np.abs(b @ A), axis=1) / 64
    A_val = rng.standard_normal((32, 32))
    step = 64 / np.linalg.norm(A, 2) ** 2
    cast = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    return {"A": cast(A), "A_val": cast(A_val), "step": float(step)}, cast(b), cast(lam)


def lasso_solve(shared):
    """(b, λ) -> (validation loss, dL/dλ, steps) for one member."""
    import iterdiff as itd

    A, A_val, step = shared["A"], shared["A_val"], shared["step"]

    def F(x, theta):
        b, lam = theta
        z = x - step * (A.T @ (A @ x - b)) / A.shape[0]
        return itd.prox.soft_threshold(z, step * lam)

    def loss(lam, b):
        sol = itd.fixed_point(F, jnp.zeros(A.shape[1], A.dtype), (b, lam), max_steps=10_000)
        return jnp.sum((A_val @ sol.value) ** 2), sol.steps

    def one(b, lam):
        (value, steps), grad = jax.value_and_grad(loss, has_aux=True)(lam, b)
        return value, grad, steps

    return one


def _best_time(fn, *args, budget: float = 1.0, most: int = 20) -> float:
    jax.block_until_ready(fn(*args))  # compile
    best, spent, runs = float("inf"), 0.0, 0
    while runs < 3 or (spent < budget and runs < most):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        took = time.perf_counter() - start
        best, spent, runs = min(best, took), spent + took, runs + 1
    return best


def batch_sizes(batches) -> list[dict]:
    rows = []
    for batch in batches:
        shared, b, lam = lasso_batch(batch)
        fn = jax.jit(jax.vmap(lasso_solve(shared)))
        start = time.perf_counter()
        _, _, steps = jax.block_until_ready(fn(b, lam))
        compile_s = time.perf_counter() - start
        seconds = _best_time(fn, b, lam)
        rows.append(
            {
                "batch": batch,
                "seconds": seconds,
                "solves_per_s": batch / seconds,
                "steps_mean": float(jnp.mean(steps)),
                "steps_max": int(jnp.max(steps)),
                "compile_s": compile_s,
            }
        )
        print(f"  batch {batch}: {batch / seconds:,.0f} solves/s", file=sys.stderr)
    return rows


def spread(batch: int = 256) -> list[dict]:
    """Time of a batch by the steps of its slowest member (every member pays for it)."""
    import iterdiff as itd

    xbar = jnp.asarray([0.1, 0.2, 0.3], jnp.float32)

    def member(r):
        c = xbar - r * jnp.sin(xbar)
        x0 = jnp.zeros(3, jnp.float32)
        sol = itd.fixed_point(lambda x, t: t[0] * jnp.sin(x) + t[1], x0, (r, c))
        return sol.value, sol.steps

    fn = jax.jit(jax.vmap(member))
    rows = []
    fast, slow = 0.05, 0.98
    for name, rates in [
        ("all fast", np.full(batch, fast)),
        ("one slow", np.r_[np.full(batch - 1, fast), slow]),
        ("all slow", np.full(batch, slow)),
    ]:
        rates = jnp.asarray(rates, jnp.float32)
        _, steps = fn(rates)
        seconds = _best_time(fn, rates)
        rows.append(
            {
                "batch": batch,
                "case": name,
                "seconds": seconds,
                "member_steps_sum": int(jnp.sum(steps)),
                "loop_steps": int(jnp.max(steps)),
            }
        )
    return rows


def _device_worker(devices: int, batch: int) -> dict:
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    assert len(jax.devices()) == devices, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    shared, b, lam = lasso_batch(batch)
    fn = jax.jit(
        jax.shard_map(
            jax.vmap(lasso_solve(shared)),
            mesh=mesh,
            in_specs=P("batch"),
            out_specs=P("batch"),
            check_vma=False,  # see docs/scaling_up.md
        )
    )
    seconds = _best_time(fn, b, lam)
    return {"devices": devices, "batch": batch, "seconds": seconds, "solves_per_s": batch / seconds}


def device_counts(devices, batch: int) -> list[dict]:
    rows = []
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for d in devices:
        env = dict(os.environ)
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={d}"
        env["JAX_PLATFORMS"] = "cpu"
        try:
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_scale", "--device-worker", str(d)]
                + [str(batch)],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.TimeoutExpired:
            rows.append({"devices": d, "batch": batch, "error": "timed out after 300 s"})
            continue
        if done.returncode != 0:
            rows.append({"devices": d, "batch": batch, "error": done.stderr[-500:]})
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  {d} devices: {rows[-1]['solves_per_s']:,.0f} solves/s", file=sys.stderr)
    return rows


def report(result: dict) -> str:
    lines = [
        f"Machine: {result['machine']}",
        "",
        "| batch | solves/s | time per batch (ms) | mean steps | slowest member | compile (s) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["batch_sizes"]:
        lines.append(
            f"| {r['batch']} | {r['solves_per_s']:,.0f} | {1e3 * r['seconds']:.2f} | "
            f"{r['steps_mean']:.0f} | {r['steps_max']} | {r['compile_s']:.1f} |"
        )
    lines += ["", "| devices | batch | solves/s |", "|---:|---:|---:|"]
    for r in result["devices"]:
        rate = f"{r['solves_per_s']:,.0f}" if "solves_per_s" in r else "failed"
        lines.append(f"| {r['devices']} | {r['batch']} | {rate} |")
    lines += [
        "",
        "| spread | batch | time (ms) | Σ member steps | loop steps |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in result["spread"]:
        lines.append(
            f"| {r['case']} | {r['batch']} | {1e3 * r['seconds']:.3f} | "
            f"{r['member_steps_sum']} | {r['loop_steps']} |"
        )
    return "\n".join(lines)


def run(quick: bool = False, out: str | None = None) -> dict:
    batches = BATCHES[:4] if quick else BATCHES
    devices = DEVICES[:2] if quick else DEVICES
    result = {
        "machine": f"{jax.devices()[0].platform}, {os.cpu_count()} cores, jax {jax.__version__}",
        "batch_sizes": batch_sizes(batches),
        "devices": device_counts(devices, min(DEVICE_BATCH, batches[-1])),
        "spread": spread(64 if quick else 256),
    }
    print(report(result))
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "scale.json"), "w") as f:
            json.dump(result, f, indent=1)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_scale")
    parser.add_argument("--quick", action="store_true", help="smaller batches, 1–2 devices")
    parser.add_argument("--out", default=None, help="folder for scale.json")
    parser.add_argument("--device-worker", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device_worker:
        print(json.dumps(_device_worker(*args.device_worker)))
        return 0
    run(args.quick, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
