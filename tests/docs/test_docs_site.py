"""The documentation site: it builds with warnings as errors, has a page for every public
name, and its pages work in a real browser (headless Chromium): every internal link
resolves, every formula is typeset by MathJax, no page logs an error.

The build needs the docs extra (``pip install -e ".[docs]"``); the browser check needs
Chromium and its driver from the system packages (``apt-get install chromium
chromium-driver``) and selenium (in the docs extra). Without them these tests skip and
say which is missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

import gradtx

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "docs" / "_build"
HTML = BUILD / "html"
SCREENSHOT = BUILD / "screenshots" / "api-gradtx.rprop.png"

DOCS_MODULES = ("sphinx", "furo", "myst_parser", "sphinx-mathjax-offline")


def _missing(modules) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _unavailable(reason: str):
    """Skip, except where GRADTX_DOCS_REQUIRED is set (as .ci/run does): fail there."""
    if os.environ.get("GRADTX_DOCS_REQUIRED"):
        pytest.fail(f"GRADTX_DOCS_REQUIRED is set but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def site() -> Path:
    """The site, built with warnings as errors (the check ``.ci/run`` relies on). Sphinx
    rebuilds only what changed: a few seconds after a first build."""
    missing = _missing(DOCS_MODULES)
    if missing:
        _unavailable(f"docs extra not installed ({', '.join(missing)}): pip install -e '.[docs]'")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    done = subprocess.run(
        [*command, str(ROOT / "docs"), str(HTML)], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, f"docs build failed:\n{done.stdout}\n{done.stderr}"
    return HTML


def _public_names() -> list[str]:
    from gradtx.interop import torch as interop_torch

    names = [f"gradtx.{n}" for n in gradtx.__all__]
    return names + [f"gradtx.interop.torch.{n}" for n in interop_torch.__all__]


def test_every_public_name_has_an_api_page(site):
    missing = []
    for qualname in _public_names():
        page = site / "api" / f"{qualname}.html"
        if not page.exists() or f'id="{qualname}"' not in page.read_text():
            missing.append(qualname)
    assert not missing, f"no API entry for: {missing}"


def _browser():
    """A headless Chromium driven by the system's chromedriver (never downloads one)."""
    if _missing(["selenium"]):
        _unavailable("selenium not installed: pip install -e '.[docs]'")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        _unavailable("no headless browser: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1600",
        "--allow-file-access-from-files",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})
    return webdriver.Chrome(service=Service(driver_path), options=options)


# Run in the page once it has loaded: waits for MathJax, then reports what it sees.
_INSPECT = """
const done = arguments[arguments.length - 1];
const ready = window.MathJax && MathJax.startup ? MathJax.startup.promise : Promise.resolve();
ready.then(() => {
  const math = Array.from(document.querySelectorAll('.math'));
  done({
    ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
    math: math.length,
    untypeset: math.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent),
    // a TeX error (mjx-merror) or an undefined macro (MathJax shows it as red text)
    errors: Array.from(document.querySelectorAll('mjx-merror, mtext[mathcolor="red"]'))
      .map(e => e.textContent),
  });
}, (err) => done({error: String(err)}));
"""


def _local(url: str) -> tuple[Path, str] | None:
    """(file, fragment) of a link into the site; None for an outside link."""
    target, fragment = urldefrag(url)
    parsed = urlparse(target)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path)), fragment


def test_pages_in_a_browser(site):
    driver = _browser()
    pages = sorted(p for p in site.rglob("*.html") if "_static" not in p.parts)
    seen: dict[Path, dict] = {}
    problems: list[str] = []
    start = time.perf_counter()
    try:
        driver.set_script_timeout(30)
        for page in pages:
            driver.get(page.as_uri())
            report = driver.execute_async_script(_INSPECT)
            name = page.relative_to(site)
            if "error" in report:
                problems.append(f"{name}: MathJax failed: {report['error']}")
                continue
            seen[page.resolve()] = report
            for text in report["untypeset"]:
                problems.append(f"{name}: formula not typeset: {text[:80]!r}")
            for text in report["errors"]:
                problems.append(f"{name}: MathJax error: {text[:80]!r}")
            for entry in driver.get_log("browser"):
                problems.append(f"{name}: console: {entry['message'][:200]}")
        driver.get((site / "api" / "gradtx.rprop.html").as_uri())
        driver.execute_async_script(_INSPECT)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))
    finally:
        driver.quit()
    for page, report in seen.items():
        for url in report["links"]:
            local = _local(url)
            if local is None:
                continue
            target, fragment = local
            name = page.relative_to(site.resolve())
            if not target.exists():
                problems.append(f"{name}: broken link {url}")
            elif fragment and target.resolve() in seen:
                if unquote(fragment) not in seen[target.resolve()]["ids"]:
                    problems.append(f"{name}: link to a missing anchor {url}")
    typeset = sum(r["math"] for r in seen.values())
    print(
        f"\n{len(seen)} pages, {typeset} formulas, {time.perf_counter() - start:.1f} s;"
        f" screenshot: {SCREENSHOT}"
    )
    assert not problems, "\n".join(problems)
    assert typeset > 0, "no formula on any page: is MathJax configured?"
    assert SCREENSHOT.stat().st_size > 10_000


def test_readme_links_into_the_site_name_existing_pages():
    """README.md links into the site with the absolute base of pyproject's
    [project.urls] Documentation; each must name a page the site builds."""
    import re

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Documentation"]
    links = re.findall(r"\]\((https?://[^)\s]+)\)", (ROOT / "README.md").read_text())
    into_site = [url for url in links if url.startswith(base)]
    assert into_site, f"README.md has no link into the site ({base})"
    for url in into_site:
        page = urldefrag(url)[0][len(base) :].removesuffix(".html")
        sources = [ROOT / "docs" / f"{page}.md", ROOT / "docs" / f"{page}.rst"]
        generated = page.startswith("api/")  # written by docs/_apigen.py at build time
        assert generated or any(s.exists() for s in sources), f"no page for {url}"
    outside = [url for url in links if not url.startswith(base)]
    assert not outside, f"README.md links outside the site: {outside}"


def test_readme_lists_every_public_function():
    """README.md's list of names keeps up with ``gradtx.__all__`` (its functions and
    transforms; the state classes and types are summed up there in words)."""
    import inspect

    readme = (ROOT / "README.md").read_text()
    missing = [
        name
        for name in gradtx.__all__
        if inspect.isfunction(getattr(gradtx, name)) or name == "MultiSteps"
        if f"`{name}`" not in readme
    ]
    assert not missing, f"README.md does not list: {missing}"
