"""The self-contained HTML report of `iterdiff demo` / `iterdiff report`.

One file, ``index.html``: figures embedded as base64 PNG, inline CSS, no script and no network
access. A summary table first, how verdicts are decided, then one section per experiment
(title, the publications it reproduces, figure, predicted vs measured, verdict and the rule that
decided it, notes, or the failure with its traceback summary), then the environment (versions,
CPU, dtype, time).

Each figure is cut into its panels (an axes with its labels, legend and colorbar), one image
each, laid out in the figure's rows and wrapped on narrow screens, so that a three-panel figure
stays legible on a laptop or a phone.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

from .experiments._base import NOT_REPRODUCED, PARTLY, REPRODUCED, Result

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       background: #fafafa; color: #222; line-height: 1.45; }
main { max-width: 1320px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; margin-top: 0; }
.lead { color: #444; margin-top: 0; }
section { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 18px 22px;
          margin: 22px 0; }
table { border-collapse: collapse; width: 100%; font-size: 0.92em; margin: 10px 0; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 5px 8px; text-align: left;
         vertical-align: top; }
th { background: #f2f2f2; }
td.num { font-family: "DejaVu Sans Mono", Menlo, monospace; font-size: 0.95em;
         overflow-wrap: anywhere; }
td.nowrap, th.nowrap { white-space: nowrap; overflow-wrap: normal; }
td.verdict { min-width: 6.5em; }
.ok { color: #1a7f37; font-weight: 600; }
.part { color: #9a6700; font-weight: 600; }
.bad { color: #c62828; font-weight: 600; }
.fail { color: #c62828; font-weight: 600; }
.source { color: #555; font-size: 0.92em; }
.panels { display: flex; flex-wrap: wrap; justify-content: center; gap: 6px 10px;
          margin: 12px 0; }
.panels img { flex: 1 1 0; min-width: min(100%, 400px); height: auto; display: block; }
pre { background: #f6f6f6; border: 1px solid #e0e0e0; padding: 10px; overflow-x: auto;
      font-size: 0.85em; white-space: pre-wrap; }
.note { color: #444; font-size: 0.93em; }
.rule { color: #555; font-size: 0.86em; margin-top: 3px; }
.claimnote { color: #8a4b00; font-size: 0.9em; margin-top: 3px; }
a { color: #0b57d0; text-decoration: none; }
@media (max-width: 700px) {
  main { padding: 12px 10px 32px; }
  section { padding: 12px 12px; }
  table { font-size: 0.85em; }
}
"""

# verdict of a claim -> css class
_CLASS = {REPRODUCED: "ok", PARTLY: "part", NOT_REPRODUCED: "bad"}
DPI = 150  # pixels per inch of the embedded panels; shown at 100 px per inch (sharp on HiDPI)


def _e(text) -> str:
    return html.escape(str(text))


def _canvas(figure):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if figure.canvas is None or not hasattr(figure.canvas, "print_png"):
        FigureCanvasAgg(figure)
    return figure.canvas


def _close(figure) -> None:
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(figure)


