"""The `iterdiff` command.

iterdiff demo      reproduce every published result the report covers (about two minutes on a CPU)
iterdiff report    the same, with options: --out DIR, --only NAME[,NAME], --list, --full, --seed

JAX is imported only to run experiments: ``--help``, ``--version``, ``--list`` and mistyped
arguments answer at once.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import shutil
import sys
import textwrap
import time
from pathlib import Path

DEFAULT_OUT = "iterdiff-report"


class UsageError(Exception):
    """A problem the user fixes by changing the command line (exit status 2)."""


def _names(only: str | None) -> list[str]:
    """The experiments to run: all of them without ``--only``; otherwise the names given,
    which must be known and at least one (``--only ''`` is a mistake, not "everything")."""
    from .experiments import EXPERIMENTS

    if only is None:
        return list(EXPERIMENTS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    if not names:
        raise UsageError(
            f"--only {only!r} names no experiment; give one or more names separated by commas "
            "(`iterdiff report --list` shows them), or leave --only out to run all."
        )
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise UsageError(
            f"unknown experiment {', '.join(map(repr, unknown))}; "
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


def _title(name: str) -> str:
    """An experiment's TITLE, read from its source without importing it (no JAX); imported
    when the source does not state it as a plain string."""
    from .experiments import EXPERIMENTS, load

    try:
        spec = importlib.util.find_spec(f"iterdiff.experiments.{EXPERIMENTS[name]}")
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "TITLE" for t in node.targets
            ):
                return ast.literal_eval(node.value)
    except (AttributeError, OSError, SyntaxError, TypeError, ValueError):
        pass
    try:
        return load(name).TITLE
    except Exception as exc:  # not importable: say so, do not crash
        return f"(cannot be imported: {type(exc).__name__}: {exc})"


def _list() -> int:
    from .experiments import EXPERIMENTS

    for name in EXPERIMENTS:
        print(f"{name:<20}{_title(name)}")
    return 0


def _table_width() -> int:
    """Width of the printed summary: the terminal's (at least 80), or 120 when not a terminal."""
    if not sys.stdout.isatty():
        return 120
    return max(80, min(shutil.get_terminal_size((120, 24)).columns, 160))


def _wrap_row(cells, widths) -> list[str]:
    """One table row as lines: every cell wrapped to its column (nothing is cut)."""
    wrapped = [
        textwrap.wrap(str(text), width - 2, break_long_words=True) or [""]
        for text, width in zip(cells, widths, strict=True)
    ]
    height = max(len(lines) for lines in wrapped)
    return [
        "".join(
            (lines[i] if i < len(lines) else "").ljust(width)
            for lines, width in zip(wrapped, widths, strict=True)
        ).rstrip()
        for i in range(height)
    ]


def summary_lines(results, width: int | None = None) -> list[str]:
    """The summary table (experiment, claim, predicted, measured, verdict), wrapped to
    ``width`` columns: long claims and measurements continue on the next lines."""
    width = width or _table_width()
    first, verdict = 20, 19
    rest = width - first - verdict
    widths = (first, rest * 36 // 100, rest * 28 // 100, rest - rest * 64 // 100, verdict)
    header = ("experiment", "claim", "predicted", "measured", "verdict")
    lines = _wrap_row(header, widths)
    for r in results:
        lines.append("-" * width)
        if r.failed:
            first_line = r.error.splitlines()[0]
            lines.extend(_wrap_row((r.name, first_line, "FAILED"), (first, rest, verdict)))
            continue
        for i, c in enumerate(r.claims):
            if i:
                lines.append("")  # a blank line between claims: rows span several lines
            name = r.name if i == 0 else ""
            lines.extend(_wrap_row((name, c.text, c.predicted, c.measured, c.verdict), widths))
    lines.append("-" * width)
    return lines


def _progress(names):
    """Start and end callbacks: a tqdm bar on a terminal, one flushed line each otherwise
    (a log or a pipe sees every experiment start and finish)."""
    total = len(names)
    position = {name: i + 1 for i, name in enumerate(names)}
    interactive = sys.stderr.isatty()
    bar = None
    if interactive:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="experiment", file=sys.stderr, dynamic_ncols=True)

    def say(text):
        if bar is not None:
            bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def on_start(name):
        if bar is not None:
            bar.set_description(f"running {name}")
        else:
            say(f"[{position[name]}/{total}] {name}: running…")

    def on_done(result):
        if bar is not None:
            bar.update(1)
        if result.failed:
            state = "FAILED (see the report)"
        else:
            from .experiments._base import NOT_REPRODUCED, PARTLY, REPRODUCED

            state = ", ".join(
                f"{result.count(v)} {v}"
                for v in (REPRODUCED, PARTLY, NOT_REPRODUCED)
                if result.count(v)
            )
        say(f"[{position[result.name]}/{total}] {result.name}: {result.seconds:.1f} s, {state}")

    def close():
        if bar is not None:
            bar.close()

    return on_start, on_done, close


def _report(names: list[str], out: str, size: str, seed: int) -> int:
    from ._extras import MissingExtraError, require

    try:
        require("demo", "iterdiff demo (and iterdiff report)")
    except MissingExtraError as err:
        print(f"iterdiff: {err}", file=sys.stderr)
        return 2
    out_path = _check_writable(out)
    os.environ.setdefault("MPLBACKEND", "Agg")
    print(
        f"iterdiff: running {len(names)} experiment(s) at size {size} (JAX, float64)…", flush=True
    )
    import jax

    jax.config.update("jax_enable_x64", True)

    from .experiments._base import NOT_REPRODUCED, PARTLY
    from .experiments._runner import run_all
    from .report import environment, lead, write_report

    start = time.perf_counter()
    on_start, on_done, close = _progress(names)
    try:
        results = run_all(names, size, seed, on_start, on_done)
    finally:
        close()
    total = time.perf_counter() - start
    path = write_report(results, out_path, environment(total, size, seed))
    print()
    print("\n".join(summary_lines(results)))
    print(lead(results))
    print(f"report: {path.resolve().as_uri()}  ({total:.0f} s, size {size}, seed {seed})")
    short = sum(c.verdict in (PARTLY, NOT_REPRODUCED) for r in results for c in r.claims)
    if short:
        print(
            f"{short} claim(s) not fully reproduced; the report gives the rule and a note for each."
        )
    failed = [r.name for r in results if r.failed]
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
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="iterdiff",
        description="Reproduce published results on differentiating iterative algorithms and "
        "write a self-contained HTML report (figures, predicted vs measured, verdicts).",
        epilog="examples:\n  iterdiff demo                          all experiments (~2 min)\n"
        "  iterdiff report --list                 the experiments\n"
        "  iterdiff report --only rates,sinkhorn  some of them (--out DIR, --seed N, --full)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"iterdiff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="reproduce every result the report covers; writes ./iterdiff-report/index.html",
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
