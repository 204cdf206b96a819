"""The `iterdiff` command.

iterdiff demo      reproduce every result of the source material (about two minutes on a CPU)
iterdiff report    the same, with options: --out DIR, --only NAME[,NAME], --list, --full, --seed
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

DEFAULT_OUT = "iterdiff-report"


class UsageError(Exception):
    """A problem the user fixes by changing the command line (exit status 2)."""


def _names(only: str | None) -> list[str]:
    from .experiments import EXPERIMENTS

    if not only:
        return list(EXPERIMENTS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown or not names:
        raise UsageError(
            f"unknown experiment {', '.join(map(repr, unknown)) or repr(only)}; "
            "run `iterdiff report --list` to see the names."
        )
    return names


def _check_writable(out: str) -> Path:
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".iterdiff-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(
            f"cannot write the report to {str(path)!r} ({reason}); pass --out DIR with a "
            "writable directory."
        ) from None
    return path


def _list() -> int:
    from .experiments import EXPERIMENTS, load

    for name in EXPERIMENTS:
        try:
            title = load(name).TITLE
        except Exception as exc:  # not importable yet: say so, do not crash
            title = f"(cannot be imported: {type(exc).__name__}: {exc})"
        print(f"{name:<20}{title}")
    return 0


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_summary(results) -> None:
    widths = (20, 46, 30, 30)
    header = ("experiment", "claim", "predicted", "measured", "verdict")
    line = "".join(h.ljust(w) for h, w in zip(header, widths + (0,), strict=True))
    print(line)
    print("-" * (sum(widths) + 10))
    for r in results:
        if r.failed:
            first = r.error.splitlines()[0]
            print(f"{r.name:<20}{_shorten(first, 105):<106}FAILED")
            continue
        for i, c in enumerate(r.claims):
            name = r.name if i == 0 else ""
            print(
                f"{name:<20}{_shorten(c.text, 45):<46}{_shorten(c.predicted, 29):<30}"
                f"{_shorten(c.measured, 29):<30}{'agrees' if c.passed else 'DISAGREES'}"
            )


def _report(names: list[str], out: str, size: str, seed: int) -> int:
    out_path = _check_writable(out)
    os.environ.setdefault("MPLBACKEND", "Agg")
    import jax

    jax.config.update("jax_enable_x64", True)
    from tqdm import tqdm

    from .experiments._runner import run_all
    from .report import environment, write_report

    start = time.perf_counter()
    bar = tqdm(
        total=len(names),
        unit="experiment",
        file=sys.stderr,
        dynamic_ncols=True,
        disable=not sys.stderr.isatty(),
    )

    def on_start(name):
        bar.set_description(f"running {name}")

    def on_done(result):
        bar.update(1)
        state = "FAILED" if result.failed else ("ok" if result.passed else "ran, claims differ")
        tqdm.write(f"  {result.name:<20}{result.seconds:6.1f} s  {state}", file=sys.stderr)

    results = run_all(names, size, seed, on_start, on_done)
    bar.close()
    total = time.perf_counter() - start
    path = write_report(results, out_path, environment(total, size, seed))
    print()
    _print_summary(results)
    print(f"\nreport: {path.resolve()}  ({total:.0f} s, size {size}, seed {seed})")
    failed = [r.name for r in results if r.failed]
    disagree = sum(not c.passed for r in results for c in r.claims)
    if disagree:
        print(f"{disagree} claim(s) disagree with the source; the report explains each.")
    if failed:
        print(
            f"iterdiff: {len(failed)} experiment(s) failed ({', '.join(failed)}); the report "
            f"shows the traceback; rerun one with `iterdiff report --only {failed[0]}`.",
            file=sys.stderr,
        )
        return 1
    return 0


def _demo(args) -> int:
    return _report(_names(None), args.out, "demo", 0)


def _report_command(args) -> int:
    if args.list:
        return _list()
    return _report(_names(args.only), args.out, "full" if args.full else "demo", args.seed)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="iterdiff", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="reproduce every result of the source material; writes ./iterdiff-report/index.html",
    )
    demo.add_argument("--out", default=DEFAULT_OUT, help="report directory (default %(default)s)")
    demo.set_defaults(run=_demo)
    report = sub.add_parser("report", help="run chosen experiments and write the HTML report")
    report.add_argument("--out", default=DEFAULT_OUT, help="report directory (default %(default)s)")
    report.add_argument("--only", metavar="NAME[,NAME]", help="run only these experiments")
    report.add_argument("--list", action="store_true", help="list the experiments and exit")
    report.add_argument("--full", action="store_true", help="paper-scale sizes (slow)")
    report.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    report.set_defaults(run=_report_command)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
        print(f"iterdiff: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
