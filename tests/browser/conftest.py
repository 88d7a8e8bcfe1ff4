"""A live site for the browser tests: daphne and a Celery worker with beat as subprocesses,
on their own SQLite database, the test Redis and the test engine; and Debian's Chromium,
driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.engine_fixtures import EngineProcess
from tests.site_fixtures import ROOT, celery_worker, running_daphne, site_env

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@dataclass
class LiveSite:
    url: str
    env: dict[str, str]

    def django(self, code: str) -> str:
        """Run Python with the site's models, as the site does (``manage.py shell``)."""
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout


@pytest.fixture(scope="module")
def live_site(
    engine_process: EngineProcess, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveSite]:
    import os

    directory = tmp_path_factory.mktemp("site")
    env = {
        **os.environ,
        **site_env(
            database=str(directory / "db.sqlite3"),
            redis_url=redis_url.rsplit("/", 1)[0] + "/1",
            engine_socket=engine_process.socket_path,
        ),
        "PLAYGROUND_VAR_DIR": str(directory),
        "PLAYGROUND_EXPIRE_INTERVAL": "2s",
    }
    with (
        running_daphne(env, directory) as port,
        celery_worker(env, directory / "celery.log", beat=True),
    ):
        yield LiveSite(f"http://127.0.0.1:{port}", env)


@pytest.fixture(scope="module")
def chromium(live_site: LiveSite) -> Iterator[Any]:
    """Chromium, closed before the live site and the engine stop (Playwright's event loop
    must be gone before their teardown runs its own)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any, live_site: LiveSite) -> Iterator[Any]:
    """A page in a fresh browser context: a new anonymous person."""
    context = chromium.new_context(viewport={"width": 1100, "height": 720}, base_url=live_site.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_site.url)
    context.set_default_timeout(20_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def other_page(chromium: Any, live_site: LiveSite) -> Iterator[Any]:
    context = chromium.new_context(base_url=live_site.url)
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()


__all__ = ["LiveSite", "Path"]
