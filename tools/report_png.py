"""Regenerate docs/report.png, the picture of the demo report in the README.

    python tools/report_png.py                      # runs `iterdiff demo` (minutes), then shoots
    python tools/report_png.py --report DIR         # shoots an existing report (DIR/index.html)

The screenshot is the top of the report (summary, how verdicts are decided, the first
experiment) in headless Chromium (Debian's `chromium`: apt-get install -y chromium), 1200 px
wide, as a reader first sees it.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "report.png"
WIDTH, HEIGHT = 1200, 1400


def screenshot(page: pathlib.Path, out: pathlib.Path, width: int = WIDTH, height: int = HEIGHT):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("headless Chromium is needed: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--screenshot={out}",
                f"--window-size={width},{height}",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", help="an existing report directory (default: run the demo)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        report = pathlib.Path(args.report or tmp)
        if args.report is None:
            subprocess.run(
                [sys.executable, "-m", "iterdiff.cli", "demo", "--out", str(report)],
                check=True,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT / "src")},  # this checkout's code
            )
        screenshot(report / "index.html", OUT)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
