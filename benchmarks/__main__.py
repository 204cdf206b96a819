"""python -m benchmarks: iterdiff side by side with jaxopt, optimistix and ott-jax.

    python -m benchmarks                          # every problem, every method, the figures
    python -m benchmarks --quick                  # tiny sizes, a smoke run (seconds)
    python -m benchmarks --problems ridge qp --methods iterdiff
    python -m benchmarks scaling                  # only the scaling figures
    python -m benchmarks kkt                      # reverse mode through the KKT solve
    python -m benchmarks scale                    # throughput vs batch size and devices

Writes the tables to stdout and, with --out DIR, rows.json, tables.md and the figures there.
"""

import argparse
import dataclasses
import importlib.metadata
import json
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

from . import anchors, measure, methods, problems, report  # noqa: E402


def versions():
    found = {}
    for name in ("iterdiff", "jaxopt", "optimistix", "lineax", "ott-jax"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def parse(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "what", nargs="?", choices=["tables", "scaling", "kkt", "scale", "all"], default="all"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats (smoke run)")
    parser.add_argument("--problems", nargs="+", choices=list(problems.FULL), default=None)
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help="libraries (iterdiff, jax, jaxopt, optimistix, ott-jax) or substrings of method names",
    )
    parser.add_argument(
        "--tol", type=float, default=1e-10, help="forward tolerance (equal accuracy)"
    )
    parser.add_argument("--repeats", type=int, default=15, help="most interleaved pairs per ratio")
    parser.add_argument("--budget", type=float, default=4.0, help="seconds of timing per ratio")
    parser.add_argument("--memory-limit-gib", type=float, default=3.0, help="skip bigger programs")
    parser.add_argument("--out", default=None, help="folder for rows.json, tables.md, figures")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.budget = 3, 0.2
    return args


def selected_methods(args):
    every = methods.iterdiff_methods() + anchors.anchor_methods()
    every = [m.with_tol(args.tol) for m in every]
    if args.methods:
        libraries = {m.library for m in every}
        wanted = [s for s in args.methods if s not in libraries]
        every = [m for m in every if m.library in args.methods or any(s in m.name for s in wanted)]
    return every


def run_tables(args, out):
    names = args.problems or list(problems.FULL)
    chosen = selected_methods(args)
    rows_by_problem, text = {}, [report.header(args, versions()), ""]
    for problem in problems.build(names, quick=args.quick):
        rows = []
        for method in chosen:
            if problem.family not in method.families:
                continue
            start = time.perf_counter()
            try:
                row = measure.measure(problem, method, **measure.options(args))
            except Exception as error:  # an anchor that fails is reported, not fatal
                row = measure.Row(problem.name, method.name, note=f"failed: {error!r:.120}")
            rows.append(row)
            print(
                f"  {problem.name} / {method.name}: {time.perf_counter() - start:.1f} s",
                file=sys.stderr,
            )
        rows_by_problem[problem.name] = rows
        text.append(report.problem_table(problem, rows))
        print(text[-1], flush=True)
    text += ["## Against the targets", "", report.TARGETS, "", report.verdict(rows_by_problem)]
    print("\n".join(text[-3:]))
    if out:
        with open(os.path.join(out, "tables.md"), "w") as f:
            f.write("\n".join(text))
        with open(os.path.join(out, "rows.json"), "w") as f:
            rows = [dataclasses.asdict(r) for rs in rows_by_problem.values() for r in rs]
            json.dump(rows, f, indent=1)
    return rows_by_problem


def main(argv=None):
    args = parse(argv)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    if args.what == "scale":  # not part of "all": see benchmarks/bench_scale.py
        from . import bench_scale

        bench_scale.run(args.quick, args.out)
        return 0
    if args.what in ("tables", "all"):
        run_tables(args, args.out)
    if args.what in ("scaling", "all"):
        from . import scaling

        scaling.run(args, args.out)
    if args.what in ("kkt", "all"):
        from . import kkt

        kkt.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
