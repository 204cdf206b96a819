"""The built documentation site works where users open it: from disk (file://), offline.

MkDocs builds the site (skipped, saying why, without the docs extra); headless Chromium
(Debian's `chromium`, as in test_report_browser.py) opens index.html from file://, with every
host name unresolvable, logs no error, and follows a navigation link to a page, which loads
(nav links are files, `use_directory_urls: false`, not directories a browser would list).
No page asks for anything on the network (no Google fonts, no CDN scripts or styles).
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install '.[docs]')")
pytest.importorskip("material", reason="mkdocs-material is not installed (pip install '.[docs]')")

# Resources a page loads: <link href>, <script src>, <img src>, CSS url() and @import.
_EXTERNAL = re.compile(
    r"<(?:link|script|img|iframe|source)\b[^>]*\b(?:href|src)=[\"']?(?:https?:)?//"
    r"|url\(\s*[\"']?(?:https?:)?//|@import\s+[\"']?(?:url\()?[\"']?(?:https?:)?//",
    re.I,
)

_PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
window.addEventListener('unhandledrejection', e => window.__errors.push(String(e.reason)));
const _err = console.error; console.error = (...a) => { window.__errors.push(a.join(' ')); _err(...a); };
window.addEventListener('load', () => setTimeout(() => {
  const nav = [...document.querySelectorAll('nav a.md-nav__link')];
  const link = nav.find(a => a.getAttribute('href') === 'modes.html');
  if (window.location.hash === '#follow') { link.click(); return; }
  const out = document.createElement('pre');
  out.id = '__probe';
  out.textContent = JSON.stringify({errors: window.__errors, found: Boolean(link),
    nav: nav.map(a => a.getAttribute('href')),
    network: performance.getEntriesByType('resource').map(e => e.name)
      .filter(n => !n.startsWith('file:') && !n.startsWith('data:'))});
  document.body.appendChild(out);
}, 300));
</script>"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return out


def test_nothing_is_fetched_from_the_network(site):
    hits = []
    for path in [*site.rglob("*.html"), *site.rglob("*.css")]:
        for match in _EXTERNAL.finditer(path.read_text("utf-8", errors="replace")):
            hits.append(f"{path.relative_to(site)}: {match.group(0)}")
    assert not hits, hits


def test_nav_links_are_files(site):
    page = (site / "index.html").read_text("utf-8")
    links = set(re.findall(r'<a href="([^"#]+)" class="md-nav__link', page))
    assert {"modes.html", "trust.html", "api/iterdiff.html"} <= links
    for link in links:
        assert (site / link).is_file(), f"nav link {link!r} is not a file of the site"


def _chromium(url: str, timeout: int = 120) -> str:
    run = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: no host name resolves
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return run.stdout


@pytest.fixture(scope="module")
def probed(site):
    index = site / "index.html"
    index.write_text(index.read_text("utf-8").replace("<head>", "<head>" + _PROBE, 1), "utf-8")
    return index


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's `chromium` is not installed")
def test_opens_from_file_without_errors(probed):
    dom = _chromium(probed.as_uri())
    match = re.search(r'<pre id="__probe">(.*?)</pre>', dom, re.S)
    assert match, "the page's scripts did not run"
    probe = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["found"], probe["nav"]
    assert probe["errors"] == []
    assert probe["network"] == []


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's `chromium` is not installed")
def test_follows_a_nav_link_to_a_page(probed):
    """A click on "Choosing a differentiation mode" in the navigation loads that page."""
    dom = _chromium(probed.as_uri() + "#follow")
    assert '<h1 id="choosing-a-differentiation-mode">Choosing a differentiation mode' in dom
    assert "The decision table" in dom
