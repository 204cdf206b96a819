"""The core's cost targets (issue 14), at `fixed_point`'s default settings.

Usage: ``python -m benchmarks.bench_core [--quick] [--out DIR]``

For each problem (ridge 200×100, Lasso 1000×3000, entropic OT 100×100 and 500×500 with
ε = 0.02, the demo's Lasso, Newton ℓ2-logistic) it prints one row:

* K: steps of the forward solve at the defaults (rtol = atol = 1e-8, ‖·‖_∞);
* loop: iterdiff's forward solve / a hand-written `lax.while_loop` of the same map and rule
  (target ≤ 1.05);
* Unrolled, Implicit, OneStep: time(solve + gradient) / time(solve), each against its own
  forward solve (targets ≤ 3, ≤ 1.15, ≤ 1.05);
* Implicit error: relative error of the Implicit gradient when the forward solve runs to
  1e-12, against the problem's independent reference (target ≤ 1e-8);
* memory: XLA temp memory of the Unrolled gradient at max_steps = 100 000 over that at 1 000
  (target ≤ 2);
* compile: seconds to trace, lower and XLA-compile solve + gradient, per mode (best of two
  fresh compilations; target ≤ 1 s).

Every ratio is the median of interleaved pairs (`iterdiff.internal.paired_ratio`), so the two
programs see the same machine state; the absolute times on a shared machine are not meaningful.
"""

import argparse
import json
import pathlib
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import iterdiff as itd  # noqa: E402
from iterdiff.internal import paired_ratio  # noqa: E402

from . import problems  # noqa: E402
from .measure import relative_error  # noqa: E402

TARGETS = {"loop": 1.05, "Unrolled": 3.0, "Implicit": 1.15, "OneStep": 1.05, "memory": 2.0}
COMPILE_TARGET = 1.0
MODES = {"Unrolled": itd.Unrolled(), "Implicit": itd.Implicit(), "OneStep": itd.OneStep()}


def cases(quick: bool):
    if quick:
        return [
            problems.ridge(40, 20),
            problems.entropic_ot(12, 0.1),
            problems.logistic_newton(40, 5),
        ]
    return [
        problems.ridge(200, 100),
        problems.lasso(1000, 3000, 50),
        problems.entropic_ot(100),
        problems.entropic_ot(500),
        problems.diabetes_lasso(),
        problems.logistic_newton(500, 50),
    ]


def loss_of(p, mode, max_steps=None, **options):
    max_steps = p.max_steps if max_steps is None else max_steps

    def loss(theta):
        sol = itd.fixed_point(p.F, p.x0, theta, mode=mode, max_steps=max_steps, **options)
        return p.outer(p.readout(sol.value, theta), theta)

    return loss


def compile_seconds(fn, theta, tries: int = 2) -> float:
    """Best of ``tries`` fresh trace + lower + compile of ``jax.jit(fn)`` (a new closure each
    time, so nothing is cached)."""
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        jax.jit(lambda t: fn(t)).lower(theta).compile()
        best = min(best, time.perf_counter() - start)
    return best


def temp_mib(fn, theta) -> float:
    return jax.jit(fn).lower(theta).compile().memory_analysis().temp_size_in_bytes / 2**20


def measure(p, repeats: int) -> dict:
    row = {
        "problem": p.name,
        "K": int(itd.fixed_point(p.F, p.x0, p.theta, max_steps=p.max_steps).steps),
    }
    plain = jax.jit(problems.plain_while_loop(p.F, p.x0, p.max_steps, 1e-8))
    ours = jax.jit(lambda t: itd.fixed_point(p.F, p.x0, t, max_steps=p.max_steps).value)
    row["loop"] = paired_ratio(ours, lambda t: plain(t)[0], p.theta, repeats=repeats)
    for name, mode in MODES.items():
        forward = jax.jit(loss_of(p, mode))
        backward = jax.jit(jax.value_and_grad(loss_of(p, mode)))
        row[name] = paired_ratio(backward, forward, p.theta, repeats=repeats)
        row[f"compile {name}"] = compile_seconds(jax.value_and_grad(loss_of(p, mode)), p.theta)
    tight = jax.jit(jax.grad(loss_of(p, itd.Implicit(), tol=1e-12)))
    problems.with_reference(p)
    row["Implicit error"] = float(relative_error(tight(p.theta), p.reference))
    memory = [temp_mib(jax.grad(loss_of(p, itd.Unrolled(), m)), p.theta) for m in (1000, 100_000)]
    row["temp MiB 1e3"], row["temp MiB 1e5"] = memory
    row["memory"] = memory[1] / max(memory[0], 1e-9)
    row["reference vs central difference"] = p.fd_check
    return row


def markdown(rows) -> str:
    head = (
        "| problem | K | loop | Unrolled | Implicit | OneStep | Implicit error (1e-12) "
        "| temp MiB 1e3 → 1e5 | memory | compile U / I / O (s) |\n| --- " + "| --- " * 9 + "|\n"
    )

    def seconds(r):
        return " / ".join(
            f"{r[f'compile {m}']:.2f}" + ("" if r[f"compile {m}"] <= COMPILE_TARGET else " ✗")
            for m in MODES
        )

    def mark(key, value):
        return f"{value:.2f}" + ("" if value <= TARGETS[key] else " ✗")

    lines = [
        f"| {r['problem']} | {r['K']} | {mark('loop', r['loop'])} | {mark('Unrolled', r['Unrolled'])} "
        f"| {mark('Implicit', r['Implicit'])} | {mark('OneStep', r['OneStep'])} "
        f"| {r['Implicit error']:.1e}{'' if r['Implicit error'] <= 1e-8 else ' ✗'} "
        f"| {r['temp MiB 1e3']:.2f} → {r['temp MiB 1e5']:.2f} | {mark('memory', r['memory'])} "
        f"| {seconds(r)} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_core", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved pairs per ratio")
    parser.add_argument("--out", default=None, help="folder for core.json and core.md")
    args = parser.parse_args(argv)
    rows = []
    for p in cases(args.quick):
        rows.append(measure(p, 3 if args.quick else args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    table = markdown(rows)
    print(table)
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "core.json").write_text(json.dumps(rows, indent=1))
        (out / "core.md").write_text(table)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
