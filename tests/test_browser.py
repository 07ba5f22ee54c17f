"""The worker's trip page, and the staff's pages, in a real browser on a small phone
screen (360 x 740): Debian's Chromium driven by Playwright against the app served on a free
local port.

Chromium is required, not optional: when /usr/bin/chromium is missing the test fails and says
how to install it (Playwright's own browser download does not work on these machines)."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image
from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

from tests.conftest import PASSWORD, ROOT, People
from tests.test_public import build_scene

CHROMIUM = "/usr/bin/chromium"
# This machine's network is closed: without these Chromium keeps trying Google's services.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
WIDTH, HEIGHT = 360, 740


@pytest.fixture
def live_server(app) -> Iterator[str]:
    """The app on 127.0.0.1 and a free port, in a thread, for the length of the test."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def chromium_path() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"Chromium is not at {CHROMIUM}: the browser tests need Debian's package "
            "(apt-get install chromium fonts-noto-cjk)."
        )
    return CHROMIUM


# Everything on the page whose right edge is past the screen's (an element can stick out of
# a box that hides its overflow, where the page's scrollWidth does not see it).
STICKING_OUT = """width => [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > width + 0.5)
    .map(e => e.tagName + '.' + e.className + ': ' + e.textContent.trim().slice(0, 40))"""


@pytest.mark.parametrize("language", ["zh_CN", "en"])
def test_worker_trip_page_on_a_360px_phone(
    app, people, issuer_key, live_server, chromium_path, language
):
    """The trip page of a worker whose coach has a driver and an escort, in either language:
    in English the "Where to be" column left the crew's ☎ numbers 395 px wide."""
    scene = build_scene(app, people, issuer_key)
    worker = scene.seated[0]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = Path(ARTIFACTS / f"worker-trip-360-{language}.png")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": WIDTH, "height": HEIGHT},
                device_scale_factor=2,
                is_mobile=True,
                has_touch=True,
                java_script_enabled=False,  # the page must work without it
            )
            page = context.new_page()
            problems: list[str] = []
            # Every resource the page uses loads (the browser's own favicon probe aside).
            page.on(
                "response",
                lambda r: (
                    problems.append(f"{r.status} {r.url}")
                    if r.status >= 400 and not r.url.endswith("/favicon.ico")
                    else None
                ),
            )
            page.on("requestfailed", lambda r: problems.append(f"failed {r.url}"))
            page.goto(f"{live_server}/language/{language}")
            answer = page.goto(f"{live_server}/my-trip/{worker.token}")
            assert answer is not None
            assert answer.status == 200
            assert page.locator("html").get_attribute("lang").startswith(language[:2])
            # The crew are there to call: the driver and the escort.
            for phone in ("13900001111", "13700002222"):
                assert page.locator(f".leg a.call:has-text('{phone}')").is_visible()

            seat = page.locator(".my-seat")
            assert seat.inner_text().strip() == worker.seat
            assert seat.is_visible()
            assert page.locator(".trip-time").is_visible()
            assert page.locator(".trip-place").get_by_text("云阳汽车站").is_visible()

            # Large enough to read: the seat at least 18 px, the body text at least 16 px.
            seat_size = seat.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
            assert seat_size >= 18
            body_size = page.locator(".worker-page .big").first.evaluate(
                "e => parseFloat(getComputedStyle(e).fontSize)"
            )
            assert body_size >= 16

            # No sideways scrolling on a 360 px screen, and nothing sticking out.
            assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
            assert page.evaluate(STICKING_OUT, WIDTH) == []

            # The QR boarding pass loaded and reads back as the booking code.
            qr = page.locator("img.qr")
            qr.scroll_into_view_if_needed()
            assert qr.evaluate("img => img.complete && img.naturalWidth") > 0
            box = qr.bounding_box()
            assert box is not None
            assert box["x"] >= 0
            assert box["x"] + box["width"] <= WIDTH
            picture = Image.open(io.BytesIO(qr.screenshot())).convert("L")
            assert [found.text for found in zxingcpp.read_barcodes(picture)] == [worker.code]
            code = page.locator(".booking-code")
            assert code.inner_text().replace("-", "") == worker.code
            assert code.evaluate("e => parseFloat(getComputedStyle(e).fontSize)") >= 24

            # "I can't go" opens without JavaScript (a <details> block).
            assert not page.locator("details.withdraw button").is_visible()
            page.locator("details.withdraw summary").click()
            assert page.locator("details.withdraw button").is_visible()

            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(shot), full_page=True)
            assert not problems, problems
        finally:
            browser.close()
    assert shot.stat().st_size > 0


