"""Portal test fixtures: the e2e stack (real worker, beat, brokerd) and a headless Chromium.

The browser is Debian's chromium (`/usr/bin/chromium`), driven by Python Playwright; no
`playwright install`. Set KASTLE_SCREENSHOTS=<dir> to keep screenshots of the key pages.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.conftest import (  # noqa: F401  (fixtures)
    _provisioning_env,
    celery_services,
    celery_worker,
    provisioning_stack,
)
from tests.helpers import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def stack(provisioning_stack):  # noqa: F811
    return provisioning_stack


@pytest.fixture
def e2e(stack, celery_worker):  # noqa: F811
    from clusters.models import Host

    wait_until(lambda: Host.objects.filter(name="local").exists(), timeout=15, message="host registration")
    yield stack
    from sharedkit import kafka_admin

    kafka_admin.clear_cache()


@pytest.fixture
def browser_page(monkeypatch: pytest.MonkeyPatch):
    """A Chromium page (laptop-sized). Playwright's sync API runs an event loop in this thread, so
    Django's async-safety check is relaxed for the test's own ORM calls."""
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        context.set_default_timeout(15_000)
        page = context.new_page()
        try:
            yield page
        finally:
            context.close()
            browser.close()


@pytest.fixture
def screenshot():
    """screenshot(page, name): saves a full-page PNG when KASTLE_SCREENSHOTS names a directory."""
    target = os.environ.get("KASTLE_SCREENSHOTS")

    def take(page, name: str) -> None:
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(target) / f"{name}.png"), full_page=True)

    return take
