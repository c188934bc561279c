"""Debian's Chromium for the browser tests, driven by Playwright.

`make test` installs both (requirements-dev.txt, and Debian's chromium via `make browser`); a
missing browser is a failure, never a skip.
"""
import os
from contextlib import contextmanager
from pathlib import Path

from playwright import sync_api as playwright_api

# Playwright's sync API runs an event loop in this thread; the ORM calls of the fixtures are safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
assert Path(CHROMIUM).exists(), "Debian's chromium is needed for the browser tests: run `make browser`"


@contextmanager
def launched():
    """A headless Chromium for the length of the block."""
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
