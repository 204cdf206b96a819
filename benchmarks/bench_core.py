"""Core benchmark: cost and accuracy of every differentiation mode on the BASELINE.md problems.

For each problem: the forward solve, solve + hypergradient (reverse mode) per mode, the ratio of
the two, the relative error of the hypergradient against the closed form, compile time, the
temporary memory XLA reserves for the compiled program, and the overhead of iterdiff's loop over
a hand-written `lax.while_loop` of the same F. All timings are medians, measured side by side in
one process; read ratios, not milliseconds.

    python benchmarks/bench_core.py            # full sizes (ridge 200×100, Lasso 1000×3000)
    python benchmarks/bench_core.py --quick    # small sizes, a smoke test
"""

import argparse
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import iterdiff as itd  # noqa: E402
from iterdiff import linear_solve as ls  # noqa: E402
from iterdiff._timing import median_time, paired_ratio  # noqa: E402


def ridge_problem(n_samples, n_features, seed=0):
    """GD on ½n⁻¹‖Ax − y‖² + ½θ‖x‖², θ = 0.01, step 1/L; outer ½‖x − x_true‖²."""
    rng = np.random.default_rng(seed)
    A = jnp.asarray(rng.normal(size=(n_samples, n_features)))
    x_true = jnp.asarray(rng.normal(size=n_features))
    y = A @ x_true + 0.5 * jnp.asarray(rng.normal(size=n_samples))
    H = A.T @ A / n_samples
    Aty = A.T @ y / n_samples
    theta = jnp.asarray(0.01)
    eigs = jnp.linalg.eigvalsh(H)
    step = 1.0 / (eigs.max() + theta)

    def F(x, theta):
        return x - step * (H @ x - Aty + theta * x)

    def hypergradient(theta):
        K = H + theta * jnp.eye(n_features)
        x = jnp.linalg.solve(K, Aty)
        return float((x - x_true) @ -jnp.linalg.solve(K, x))

    contraction = float(1 - step * (eigs.min() + theta))
    return dict(
        name=f"ridge {n_samples}×{n_features}",
        F=F,
        x0=jnp.zeros(n_features),
        theta=theta,
        outer=lambda x: 0.5 * jnp.sum((x - x_true) ** 2),
        reference=hypergradient(theta),
        note=f"contraction {contraction:.4f}",
        extra_modes={"Implicit(CG)": itd.Implicit(ls.CG())},
    )


def lasso_problem(n_samples, n_features, n_informative, seed=0):
    """ISTA on ½n⁻¹‖Ax − y‖² + λ‖x‖₁, λ = 0.1 λ_max; outer ½‖x − x_true‖²."""
    rng = np.random.default_rng(seed)
    A = jnp.asarray(rng.normal(size=(n_samples, n_features)))
    x_true = np.zeros(n_features)
    x_true[:n_informative] = rng.normal(size=n_informative)
    x_true = jnp.asarray(x_true)
    y = A @ x_true + 0.1 * jnp.asarray(rng.normal(size=n_samples))
    lam = 0.1 * float(jnp.max(jnp.abs(A.T @ y)) / n_samples)
    step = 1.0 / float(jnp.linalg.norm(A, 2) ** 2 / n_samples)

    def F(x, lam):
        return itd.prox.soft_threshold(x - step * (A.T @ (A @ x - y)) / n_samples, step * lam)

    def hypergradient(x_bar):
        support = np.flatnonzero(np.asarray(x_bar) != 0)
        A_S = A[:, support]
        dx = -jnp.linalg.solve(A_S.T @ A_S / n_samples, jnp.sign(x_bar[support]))
        return float((x_bar - x_true)[support] @ dx), len(support)

    return dict(
        name=f"lasso {n_samples}×{n_features}",
        F=F,
        x0=jnp.zeros(n_features),
        theta=jnp.asarray(lam),
        outer=lambda x: 0.5 * jnp.sum((x - x_true) ** 2),
        reference=hypergradient,  # needs x̄: evaluated after the solve
        note="",
        extra_modes={"Implicit(BiCGStab)": itd.Implicit(ls.BiCGStab())},
    )


def compile_stats(fn, arg):
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(arg).compile()
    seconds = time.perf_counter() - start
    try:
        temp = compiled.memory_analysis().temp_size_in_bytes
    except Exception:  # memory_analysis is backend-dependent
        temp = float("nan")
    return seconds, temp