def figure_png(figure, dpi: int = 100) -> bytes:
    """The PNG bytes of a whole matplotlib figure (Agg), closing pyplot's handle if it has one."""
    _canvas(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    _close(figure)
    return buffer.getvalue()


def _panel_rows(figure) -> list[list[list]]:
    """The figure's axes grouped into panels (an axes and its colorbars), by subplot row."""
    panels: list[list] = []
    for ax in figure.axes:
        if hasattr(ax, "_colorbar") and panels:  # a colorbar belongs to the panel before it
            panels[-1].append(ax)
        elif ax.get_visible():
            panels.append([ax])
    rows: dict[int, list] = {}
    for panel in panels:
        spec = panel[0].get_subplotspec()
        row = spec.rowspan.start if spec is not None else 0
        rows.setdefault(row, []).append(panel)
    return [rows[r] for r in sorted(rows)]


def figure_panels(figure, dpi: int = DPI) -> list[list[tuple[bytes, int]]]:
    """Each panel of a figure as (PNG bytes, width in CSS pixels at 100 per inch), by row.

    A panel is an axes with everything drawn around it (tick labels, title, legend, colorbar),
    cut out of the laid-out figure; the report shows them side by side and wraps them on
    narrow screens. A figure without axes is one panel.
    """
    from matplotlib.transforms import Bbox

    renderer = _canvas(figure).get_renderer()
    figure.draw(renderer)  # runs the layout engine once
    engine = figure.get_layout_engine()
    figure.set_layout_engine("none")  # keep these positions while panels are hidden below
    rows = _panel_rows(figure)
    inches = figure.dpi_scale_trans.inverted()
    whole = figure.bbox_inches
    out = []
    try:
        for row in rows or [[None]]:
            images = []
            for panel in row:
                if panel is None:
                    box = whole
                else:
                    box = Bbox.union([ax.get_tightbbox(renderer) for ax in panel])
                    box = box.transformed(inches).padded(0.06)
                    box = Bbox.from_extents(
                        max(box.x0, whole.x0), max(box.y0, whole.y0),
                        min(box.x1, whole.x1), min(box.y1, whole.y1),
                    )  # fmt: skip
                # only this panel is drawn: a neighbour's long title cannot spill into it
                others = [ax for ax in figure.axes if panel is not None and ax not in panel]
                shown = [ax.get_visible() for ax in others]
                for ax in others:
                    ax.set_visible(False)
                buffer = io.BytesIO()
                figure.savefig(buffer, format="png", dpi=dpi, bbox_inches=box)
                for ax, visible in zip(others, shown, strict=True):
                    ax.set_visible(visible)
                images.append((buffer.getvalue(), round(box.width * 100)))
            out.append(images)
    finally:
        figure.set_layout_engine(engine)
    _close(figure)
    return out


def verdict(result: Result) -> tuple[str, str]:
    """(text, css class) of an experiment's verdict: "reproduced" when every claim is,
    "not reproduced (k of n claims)" when any claim is not, else "partly reproduced"."""
    if result.failed:
        return "failed to run", "fail"
    if not result.claims:
        return "no claims", "bad"
    n, bad = len(result.claims), result.count(NOT_REPRODUCED)
    if result.count(REPRODUCED) == n:
        return "reproduced", "ok"
    if bad:
        return f"not reproduced ({bad} of {n} claims)", "bad"
    return "partly reproduced", "part"


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(total_seconds: float, size: str, seed: int) -> dict[str, str]:
    """Versions, CPU and run settings, as shown at the end of the report."""
    import jax
    import jaxlib
    import matplotlib
    import numpy

    from . import __version__

    devices = ", ".join(sorted({d.platform for d in jax.devices()}))
    return {
        "iterdiff": __version__,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": numpy.__version__,
        "matplotlib": matplotlib.__version__,
        "platform": platform.platform(),
        "CPU": f"{_cpu()} ({os.cpu_count()} logical cores)",
        "JAX devices": devices,
        "dtype": "float64" if jax.config.read("jax_enable_x64") else "float32",
        "size, seed": f"{size}, {seed}",
        "total time": f"{total_seconds:.1f} s",
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
    }


def _counts(result: Result) -> str:
    if result.failed:
        return "—"
    return " / ".join(str(result.count(v)) for v in (REPRODUCED, PARTLY, NOT_REPRODUCED))


def _summary(results: Sequence[Result]) -> str:
    """One row per experiment: name, title, claims by verdict, time, verdict (the claims
    themselves are in each section and in the command's printed table)."""
    rows = []
    for r in results:
        word, cls = verdict(r)
        rows.append(
            f'<tr><td><a href="#{_e(r.name)}">{_e(r.name)}</a></td><td>{_e(r.title)}</td>'
            f"<td class='num nowrap'>{_counts(r)}</td><td class='num nowrap'>{r.seconds:.1f} s</td>"
            f"<td class='verdict {cls}'>{_e(word)}</td></tr>"
        )
    return (
        "<table><tr><th>experiment</th><th>what it reproduces</th>"
        "<th class='nowrap' title='reproduced / partly / not reproduced'>claims ✓ / ~ / ✗</th>"
        "<th>time</th><th>verdict</th></tr>" + "".join(rows) + "</table>"
    )


_HOW = (
    "<section id='verdicts'><h2>How verdicts are decided</h2>"
    "<p class='note'>Each claim is a statement of a paper or talk, cited in its section, "
    "checked against a measurement of this run, with one of three verdicts: "
    "<span class='ok'>reproduced</span> (the measurement agrees with the prediction, "
    "quantitatively), <span class='part'>partly reproduced</span> (the qualitative statement "
    "holds, but a number misses the source's range) or <span class='bad'>not reproduced</span> "
    "(the statement fails). The rule that decides each verdict is stated under the claim; "
    "identities (an eigenvalue, a closed form) have no middle tier. Timing claims use the "
    "median over repeated measurements and show the range, because a shared machine can slow "
    "any single run down by a factor of two.</p></section>"
)


def _figure(result: Result) -> str:
    rows = []
    for i, row in enumerate(figure_panels(result.figure)):
        images = []
        for j, (png, width) in enumerate(row):
            data = base64.b64encode(png).decode("ascii")
            images.append(
                f'<img alt="figure of {_e(result.name)}, panel {i + 1}.{j + 1}" '
                f'style="max-width: {width}px" src="data:image/png;base64,{data}">'
            )
        rows.append(f'<div class="panels">{"".join(images)}</div>')
    return "".join(rows)


def _section(result: Result) -> str:
    word, cls = verdict(result)
    parts = [
        f'<section id="{_e(result.name)}">',
        f"<h2>{_e(result.title)}</h2>",
        f'<p class="source">Source: {_e(result.source)}.<br>Experiment '
        f"<code>{_e(result.name)}</code> · {result.seconds:.1f} s · verdict: "
        f'<span class="{cls}">{_e(word)}</span></p>',
    ]
    if result.failed:
        parts.append(f"<pre>{_e(result.error)}</pre>")
        parts.append(
            '<p class="note">The other experiments ran; rerun this one alone with '
            f"<code>iterdiff report --only {_e(result.name)}</code>.</p>"
        )
    else:
        if result.figure is not None:
            parts.append(_figure(result))
        rows = []
        for c in result.claims:
            rule = f'<div class="rule">Rule: {_e(c.rule)}</div>'
            note = f'<div class="claimnote">{_e(c.note)}</div>' if c.note else ""
            rows.append(
                f"<tr><td>{_e(c.text)}{rule}{note}</td><td class='num'>{_e(c.predicted)}</td>"
                f"<td class='num'>{_e(c.measured)}</td>"
                f"<td class='verdict {_CLASS[c.verdict]}'>{_e(c.verdict)}</td></tr>"
            )
        parts.append(
            "<table><tr><th>claim</th><th>predicted</th><th>measured</th><th>verdict</th></tr>"
            + "".join(rows)
            + "</table>"
        )
        parts.extend(f'<p class="note">{_e(n)}</p>' for n in result.notes)
    parts.append("</section>")
    return "\n".join(parts)


def lead(results: Sequence[Result]) -> str:
    """One sentence: the claims by verdict, and the experiments that failed to run."""
    claims = [c for r in results for c in r.claims]
    failed = sum(r.failed for r in results)
    counts = {v: sum(c.verdict == v for c in claims) for v in (REPRODUCED, PARTLY, NOT_REPRODUCED)}
    return (
        f"{len(claims)} claims checked in {len(results) - failed} experiments: "
        f"{counts[REPRODUCED]} reproduced, {counts[PARTLY]} partly reproduced, "
        f"{counts[NOT_REPRODUCED]} not reproduced"
        + (f"; {failed} experiment{'s' if failed > 1 else ''} failed to run" if failed else "")
        + "."
    )


def render(results: Sequence[Result], env: dict[str, str]) -> str:
    """The report as one HTML string."""
    text = (
        lead(results) + " The claims come from papers and talks of J. Bolte, E. Pauwels and "
        "S. Vaiter on differentiating iterative algorithms, cited in each section, where the "
        "measured numbers stand next to the predicted ones with notes where they differ."
    )
    env_rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in env.items())
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>iterdiff report</title><style>{_CSS}</style></head><body><main>"
        "<h1>iterdiff: results on differentiating iterative algorithms, reproduced</h1>"
        f"<p class='lead'>{_e(text)}</p>"
        f"<section><h2>Summary</h2>{_summary(results)}</section>"
        + _HOW
        + "\n".join(_section(r) for r in results)
        + f"<section id='environment'><h2>Environment</h2><table>{env_rows}</table></section>"
        "</main></body></html>\n"
    )


def write_report(results: Sequence[Result], out_dir, env: dict[str, str]) -> Path:
    """Write ``out_dir/index.html`` and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    path.write_text(render(results, env), encoding="utf-8")
    return path
