"""Open every page of the built docs in headless Chromium and check that it loaded and its maths rendered.

    python docs/check_site.py [docs/_build/html]          (make docs runs it after the build)

For each HTML page: no SEVERE console message (a script or resource that failed to load: with no network, a
renderer fetched from a CDN would fail here), MathJax finished typesetting, and no raw TeX left in the text a
reader sees (``$$``, ``\\frac``, ``\\begin{``, ``\\partial``...). Needs Debian's ``chromium`` and
``chromium-driver`` and the ``selenium`` package. Exits non-zero naming every page that fails.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

RAW_TEX = ("$$", "\\frac", "\\begin{", "\\partial", "\\delta", "\\sum", "\\mathrm")
SKIP = ("_static", "_sources", "_modules", "jupyter_execute", "_images")
# MathJax 3 resolves this once its first typesetting pass is over (pages with no maths resolve at once).
MATHJAX_STARTED = "return !!(window.MathJax && window.MathJax.startup && window.MathJax.startup.promise)"
WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
if (!window.MathJax || !window.MathJax.startup || !window.MathJax.startup.promise) { done("no-mathjax"); return; }
window.MathJax.startup.promise.then(() => done("ok"), (e) => done("error: " + e));
"""


def pages(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.html") if not any(part in SKIP for part in p.relative_to(root).parts)
                  and p.name not in ("genindex.html", "search.html"))  # fmt: skip


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        options.binary_location = chromium
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = shutil.which("chromedriver")
    if driver_path is None:
        raise SystemExit("check_site: chromedriver not found; install Debian's chromium-driver (make docs does)")
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_script_timeout(60)
    return driver


def check_page(driver: webdriver.Chrome, page: Path) -> list[str]:
    problems = []
    driver.get(page.as_uri())
    has_math = driver.execute_script("return document.querySelectorAll('.math').length") > 0
    if has_math:  # MathJax is loaded asynchronously: wait until it has started (or give up after 30 s)
        try:
            WebDriverWait(driver, 30).until(lambda d: d.execute_script(MATHJAX_STARTED))
        except TimeoutException:
            pass
    status = driver.execute_async_script(WAIT_FOR_MATHJAX)
    if status.startswith("error"):
        problems.append(f"MathJax failed: {status}")
    if has_math:
        if status == "no-mathjax":
            problems.append("the page has maths but MathJax did not load")
        rendered = driver.execute_script("return document.querySelectorAll('mjx-container').length")
        if rendered == 0:
            problems.append("no formula was typeset (no mjx-container)")
    text = driver.execute_script(
        "const b = document.querySelector('article') || document.body;"
        "const c = b.cloneNode(true); c.querySelectorAll('pre, code, script, style, mjx-assistive-mml').forEach(e => e.remove());"
        "return c.innerText;"
    )
    for tex in RAW_TEX:
        if tex in text:
            at = text.index(tex)
            problems.append(f"raw TeX {tex!r} left on the page: ...{text[max(0, at - 40):at + 40]!r}...")
    for entry in driver.get_log("browser"):
        if entry.get("level") == "SEVERE":
            problems.append(f"console error: {entry.get('message')}")
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else Path(__file__).parent / "_build" / "html").resolve()
    found = pages(root)
    if not found:
        print(f"check_site: no HTML pages under {root}; build the docs first (make docs)")
        return 1
    driver = browser()
    failed = 0
    try:
        for page in found:
            problems = check_page(driver, page)
            name = page.relative_to(root)
            if problems:
                failed += 1
                print(f"FAIL {name}")
                for p in problems:
                    print(f"     {p}")
            else:
                print(f"ok   {name}")
    finally:
        driver.quit()
    print(f"check_site: {len(found) - failed} of {len(found)} pages load without console errors with their maths rendered")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