def handwritten_loop(F, x0, max_steps, tol):
    """The same stopping rule as iterdiff, written directly with lax.while_loop."""

    def solve(theta):
        def cond(c):
            k, x, fx = c
            r = jnp.max(jnp.abs(fx - x))
            return (k < max_steps) & (r > tol * (1 + jnp.max(jnp.abs(x))))

        def body(c):
            k, _, fx = c
            return k + 1, fx, F(fx, theta)

        return jax.lax.while_loop(cond, body, (0, x0, F(x0, theta)))[1]

    return solve


def bench(problem, tol, max_steps, repeats):
    F, x0, outer = problem["F"], problem["x0"], problem["outer"]
    theta = problem["theta"]

    def solve(theta, mode=itd.Implicit()):
        return itd.fixed_point(F, x0, theta, mode=mode, tol=tol, max_steps=max_steps)

    sol = jax.jit(solve)(theta)
    assert bool(sol.converged), "forward solve did not converge; raise max_steps"
    reference = problem["reference"]
    extra = ""
    if callable(reference):
        reference, support = reference(sol.value)
        extra = f"support {support}"
    solve_value = jax.jit(lambda t: solve(t).value)
    t_solve = median_time(solve_value, theta, repeats=repeats)
    hand = jax.jit(handwritten_loop(F, x0, max_steps, tol))
    loop_overhead = paired_ratio(solve_value, hand, theta, repeats=repeats) - 1
    rows = []
    modes = {
        "Implicit()": itd.Implicit(),
        **problem["extra_modes"],
        "Unrolled()": itd.Unrolled(),
        "Unrolled(checkpoint_every=16)": itd.Unrolled(checkpoint_every=16),
        "Truncated(20)": itd.Truncated(20),
        "OneStep()": itd.OneStep(),
    }
    for name, mode in modes.items():

        def loss(t, mode=mode):
            return outer(solve(t, mode).value)

        vg = jax.jit(jax.value_and_grad(loss))
        value = float(vg(theta)[1])
        ratio = paired_ratio(vg, solve_value, theta, repeats=repeats)
        compile_s, temp = compile_stats(jax.value_and_grad(loss), theta)
        rows.append(
            dict(
                mode=name,
                ratio=ratio,
                error=abs(value - reference) / abs(reference),
                compile_s=compile_s,
                temp_mib=temp / 2**20,
            )
        )
    head = dict(
        name=problem["name"],
        steps=int(sol.steps),
        note=", ".join(s for s in (problem["note"], extra) if s),
        solve_ms=1e3 * t_solve,
        loop_overhead=loop_overhead,
        solve_compile_s=compile_stats(lambda t: solve(t).value, theta)[0],
    )
    return head, rows


def render(results, args):
    lines = [
        f"jax {jax.__version__}, {platform.processor() or platform.machine()}, "
        f"backend {jax.default_backend()}, float64, forward tol {args.tol:g}, "
        f"medians of {args.repeats} interleaved (candidate, solve) pairs",
        "",
    ]
    for head, rows in results:
        lines += [
            f"### {head['name']} ({head['note']}): {head['steps']} steps, solve "
            f"{head['solve_ms']:.2f} ms, compile {head['solve_compile_s']:.2f} s, loop overhead "
            f"vs hand-written while_loop {100 * head['loop_overhead']:+.1f}%",
            "",
            "| mode | (solve + grad) / solve | rel. error vs closed form | compile (s) | XLA temp (MiB) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r in rows:
            lines.append(
                f"| {r['mode']} | {r['ratio']:.2f} | {r['error']:.1e} | {r['compile_s']:.2f} | "
                f"{r['temp_mib']:.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--tol", type=float, default=1e-10)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--only", choices=["ridge", "lasso"], default=None)
    args = parser.parse_args()
    if args.quick:
        problems = [ridge_problem(40, 20), lasso_problem(60, 120, 5)]
    else:
        problems = [ridge_problem(200, 100), lasso_problem(1000, 3000, 50)]
    if args.only:
        problems = [p for p in problems if p["name"].startswith(args.only)]
    results = [bench(p, args.tol, 100_000, args.repeats) for p in problems]
    print(render(results, args))


if __name__ == "__main__":
    main()
