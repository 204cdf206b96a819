"""Markdown tables of the measured rows, and the verdict against issue 10's targets."""

import math
import platform

import jax

TARGETS = """\
Targets (issue 10), at default settings: Implicit (solve + grad)/solve ≤ 1.15 with relative
error ≤ 1e-8 and faster than the fastest anchor's implicit method; Unrolled ≤ 3×; OneStep ≤
1.05×; compile of solve + gradient ≤ 1 s; forward within 5% of a hand-written while_loop."""


def _fmt(value, spec):
    return (
        "—" if value is None or (isinstance(value, float) and math.isnan(value)) else spec % value
    )


def header(args, versions):
    return (
        f"{platform.machine()}, {jax.device_count()}× {jax.default_backend()}, "
        f"jax {jax.__version__}, "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f"; float64; forward tol {args.tol:g}; medians of ≤ {args.repeats} interleaved pairs"
    )


def problem_table(problem, rows):
    lines = [
        f"### {problem.name} ({problem.note}); reference vs central difference: "
        f"{problem.fd_check:.0e}",
        "",
        "| method | steps | forward (ms) | (solve+grad)/solve | grad rel. error | forward rel. error "
        "| compile (s) | XLA temp (MiB) | peak RSS (MiB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.method} | {r.steps} | {_fmt(r.forward_ms, '%.2f')} | "
            f"{_fmt(r.ratio, '%.2f')} | {_fmt(r.gradient_error, '%.1e')} | "
            f"{_fmt(r.forward_error, '%.1e')} | {_fmt(r.compile_s, '%.2f')} | "
            f"{_fmt(r.temp_mib, '%.1f')} | {_fmt(r.rss_mib, '%.0f')} |"
            + (f" {r.note}" if r.note else "")
        )
    return "\n".join(lines) + "\n"


def verdict(rows_by_problem):
    """One line per problem: each target met or missed, with the number."""
    lines = [
        "| problem | Implicit ratio, error | vs fastest anchor implicit | Unrolled | OneStep "
        "| max compile (s) | forward vs while_loop |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]

    def mark(ok):
        return "" if ok else " **miss**"

    for name, rows in rows_by_problem.items():
        by = {r.method: r for r in rows}
        imp, unr, one = (by.get(f"iterdiff {m}") for m in ("Implicit()", "Unrolled()", "OneStep()"))
        hand = by.get("while_loop (hand-written, forward)")
        # Anchors' implicit methods at a forward accuracy at least as good as ours (÷10 slack).
        anchors = [
            r.ratio * r.forward_ms
            for r in rows
            if "implicit" in r.method.lower()
            and not r.method.startswith("iterdiff")
            and not math.isnan(r.ratio)
            and (imp is None or r.forward_error <= 10 * imp.forward_error)
        ]
        cells = [name]
        if imp:
            cells.append(
                f"{imp.ratio:.2f}, {imp.gradient_error:.0e}"
                + mark(imp.ratio <= 1.15 and imp.gradient_error <= 1e-8)
            )
            ours = imp.ratio * imp.forward_ms
            cells.append(
                f"{ours:.1f} vs {min(anchors):.1f} ms" + mark(ours < min(anchors))
                if anchors
                else "—"
            )
        else:
            cells += ["—", "—"]
        cells.append(f"{unr.ratio:.2f}" + mark(unr.ratio <= 3.0) if unr else "—")
        cells.append(f"{one.ratio:.2f}" + mark(one.ratio <= 1.05) if one else "—")
        compiles = [r.compile_s for r in rows if r.method.startswith("iterdiff")]
        worst = max(compiles) if compiles else float("nan")
        cells.append(f"{worst:.2f}" + mark(worst <= 1.0))
        if hand:
            overhead = hand.ratio - 1
            cells.append(f"{100 * overhead:+.0f}%" + mark(overhead <= 0.05))
        else:
            cells.append("—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
