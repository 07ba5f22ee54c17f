"""Every page each role can reach from the home page, on the demo data: none fails, each has a
title and a way back, and a list asked for a page that cannot exist answers "not found"."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient

from app.demo import DEMO_PASSWORD, DEMO_USERS
from tests.conftest import sign_in, submit

LINK = re.compile(r'href="(/[^"#]*)"')
TITLE = re.compile(r"<title>\s*([^<]*?)\s*</title>")
# Links that change something or leave the HTML pages: followed, they would sign out or
# start downloads, which say nothing of the pages.
SKIP = re.compile(r"^/(logout|static/)|/export|\.(csv|xlsx|pdf|svg)\b|format=(csv|xlsx)")
NOT_A_PAGE = ["0", "-1", "abc", "100001", "99999999999999999999999"]
# The lists, by the argument that pages them.
LISTS = {
    "page": re.compile(
        r"^/(roster|requests|queue|trips|inbox|outbox|organizations|users|fleet)$"
        r"|^/requests/\d+(/workers)?$|^/fleet/operators/\d+$"
    ),
    "drivers_page": re.compile(r"^/fleet/operators/\d+$"),
}


def crawl(client: FlaskClient, skip: re.Pattern | None = None) -> dict[str, str]:
    """The HTML of every page reachable by links from the home page, by path and query
    (but those ``skip`` matches)."""
    pages: dict[str, str] = {}
    waiting = ["/"]
    while waiting:
        url = waiting.pop()
        if url in pages or SKIP.search(url) or (skip and skip.search(url)):
            continue
        response = client.get(url, follow_redirects=True)
        assert response.status_code < 500, f"{url} answered {response.status_code}"
        html = response.get_data(as_text=True)
        pages[url] = html if response.mimetype == "text/html" else ""
        waiting.extend(link.replace("&amp;", "&") for link in LINK.findall(pages[url]))
    return pages


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_every_page_answers_with_a_title_and_a_way_back(request, database):
    app = request.getfixturevalue("app" if database == "sqlite" else "pg_app")
    assert app.test_cli_runner().invoke(args=["demo", "seed"]).exit_code == 0
    for email, role, *_ in DEMO_USERS:
        client = app.test_client()
        assert sign_in(client, email, DEMO_PASSWORD).status_code == 302
        pages = crawl(client)
        assert len(pages) > 20, f"{role}: only {sorted(pages)}"
        for url, html in pages.items():
            if not html:
                continue
            title = TITLE.search(html)
            assert title, f"{role}: {url} has no title"
            assert title.group(1), f"{role}: {url} has an empty title"
            assert 'href="/"' in html, f"{role}: {url} has no way back to the home page"
        # A page number that cannot be one is "not found" on a list and ignored elsewhere,
        # never a failure (a 23-digit number made an OFFSET that neither SQLite nor
        # PostgreSQL can hold: a 500 on every list).
        for path in {urlsplit(url).path for url in pages}:
            for arg, lists in LISTS.items():
                for number in NOT_A_PAGE if lists.match(path) else NOT_A_PAGE[-1:]:
                    answer = client.get(f"{path}?{arg}={number}")
                    expected = (404,) if lists.match(path) else (200, 302, 404)
                    assert answer.status_code in expected, (
                        f"{role}: {path}?{arg}={number} answered {answer.status_code}"
                    )


# English punctuation in Chinese text ("项目部, 济南市", "出发地: 云阳县", "共 7."): a comma or
# colon typed in a template or an f-string between translated parts.
HAN = "\u3400-\u9fff"
ENGLISH_PUNCTUATION = re.compile(rf"[{HAN}][,:;.!?]|[,:;!?] ?[{HAN}]")
HIDDEN = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.S)
# The message preview shows each message in English too, each in a section with its lang.
IN_ENGLISH = re.compile(r'<section[^>]*lang="en".*?</section>', re.S)


def english_punctuation(html: str) -> list[str]:
    text = unescape(HIDDEN.sub("\n", IN_ENGLISH.sub("", html)))
    return [line.strip() for line in text.splitlines() if ENGLISH_PUNCTUATION.search(line)]


def test_chinese_pages_and_messages_use_chinese_punctuation(app):
    """Every page each demo role reaches in Chinese, the messages' Chinese versions (the
    outbox preview) and a worker's trip page: no English comma, colon or full stop beside
    Chinese text."""
    output = app.test_cli_runner().invoke(args=["demo", "seed"]).output
    found: dict[str, list[str]] = {}
    for email, _role, *_ in DEMO_USERS:
        client = app.test_client()
        assert sign_in(client, email, DEMO_PASSWORD).status_code == 302
        for url, html in crawl(client, skip=re.compile(r"^/language/")).items():
            if bad := english_punctuation(html):
                found[url] = bad
    code = re.search(r"booking code (\S+) and phone digits (\d{4})", output)
    worker = submit(
        app.test_client(),
        "/trip",
        {"booking_code": code.group(1), "phone_last4": code.group(2)},
        follow_redirects=True,
    )
    assert "渝F12345" in worker.get_data(as_text=True)
    if bad := english_punctuation(worker.get_data(as_text=True)):
        found["the worker's page"] = bad
    assert not found
