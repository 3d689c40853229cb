"""Headless Chromium through Debian's chromedriver, with no network of its own.

The browser tests must never be skipped: when Chromium or its driver is missing this
fails loudly (``scripts/test.sh`` installs both, ``chromium`` and ``chromium-driver``).
Selenium Manager is never asked for a driver (it would download one): the driver and
the browser are given by path. The machine's network is closed, so everything that
would phone home (background networking, component updates, sync) is switched off, and
each browser gets a fresh profile directory.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--window-size=1280,900",
)


def _which(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError(
        f"{' / '.join(names)} not found: the browser tests need Debian's chromium and "
        "chromium-driver (bash scripts/test.sh installs them: apt-get install chromium "
        "chromium-driver)"
    )


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a fresh profile; quit (and the profile removed) after."""
    binary = _which("chromium", "chromium-browser")
    driver_path = _which("chromedriver")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
