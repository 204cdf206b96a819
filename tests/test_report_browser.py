"""The HTML report in a real browser: headless Chromium (Debian's `chromium`) loads it from
file://, every figure decodes to a non-zero natural size, and nothing is logged as an error."""

import json
import re
import shutil
import subprocess

import pytest
from matplotlib.figure import Figure

from iterdiff import report
from iterdiff.experiments import Claim, Result, _runner

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
  out.textContent = JSON.stringify({sizes: sizes, errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


def _results():
    good = []
    for i in range(2):
        fig = Figure(figsize=(6, 3), layout="constrained")
        ax = fig.subplots()
        ax.semilogy([1, 2, 3], [1, 1e-3, 1e-6], label="‖ẋ_k − dx̄/dλ‖")
        ax.legend()
        good.append(
            Result(f"exp{i}", f"Experiment {i}", "seed 001", [Claim("c", "ρ", "q", True)], fig)
        )
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


def test_every_figure_renders_and_no_console_errors(page):
    _, probed = page
    run = _chromium("--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    match = re.search(r'<pre id="__probe">(.*?)</pre>', run.stdout, re.S)
    assert match, f"the probe did not run; chromium said: {run.stderr[-2000:]}"
    probe = json.loads(match.group(1).replace("&quot;", '"'))
    assert len(probe["sizes"]) == 2
    for width, height, complete in probe["sizes"]:
        assert complete and width > 0 and height > 0
    assert probe["errors"] == []
    console_errors = [
        line for line in run.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line
    ]
    assert console_errors == []


def test_screenshot_is_a_png(page, tmp_path):
    path, _ = page
    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,900", path.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
