"""The example in a real browser: Debian's headless Chromium, driven through its
chromedriver, on the app served from loopback with the demo accounts.

At a desktop's 1280 px and a phone's 390 px, each page fits its width, logs no
console error, and every text on it is readable: 11 px or larger as drawn, and
at least 4.5:1 against what is behind it (WCAG AA), computed in the page from the
styles the browser applied.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait
from werkzeug.serving import make_server

WIDTHS = (1280, 390)
#: Flags for a closed network: no background connections, no first-run work.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

#: Every visible text's problems: too small as drawn, or too little contrast with
#: the first opaque background behind it (the page's canvas, white, at the end).
READABILITY = """
const rgba = (text) => {
  const [r, g, b, a] = text.match(/[\\d.]+/g).map(Number);
  return [r, g, b, a === undefined ? 1 : a];
};
const over = (top, below) => top.slice(0, 3).map(
  (c, i) => c * top[3] + below[i] * (1 - top[3])).concat([1]);
const luminance = (colour) => {
  const [r, g, b] = colour.slice(0, 3).map((c) => {
    c /= 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
};
const behind = (element) => {
  const layers = [];
  for (let e = element; e; e = e.parentElement) {
    const colour = rgba(getComputedStyle(e).backgroundColor);
    if (colour[3] > 0) layers.push(colour);
    if (colour[3] >= 1) break;
  }
  return layers.reverse().reduce((below, top) => over(top, below), [255, 255, 255, 1]);
};
const problems = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  const element = node.parentElement;
  const text = node.textContent.trim();
  if (!text || element.closest("title, style, script")) continue;
  const style = getComputedStyle(element);
  const box = element.getBoundingClientRect();
  if (style.visibility !== "visible" || box.width === 0 || box.height === 0) continue;
  const svg = element instanceof SVGElement;
  const size = svg ? box.height : parseFloat(style.fontSize);
  const background = behind(element);
  const colour = over(rgba(svg ? style.fill : style.color), background);
  const [light, dark] = [luminance(colour), luminance(background)].sort((a, b) => b - a);
  const ratio = (light + 0.05) / (dark + 0.05);
  if (ratio < 4.5 || size < 11) {
    problems.push(`"${text.slice(0, 40)}": ${ratio.toFixed(2)}:1, ${size.toFixed(1)} px`);
  }
}
return problems;
"""


@pytest.fixture
def sentinel_config() -> dict[str, object]:
    return {"SENTINEL_DEMO_DATA": True}  # the demo accounts, their threads and history


@pytest.fixture
def site(sentinel_app) -> Iterator[str]:
    """The app served on a loopback port, as a browser reaches it."""
    server = make_server("127.0.0.1", 0, sentinel_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def downloads() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sentinel-downloads-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def browser(chromium: tuple[str, str], downloads: Path) -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the module, on a fresh profile."""
    binary, driver = chromium
    with tempfile.TemporaryDirectory(prefix="sentinel-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        options.add_experimental_option(
            "prefs",
            {"download.default_directory": str(downloads), "download.prompt_for_download": False},
        )
        chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
        try:
            yield chrome
        finally:
            chrome.quit()


@pytest.fixture
def page(browser: webdriver.Chrome, site: str) -> Iterator[Page]:
    # Every test starts signed out: cookies name a host, not a port, so the last
    # test's server left its cookies for this one.
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    yield Page(browser, site)
    browser.get("about:blank")
    browser.get_log("browser")  # what this test's pages logged stays with it


class Page:
    """The browser at a width, with what a person would check on each page."""

    def __init__(self, browser: webdriver.Chrome, site: str) -> None:
        self.browser = browser
        self.site = site

    def open(self, path: str) -> None:
        self.browser.get(self.site + path)

    def at(self, path: str) -> bool:
        return urlsplit(self.browser.current_url).path == path

    def wait_for(self, path: str) -> None:
        WebDriverWait(self.browser, 10).until(lambda _: self.at(path))

    def sign_in(self, token: str) -> None:
        """Fill in the sign-in form the browser is on and send it."""
        self.browser.find_element(By.ID, "token").send_keys(token)
        self.browser.find_element(By.CSS_SELECTOR, "form.sign-in button").click()

    def heading(self) -> str:
        return str(self.browser.find_element(By.TAG_NAME, "h1").text)

    def check(self, *, console: bool = True) -> None:
        """The page as it is now, at each width: fits, logs no error, is readable."""
        for width in WIDTHS:
            self.browser.set_window_size(width, 900)
            inner, scroll = self.browser.execute_script(
                "return [innerWidth, document.documentElement.scrollWidth]"
            )
            assert inner == width, f"the window is {inner} px wide, not {width}"
            assert scroll <= inner, f"{self.browser.current_url} overflows at {width} px"
            problems: list[Any] = self.browser.execute_script(READABILITY)
            assert problems == [], f"{self.browser.current_url} at {width} px: {problems}"
        if console:
            errors = [e for e in self.browser.get_log("browser") if e["level"] == "SEVERE"]
            assert errors == [], f"{self.browser.current_url} logged {errors}"


def test_an_admin_signs_in_and_reads_every_page_on_a_desktop_and_a_phone(page):
    page.open("/login")
    assert page.heading() == "Sign in"
    page.check()
    page.open("/admin/usage")  # signed out: the sign-in page, then back
    page.wait_for("/login")
    page.sign_in("sntl_demo_admin")
    page.wait_for("/admin/usage")
    assert page.heading().startswith("Usage · ")
    page.check()
    page.browser.find_element(By.LINK_TEXT, "My usage").click()
    page.wait_for("/me/usage")
    assert page.heading().startswith("Ada Admin")
    page.check()


def test_a_pro_user_downloads_a_pdf_with_the_session_cookie(page, downloads):
    page.open("/me/usage")
    page.wait_for("/login")
    page.sign_in("sntl_demo_pro")
    page.wait_for("/me/usage")
    page.check()
    link = page.browser.find_element(By.LINK_TEXT, "Export PDF")
    name = link.get_attribute("href").split("/")[-2]
    link.click()
    saved = downloads / f"thread-{name}.pdf"
    deadline = time.monotonic() + 15
    while not saved.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert saved.read_bytes().startswith(b"%PDF-")


def test_a_free_user_sees_why_an_export_and_the_dashboard_are_refused(page):
    page.open("/login")
    page.sign_in("sntl_demo_free")
    page.wait_for("/me/usage")
    page.check()
    page.browser.find_element(By.LINK_TEXT, "Export PDF").click()
    WebDriverWait(page.browser, 10).until(lambda _: page.heading() != "Farah Free")
    assert page.heading() == "PDF export is not in your plan"
    body = page.browser.find_element(By.TAG_NAME, "main").text
    assert "the Pro and Enterprise plans include it" in body
    page.check(console=False)  # Chromium logs the 403 itself as a console error
    page.open("/admin/usage")
    assert page.heading() == "Not allowed"
    assert "This page is for administrators." in page.browser.find_element(By.TAG_NAME, "main").text
    page.browser.find_element(By.LINK_TEXT, "Back to my usage").click()
    page.wait_for("/me/usage")
