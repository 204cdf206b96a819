"""Scaling figures: cost and memory of reverse mode against the number of steps K, and cost
against the problem size. Writes scaling_steps.{json,png} and scaling_size.{json,png}.

Steps: a slow gradient-descent map (ridge 200×100 with step 1/(1000 L), contraction ≈ 1 − 3·10⁻⁵,
so it is still far from converged at K = 50 000) run for exactly K steps by iterdiff's
``Unrolled()`` (tol below reach, ``throw=False``), plain `jax.grad` through `lax.scan`, and
optimistix's ``RecursiveCheckpointAdjoint`` (rtol = atol below reach, ``throw=False``).
"""

import json
import os

import jax
import jax.numpy as jnp

import iterdiff as itd

from . import anchors, measure, methods, problems


def slow_ridge():
    base = problems.ridge(200, 100)
    F_fast = base.F

    def F(x, theta):  # 1/1000 of the gradient step
        return x + 1e-3 * (F_fast(x, theta) - x)

    base.F = F
    return base


def forced_steps_methods(problem, K):
    """(name, solve, loss) running exactly K steps of problem.F."""

    def loss_of(solve):
        return lambda theta: problem.outer(solve(theta), theta)

    def iterdiff_solve(theta):
        sol = itd.fixed_point(
            problem.F, problem.x0, theta, mode=itd.Unrolled(), tol=1e-15, max_steps=K, throw=False
        )
        return sol.value

    def scan_solve(theta):
        return jax.lax.scan(lambda x, _: (problem.F(x, theta), None), problem.x0, length=K)[0]

    out = [("iterdiff Unrolled()", iterdiff_solve), ("jax.grad through lax.scan", scan_solve)]
    if anchors.available("optimistix"):
        import optimistix as optx

        def optx_solve(theta):
            return optx.fixed_point(
                lambda y, args: problem.F(y, args),
                optx.FixedPointIteration(rtol=1e-15, atol=1e-15),
                problem.x0,
                theta,
                max_steps=K,
                adjoint=optx.RecursiveCheckpointAdjoint(),
                throw=False,
            ).value

        out.append(("optimistix RecursiveCheckpointAdjoint", optx_solve))
    return [(name, solve, loss_of(solve)) for name, solve in out]


def steps_curve(args, steps):
    problem, theta = slow_ridge(), jnp.asarray(0.01)
    data = []
    for K in steps:
        for name, solve, loss in forced_steps_methods(problem, K):
            solve_c, _, _ = measure.compile_stats(solve, theta)
            grad_c, compile_s, temp = measure.compile_stats(jax.value_and_grad(loss), theta)
            with measure.PeakRSS() as rss:
                jax.block_until_ready(grad_c(theta))
            ratio = measure.paired_ratio(grad_c, solve_c, theta, repeats=max(3, args.repeats // 3))
            forward = measure.median_time(solve_c, theta, repeats=3)
            data.append(
                dict(
                    method=name,
                    steps=K,
                    forward_ms=1e3 * forward,
                    ratio=ratio,
                    grad_ms=1e3 * forward * ratio,
                    temp_mib=temp / 2**20,
                    rss_mib=rss.peak / 2**20,
                    compile_s=compile_s,
                )
            )
            print(f"  K={K} {name}: ratio {ratio:.2f}, temp {temp / 2**20:.1f} MiB", flush=True)
    return data


def size_curve(args, sizes):
    chosen = [
        m.with_tol(args.tol)
        for m in methods.iterdiff_methods() + anchors.anchor_methods()
        if m.name
        in (
            "iterdiff Implicit()",
            "iterdiff Unrolled()",
            "jaxopt implicit (tight)",
            "optimistix ImplicitAdjoint (defaults)",
        )
    ]
    data = []
    for n in sizes:
        problem = problems.with_reference(problems.ridge(2 * n, n))
        for method in chosen:
            row = measure.measure(problem, method, **measure.options(args))
            data.append(dict(method=method.name, size=n, **_numbers(row)))
            print(f"  n={n} {method.name}: ratio {row.ratio:.2f}", flush=True)
    return data


def _numbers(row):
    return dict(forward_ms=row.forward_ms, ratio=row.ratio, temp_mib=row.temp_mib)


def plot(data, x_key, panels, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for name in dict.fromkeys(d["method"] for d in data):
            pts = [(d[x_key], d[key]) for d in data if d["method"] == name]
            ax.plot(*zip(*pts, strict=True), marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(x_key)
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args, out):
    steps = (50, 200) if args.quick else (500, 1500, 5000, 15000, 50000)
    sizes = (10, 20) if args.quick else (50, 100, 200, 400, 800)
    results = {
        "scaling_steps": (
            steps_curve(args, steps),
            "steps",
            [
                ("grad_ms", "solve + gradient (ms)"),
                ("ratio", "(solve + grad) / solve"),
                ("temp_mib", "XLA temp (MiB)"),
            ],
            "Reverse mode through K steps (slow ridge 200×100)",
        ),
        "scaling_size": (
            size_curve(args, sizes),
            "size",
            [("forward_ms", "forward (ms)"), ("ratio", "(solve + grad) / solve")],
            "Ridge n_features = n, 2n samples, by gradient descent",
        ),
    }
    for name, (data, x_key, panels, title) in results.items():
        if out:
            with open(os.path.join(out, f"{name}.json"), "w") as f:
                json.dump(data, f, indent=1)
            plot(data, x_key, panels, os.path.join(out, f"{name}.png"), title)
    return {name: value[0] for name, value in results.items()}