def test_worker_finds_the_trip_with_code_and_digits_on_a_360px_phone(
    app, people, issuer_key, live_server, chromium_path
):
    scene = build_scene(app, people, issuer_key)
    worker = scene.seated[1]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": WIDTH, "height": HEIGHT}, java_script_enabled=False
            )
            page = context.new_page()
            assert page.goto(f"{live_server}/trip").status == 200
            assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
            field = page.locator("input[name=booking_code]")
            assert field.evaluate("e => parseFloat(getComputedStyle(e).fontSize)") >= 18
            page.screenshot(path=str(ARTIFACTS / "worker-lookup-360.png"), full_page=True)
            field.fill(worker.code.lower()[:5] + " " + worker.code.lower()[5:])
            page.locator("input[name=phone_last4]").fill(worker.last4)
            page.locator("form.worker-form button[type=submit]").click()
            page.wait_for_url(f"{live_server}/my-trip/*")
            assert page.locator(".my-seat").inner_text().strip() == worker.seat
            assert "?" not in page.url  # nothing typed ever goes into an address
        finally:
            browser.close()


# Each role's pages (``{request}`` and ``{trip}``: the scene's), visited on a phone.
PAGES = {
    "coordinator": (
        "/queue",
        "/requests/{request}",
        "/trips",
        "/trips/{trip}",
        "/trips/{trip}/seats",
        "/trips/plan",
        "/inbox",
        "/outbox",
        "/outbox/preview",
        "/reports",
    ),
    "employer": (
        "/requests",
        "/requests/{request}",
        "/requests/{request}/workers",
        "/requests/new",
        "/roster",
        "/roster/new",
        "/roster/import",
        "/inbox",
        "/reports",
    ),
    "admin": ("/organizations", "/users", "/admin/issuers", "/admin/system", "/reports"),
}


@pytest.mark.parametrize("role", sorted(PAGES))
def test_staff_pages_fit_a_360px_phone(app, people, issuer_key, live_server, chromium_path, role):
    """Staff on a phone scroll no page sideways, in either language: the message preview's
    links (as long as the line, unbroken) widened it to 521 px, and in English the
    dashboard's funnel bars and its trips and messages tables to 498 px."""
    scene = build_scene(app, people, issuer_key)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": WIDTH, "height": HEIGHT}, is_mobile=True, has_touch=True
            )
            page = context.new_page()
            page.goto(f"{live_server}/login")
            page.fill("#email", People.EMAILS[role])
            page.fill("#password", PASSWORD)
            page.locator("main form button[type=submit]").click()
            page.wait_for_url(lambda url: "/login" not in url)
            wide = {}
            for language in ("zh_CN", "en"):
                page.goto(f"{live_server}/language/{language}")
                for pattern in PAGES[role]:
                    path = pattern.format(request=scene.request_id, trip=scene.trip_id)
                    answer = page.goto(f"{live_server}{path}")
                    assert answer is not None
                    assert answer.status == 200, path
                    width = page.evaluate("document.documentElement.scrollWidth")
                    if width > WIDTH:
                        wide[language, path] = width
            assert not wide, wide
        finally:
            browser.close()
