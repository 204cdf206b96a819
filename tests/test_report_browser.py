"""The HTML report in a real browser: headless Chromium (Debian's `chromium`) loads it from
file://, every figure panel decodes to a non-zero natural size, nothing is logged as an error,
and at 800 px the page does not overflow sideways (panels wrap, tables wrap)."""

import json
import re
import shutil
import subprocess

import pytest
from matplotlib.figure import Figure

from iterdiff import report
from iterdiff.experiments import Claim, Result, _runner
from iterdiff.experiments._base import PARTLY, REPRODUCED

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's `chromium` is not installed (apt-get install -y chromium)"
)

# Injected before anything else: records errors and, once loaded, each image's natural size.
_PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
const _err = console.error; console.error = (...a) => { window.__errors.push(a.join(' ')); _err(...a); };
window.addEventListener('load', () => {
  const sizes = [...document.images].map(i => [i.naturalWidth, i.naturalHeight, i.complete]);
  const out = document.createElement('pre');
  out.id = '__probe';
  out.textContent = JSON.stringify({sizes: sizes, errors: window.__errors,
    scroll: document.documentElement.scrollWidth, inner: window.innerWidth});
  document.body.appendChild(out);
});
</script>"""


PANELS = 3  # the second figure's panels


def _results():
    good = []
    for i, panels in enumerate((1, PANELS)):
        fig = Figure(figsize=(4.5 * panels, 3.5), layout="constrained")
        for ax in fig.subplots(1, panels, squeeze=False)[0]:
            ax.semilogy([1, 2, 3], [1, 1e-3, 1e-6], label="‖ẋ_k − dx̄/dλ‖")
            ax.set_ylabel("a long label of the vertical axis")
            ax.legend()
        claims = [
            Claim("c", "ρ", "q", REPRODUCED, "within 10 %"),
            Claim("d " * 40, "ρ = 0.5" * 5, "0.123456789" * 12, PARTLY, "r " * 30, "note " * 20),
        ]
        good.append(Result(f"exp{i}", f"Experiment {i}", "A. Author, Venue 2024", claims, fig))
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        broken = _runner.failure("broken", exc)
    return [*good, broken]


def _chromium(*args, timeout=120):
    cmd = [
        CHROMIUM,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    path = report.write_report(_results(), out, report.environment(1.0, "tiny", 0))
    html = path.read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    probed = out / "probed.html"
    probed.write_text(html.replace("<head>", "<head>" + _PROBE, 1))
    return path, probed


def _probe(probed, width):
    run = _chromium(
        "--virtual-time-budget=10000", f"--window-size={width},900", "--dump-dom", probed.as_uri()
    )
    match = re.search(r'<pre id="__probe">(.*?)</pre>', run.stdout, re.S)
    assert match, f"the probe did not run; chromium said: {run.stderr[-2000:]}"
    return run, json.loads(match.group(1).replace("&quot;", '"'))


def test_every_figure_renders_and_no_console_errors(page):
    _, probed = page
    run, probe = _probe(probed, 1400)
    assert len(probe["sizes"]) == 1 + PANELS  # one image per panel
    for width, height, complete in probe["sizes"]:
        assert complete and width > 0 and height > 0
    assert probe["errors"] == []
    console_errors = [
        line for line in run.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line
    ]
    assert console_errors == []


def test_narrow_window_does_not_overflow(page):
    """At 800 px (a laptop's half screen, a tablet) the panels wrap and the tables wrap: the
    page is no wider than the window."""
    _, probed = page
    _, probe = _probe(probed, 800)
    assert probe["scroll"] <= probe["inner"], probe


def test_screenshot_is_a_png(page, tmp_path):
    path, _ = page
    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,900", path.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
