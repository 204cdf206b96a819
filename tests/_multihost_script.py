"""The multi-host recipe of docs/scaling_up.md on one machine (run by tests/test_scale.py).

``python -m tests._multihost_script PROCESS_ID PORT`` — start it twice (ids 0 and 1, the same
port). Each process joins ``jax.distributed`` (one CPU device each, gloo collectives), builds
the global batch of 8 problems as an array sharded over the 2 processes' devices from its own
4 rows, solves and differentiates it with ``jit(vmap(...))``, gathers the result on every
process and compares its own rows with unbatched solves. Prints one line of JSON, or a line
starting with ``SKIP:`` if jax.distributed cannot start here.
"""

import json
import sys

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")


def start(process_id: int, port: int) -> None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"localhost:{port}",
        num_processes=2,
        process_id=process_id,
        initialization_timeout=120,
    )


def main(process_id: int, port: int) -> dict:
    try:
        start(process_id, port)
    except Exception as err:  # pragma: no cover - depends on the machine
        print(f"SKIP: jax.distributed.initialize failed on CPU here: {err!r:.300}")
        sys.exit(0)

    import jax.numpy as jnp
    import numpy as np
    from jax.experimental import multihost_utils
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    import iterdiff as itd

    def solve(x0, theta):
        return itd.fixed_point(lambda x, t: t["r"] * jnp.sin(x) + t["c"], x0, theta)

    def everything(x0, theta):
        sol = solve(x0, theta)
        grad = jax.grad(lambda t: jnp.sum(solve(x0, t).value ** 2))(theta)
        return sol.value, sol.steps, grad

    # the global batch (every process knows how to build it; each keeps only its rows)
    xbar = jnp.asarray([0.1, 0.2, 0.3])
    rates = jnp.asarray([0.05, 0.98, 0.5, 0.9, 0.3, 0.7, 0.95, 0.2])
    x0 = jnp.stack([jnp.full(3, s) for s in np.linspace(-1.0, 2.0, 8)])
    theta = {"r": rates, "c": xbar[None, :] - rates[:, None] * jnp.sin(xbar)[None, :]}

    mesh = Mesh(np.array(jax.devices()), ("batch",))  # one device per process here
    sharding = NamedSharding(mesh, P("batch"))
    mine = slice(4 * jax.process_index(), 4 * jax.process_index() + 4)
    local = jax.tree_util.tree_map(lambda a: np.asarray(a[mine]), (x0, theta))
    global_inputs = jax.tree_util.tree_map(
        lambda a: jax.make_array_from_process_local_data(sharding, a), local
    )
    out = jax.jit(jax.vmap(everything))(*global_inputs)
    gathered = multihost_utils.process_allgather(out, tiled=True)

    # this process's rows against unbatched solves on this process
    single = jax.jit(everything)
    value_err = grad_err = 0.0
    steps_equal = True
    for i in range(mine.start, mine.stop):
        ref = single(x0[i], jax.tree_util.tree_map(lambda a, i=i: a[i], theta))
        value_err = max(value_err, float(np.max(np.abs(gathered[0][i] - ref[0]))))
        got_grad = jax.tree_util.tree_map(lambda a, i=i: a[i], gathered[2])
        leaves = zip(
            jax.tree_util.tree_leaves(got_grad), jax.tree_util.tree_leaves(ref[2]), strict=True
        )
        for a, b in leaves:
            grad_err = max(grad_err, float(np.max(np.abs(a - b))))
        steps_equal &= int(gathered[1][i]) == int(ref[1])
    return {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "global_devices": len(jax.devices()),
        "local_rows": int(out[0].addressable_shards[0].data.shape[0]),
        "value_err": value_err,
        "grad_err": grad_err,
        "steps_equal": bool(steps_equal),
        "checksum": float(np.sum(gathered[0]) + np.sum(gathered[1])),
    }


if __name__ == "__main__":
    report = main(int(sys.argv[1]), int(sys.argv[2]))
    print(json.dumps(report), flush=True)
    jax.distributed.shutdown()
