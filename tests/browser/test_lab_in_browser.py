"""A person's way through the site, in Debian's Chromium: start a lab, type into the shell,
resize, refresh, add an instance, paste; another person is refused; an expired lab says why;
an image that is not on the host shows its download, then starts.
The screen is read from the page's own ``window.term`` (xterm.js's buffer)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import LiveSite

pytestmark = [pytest.mark.browser, pytest.mark.root, pytest.mark.redis]

SCREEN = """() => {
  const buffer = window.term.buffer.active;
  const lines = [];
  for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
  return lines.join("\\n");
}"""


def screen(page: Any) -> str:
    return str(page.evaluate(SCREEN))


def wait_for_screen(page: Any, pattern: str, timeout: float = 20_000) -> re.Match[str]:
    """Wait until the terminal shows a line matching ``pattern``; return the match."""
    page.wait_for_function(
        """(pattern) => {
          const buffer = window.term && window.term.buffer.active;
          if (!buffer) return false;
          const re = new RegExp(pattern, "m");
          for (let i = 0; i < buffer.length; i++) {
            if (re.test(buffer.getLine(i).translateToString(true))) return true;
          }
          return false;
        }""",
        arg=pattern,
        timeout=timeout,
    )
    match = re.search(pattern, screen(page), re.MULTILINE)
    assert match, screen(page)
    return match


def wait_connected(page: Any) -> None:
    page.wait_for_function(
        "() => window.playground && window.playground.active"
        " && window.playground.active.state === 'connected'"
    )
    wait_for_screen(page, r"root@node\d:/# ")


def start_lab(page: Any) -> str:
    page.goto("/")
    page.click("#start")
    page.wait_for_url(re.compile(r"/labs/[0-9a-f-]{36}/"))
    wait_connected(page)
    return str(page.url.split("#")[0])


def run(page: Any, command: str) -> None:
    page.keyboard.type(command)
    page.keyboard.press("Enter")


def test_a_lab_starts_and_runs_what_is_typed(page: Any) -> None:
    start_lab(page)
    run(page, "echo $((6*7))")
    wait_for_screen(page, r"^42$")
    assert page.locator(".panel:not([hidden]) .conn-state").inner_text() == "Connected"


def test_the_shell_follows_the_size_of_the_window(page: Any) -> None:
    start_lab(page)
    for width, height in ((1100, 720), (700, 420)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)
        rows, cols = page.evaluate("() => [window.term.rows, window.term.cols]")
        run(page, "clear; stty size")
        wait_for_screen(page, rf"^{rows} {cols}$")


def test_a_refresh_shows_the_same_shell_and_its_scrollback(page: Any) -> None:
    start_lab(page)
    run(page, "echo pid-$$-$((20+3))")
    first = wait_for_screen(page, r"^pid-(\d+)-23$")
    page.reload()
    wait_connected(page)
    wait_for_screen(page, rf"^pid-{first[1]}-23$")  # the scrollback, replayed
    run(page, "echo again-$$")
    wait_for_screen(page, rf"^again-{first[1]}$")  # the same shell


def test_a_second_instance_gets_its_own_tab(page: Any) -> None:
    start_lab(page)
    page.click("#add-instance")
    page.wait_for_url(re.compile(r"#node2$"))
    page.wait_for_function(
        "() => window.playground.active.instance.name === 'node2'"
        " && window.playground.active.state === 'connected'"
    )
    wait_for_screen(page, r"root@node2:/# ")
    run(page, "hostname")
    wait_for_screen(page, r"^node2$")
    assert page.locator(".tab").count() == 2


def test_copy_and_paste_go_through_the_clipboard(page: Any) -> None:
    start_lab(page)
    page.evaluate("() => navigator.clipboard.writeText('echo pasted-$((3+4))')")
    page.keyboard.press("Control+Shift+V")
    wait_for_screen(page, r"# echo pasted-\$\(\(3\+4\)\)$")  # pasting is asynchronous
    page.keyboard.press("Enter")
    wait_for_screen(page, r"^pasted-7$")
    # Selecting copies, as in most terminals on Linux.
    page.evaluate("() => window.term.selectAll()")
    page.wait_for_function(
        "() => navigator.clipboard.readText().then((text) => text.includes('pasted-7'))"
    )


def test_another_person_gets_403_on_the_lab_and_its_terminal(
    page: Any, other_page: Any, live_site: LiveSite
) -> None:
    lab_url = start_lab(page)
    ws_path = page.evaluate("() => window.playground.active.instance.ws")
    response = other_page.goto(lab_url)
    assert response.status == 403
    assert "not yours" in other_page.content()
    outcome = other_page.evaluate(
        """(path) => new Promise((resolve) => {
          const ws = new WebSocket("ws://" + location.host + path);
          ws.onopen = () => resolve("open");
          ws.onclose = (event) => resolve("closed " + event.code);
        })""",
        ws_path,
    )
    assert outcome == "closed 1006"  # the handshake was refused with HTTP 403
    assert other_page.request.get(lab_url + "status").status == 403


def test_an_expired_lab_says_why_it_ended(page: Any, live_site: LiveSite) -> None:
    lab_url = start_lab(page)
    lab_id = lab_url.rstrip("/").rsplit("/", 1)[1]
    live_site.django(
        "from datetime import timedelta; from django.utils import timezone; "
        "from playground.labs.models import Lab; "
        f"Lab.objects.filter(id='{lab_id}')"
        ".update(expires_at=timezone.now() - timedelta(seconds=1))"
    )
    # Beat runs the expiry every 2 s here; the open page is told, and reloads.
    page.wait_for_selector("#ended-reason", timeout=30_000)
    assert "its lifetime ran out" in page.inner_text("#ended-reason")


def test_an_image_that_is_not_here_shows_its_download_then_starts(
    page: Any, live_site: LiveSite, tmp_path: Path
) -> None:
    from tests.conftest import build_busybox_rootfs
    from tests.integration.fake_registry import FakeRegistry, run_fake_registry
    from tests.integration.oci_layouts import build_image, make_layer

    built = build_image([make_layer(build_busybox_rootfs(tmp_path / "rootfs"), "gzip")])
    fake = FakeRegistry(delay=1.5)  # before each blob: long enough to see the bars
    fake.add_image("play/slow", "v1", built)
    with run_fake_registry(fake) as registry:
        live_site.django(
            "from playground.catalog.models import Image; "
            f"Image.objects.create(slug='slow', reference='{registry.host}/play/slow:v1', "
            "title='Slow', position=9)"
        )
        page.goto("/labs/new?image=slow")
        page.click("#start")
        page.wait_for_url(re.compile(r"/labs/[0-9a-f-]{36}/"))
        bars = page.locator(".panel:not([hidden]) .pull .layer")
        bars.first.wait_for(state="visible")
        assert page.locator(".panel:not([hidden]) .conn-state").inner_text() == (
            "Downloading the image…"
        )
        assert "/play/slow:v1" in page.inner_text(".panel:not([hidden]) .pull-ref")
        wait_connected(page)
    assert page.locator(".panel:not([hidden]) .pull").is_hidden()
    phases = page.eval_on_selector_all(".pull .layer", "rows => rows.map(r => r.dataset.phase)")
    assert phases and set(phases) <= {"done", "exists"}
    run(page, "echo pulled-$((40+2))")
    wait_for_screen(page, r"^pulled-42$")
