"""report.html as a person sees it: headless Chromium loads it from disk (`make browser`)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from iobench.report import build_report
from tests.report_data import STEEP, make_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium through Debian's chromedriver; skips with the reason when absent."""
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("no chromium/chromedriver on this machine: `make browser` installs Debian's as root")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing: pip install -e '.[dev]'")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(15)
    yield driver
    driver.quit()


def test_report_renders_in_chromium(browser, tmp_path: Path) -> None:
    run = make_run("20260101-000000-aaaa", speed=STEEP, lost=300, unsupported=True)
    build_report([run], tmp_path, ("html",))
    page = tmp_path / "report.html"
    browser.get(page.as_uri())
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert len(images) >= 3
    broken = [alt for alt, complete, width, height in images if not (complete and width > 0 and height > 0)]
    assert not broken, f"figures that did not load: {broken}"
    sections = browser.execute_script(
        "return Array.from(document.querySelectorAll('section.experiment')).map(s => s.id)"
    )
    expected = sorted(f"exp-{name}" for name in run.frame["experiment"].unique())
    assert sorted(sections) == expected
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    # Nothing the page asked the network for: every resource is the file itself or a data: URI.
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(r => r.name)")
    assert not [r for r in resources if re.match(r"https?://", r)]
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1200, min(height + 100, 12000))
    shot = tmp_path / "report.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
