"""The self-contained HTML report of `iterdiff demo` / `iterdiff report`.

One file, ``index.html``: figures embedded as base64 PNG, inline CSS, no script and no network
access. A summary table first, then one section per experiment (title, claim source, figure,
predicted vs measured, verdict, notes, or the failure with its traceback summary), then the
environment (versions, CPU, dtype, time).
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

from .experiments._base import Result

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       background: #fafafa; color: #222; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; margin-top: 0; }
.lead { color: #555; margin-top: 0; }
section { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 18px 22px;
          margin: 22px 0; }
table { border-collapse: collapse; width: 100%; font-size: 0.92em; margin: 10px 0; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 5px 8px; text-align: left;
         vertical-align: top; }
th { background: #f2f2f2; }
td.num { font-family: "DejaVu Sans Mono", Menlo, monospace; font-size: 0.95em; }
td.nowrap, th.nowrap { white-space: nowrap; }
.ok { color: #1a7f37; font-weight: 600; }
.bad { color: #b35900; font-weight: 600; }
.fail { color: #c62828; font-weight: 600; }
.source { color: #555; font-size: 0.92em; }
img { max-width: 100%; height: auto; display: block; margin: 12px auto; }
pre { background: #f6f6f6; border: 1px solid #e0e0e0; padding: 10px; overflow-x: auto;
      font-size: 0.85em; white-space: pre-wrap; }
.note { color: #444; font-size: 0.93em; }
.claimnote { color: #8a4b00; font-size: 0.9em; }
a { color: #0b57d0; text-decoration: none; }
"""


def _e(text) -> str:
    return html.escape(str(text))


def figure_png(figure, dpi: int = 100) -> bytes:
    """The PNG bytes of a matplotlib figure (Agg), closing pyplot's handle if it has one."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if figure.canvas is None or not hasattr(figure.canvas, "print_png"):
        FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(figure)
    return buffer.getvalue()


def verdict(result: Result) -> tuple[str, str]:
    """(text, css class) of an experiment's verdict."""
    if result.failed:
        return "failed to run", "fail"
    if not result.claims:
        return "no claims", "bad"
    agree = sum(claim.passed for claim in result.claims)
    if agree == len(result.claims):
        return "reproduced", "ok"
    return f"{agree}/{len(result.claims)} claims agree", "bad"


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


def _summary(results: Sequence[Result]) -> str:
    """One row per experiment: name, title, claims that agree, time, verdict (the claims
    themselves are in each section and in the command's printed table)."""
    rows = []
    for r in results:
        word, cls = verdict(r)
        agree = "—" if r.failed else f"{sum(c.passed for c in r.claims)}/{len(r.claims)}"
        rows.append(
            f'<tr><td><a href="#{_e(r.name)}">{_e(r.name)}</a></td><td>{_e(r.title)}</td>'
            f"<td class='num nowrap'>{agree}</td><td class='num nowrap'>{r.seconds:.1f} s</td>"
            f"<td class='{cls} nowrap'>{_e(word)}</td></tr>"
        )
    return (
        "<table><tr><th>experiment</th><th>result of the source material</th>"
        "<th class='nowrap'>claims</th><th>time</th><th>verdict</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _section(result: Result) -> str:
    word, cls = verdict(result)
    parts = [
        f'<section id="{_e(result.name)}">',
        f"<h2>{_e(result.title)}</h2>",
        f'<p class="source">Experiment <code>{_e(result.name)}</code> · source: '
        f"{_e(result.source)} · {result.seconds:.1f} s · verdict: "
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
            png = base64.b64encode(figure_png(result.figure)).decode("ascii")
            parts.append(
                f'<img alt="figure of {_e(result.name)}" src="data:image/png;base64,{png}">'
            )
        rows = []
        for c in result.claims:
            cls_c, w = ("ok", "agrees") if c.passed else ("bad", "disagrees")
            note = f'<div class="claimnote">{_e(c.note)}</div>' if c.note else ""
            rows.append(
                f"<tr><td>{_e(c.text)}{note}</td><td class='num'>{_e(c.predicted)}</td>"
                f"<td class='num'>{_e(c.measured)}</td><td class='{cls_c}'>{w}</td></tr>"
            )
        parts.append(
            "<table><tr><th>claim</th><th>predicted</th><th>measured</th><th>verdict</th></tr>"
            + "".join(rows)
            + "</table>"
        )
        parts.extend(f'<p class="note">{_e(n)}</p>' for n in result.notes)
    parts.append("</section>")
    return "\n".join(parts)


def render(results: Sequence[Result], env: dict[str, str]) -> str:
    """The report as one HTML string."""
    reproduced = sum(r.passed for r in results)
    failed = sum(r.failed for r in results)
    lead = (
        f"{reproduced} of {len(results)} experiments reproduced every claim"
        + (f"; {failed} failed to run" if failed else "")
        + ". Each section states the claim, its source in the seed material, the measured "
        "numbers next to the predicted ones, and notes where they differ."
    )
    env_rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in env.items())
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>iterdiff report</title><style>{_CSS}</style></head><body><main>"
        "<h1>iterdiff: the source material, reproduced</h1>"
        f"<p class='lead'>{_e(lead)}</p>"
        f"<section><h2>Summary</h2>{_summary(results)}</section>"
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
