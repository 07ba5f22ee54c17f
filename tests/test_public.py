"""The workers' pages (no account): finding a trip with a booking code and four digits, the
trip page from the SMS link, its QR boarding pass, and "I can't go"."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal

import pytest
import segno
import zxingcpp
from flask_babel import force_locale, format_date, format_time, gettext
from itsdangerous import TimestampSigner
from PIL import Image, ImageDraw
from sqlalchemy import func, select

from app.accounts.models import User
from app.core.clock import local_today, utcnow
from app.core.identity import mask_id_number
from app.core.models import AuditEntry
from app.core.pii import vault
from app.demand.models import EntryStatus, RequestStatus, RosterEntry, TransportRequest
from app.extensions import db
from app.health import services as health
from app.health.forms import HEALTH_REASONS
from app.health.models import HealthIssuer
from app.notify.models import Notification
from app.public.forms import NO_MATCH
from app.trips import allocation
from app.trips import services as trips
from app.trips.models import SeatAssignment, Trip
from tests import scenario
from tests.conftest import CSRF_FIELD, People, csrf_token, submit

DAY = local_today("Asia/Shanghai") + timedelta(days=2)
WEEKDAYS = ["星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日"]
WORKERS = 6
SVG = "{http://www.w3.org/2000/svg}"

# What the pages say (msgids, looked up in the default language by ``said``).
BLOCKED = (
    "Your health certificate does not clear you for this trip: your employer must send a new "
    "certificate."
)
WITHDRAWN = "You are withdrawn; your seat is given up. Your employer and the coordinators are told."
WITHDRAWN_STATE = (
    "You have withdrawn from this trip: you have no seat. If you want to travel after all, call "
    "your employer."
)
ALREADY = "You had already withdrawn from this trip. Nothing more needs to be done."
REFUSED = (
    "You can no longer withdraw online: you have already boarded, or your vehicle has left. "
    "Please call your employer or the crew of your vehicle now."
)


@dataclass
class Seated:
    entry_id: int
    code: str
    last4: str
    token: str
    seat: str


@dataclass
class Scene:
    trip_id: int
    request_id: int
    seated: list[Seated]
    waiting: list[int]  # entry ids without a seat (capacity is smaller than demand)
    blocked: list[int]  # entry ids whose health certificate failed


def build_scene(app, people: People, issuer_key: str) -> Scene:
    """Six workers of one village (one with a yellow pass) for a coach-33 whose trip policy
    carries only three: three seated with booking codes, two waiting, one blocked."""
    with app.app_context():
        coordinator = db.session.get(User, people.coordinator_id)
        request = scenario.approved_request(
            people.organization_a_id,
            people.coordinator_id,
            issuer_key,
            DAY,
            {"东村": WORKERS},
            failing=1,
        )
        vehicle = scenario.vehicle("渝F12345", "coach-33")
        driver = scenario.driver("刘师傅", "+8613900001111")
        departs = datetime.combine(DAY, clock_time(7, 30), tzinfo=trips.health.local_zone())
        leg = trips.Leg(
            "500235",
            "云阳汽车站",
            "云阳县双江街道滨江大道",
            "370100",
            "济南长途汽车总站",
            None,
            departs,
            departs + timedelta(hours=18),
            10,
        )
        assert allocation.capacity(vehicle.seat_map, leg.policy) == 3
        trip = trips.create_trip(vehicle, leg, coordinator, {request.id: WORKERS})
        trips.set_drivers(trip.id, [driver.id], coordinator)
        trip.escort_name, trip.escort_phone = "王干部", "+8613700002222"
        assert trips.allocate_seats(trip.id, coordinator).seated == 3
        db.session.commit()
        seated = [
            Seated(
                a.roster_entry_id,
                a.entry.booking_code,
                a.entry.worker.phone_last4,
                trips.trip_page_token(a.roster_entry_id),
                trip.vehicle.seat_map.seat(a.seat_label).display,
            )
            for a in trips.assignments(trip.id, with_workers=True)
        ]
        entries = db.session.scalars(
            select(RosterEntry).where(RosterEntry.request_id == request.id)
        ).all()
        return Scene(
            trip.id,
            request.id,
            seated,
            [e.id for e in entries if e.status == EntryStatus.CLEARED],
            [e.id for e in entries if e.status == EntryStatus.BLOCKED],
        )


@pytest.fixture
def scene(app, people, issuer_key) -> Scene:
    return build_scene(app, people, issuer_key)


def said(app, message) -> str:
    """A message as the page shows it, in the default language (Chinese). Templates put
    translations in as they are (Flask-Babel's new-style gettext marks them safe)."""
    with app.test_request_context():
        return gettext(str(message))


def look_up(client, code: str, last4: str, **kwargs):
    return submit(client, "/trip", {"booking_code": code, "phone_last4": last4}, **kwargs)


def without_csrf(html: str) -> str:
    return CSRF_FIELD.sub('name="csrf_token" value=""', html)


def token_of(location: str) -> str:
    found = re.fullmatch(r"(?:http://localhost)?/my-trip/([^/]+)", location)
    assert found, location
    return found.group(1)


# --- lookup ----------------------------------------------------------------------------------


def test_lookup_with_code_and_digits_leads_to_the_trip_page(app, client, scene):
    worker = scene.seated[0]
    form = client.get("/trip")
    html = form.get_data(as_text=True)
    assert form.status_code == 200
    assert 'method="post"' in html
    assert 'inputmode="numeric"' in html
    assert 'href="/"' in html  # the way back to the home page

    found = look_up(client, trips.shown_booking_code(worker.code), worker.last4)
    assert found.status_code == 302
    token = token_of(found.headers["Location"])
    with app.app_context():
        assert trips.entry_for_token(token).id == worker.entry_id
    page = client.get(found.headers["Location"])
    assert page.status_code == 200
    assert worker.seat in page.get_data(as_text=True)

    # Never from the query string: a GET only shows the form.
    query = client.get(f"/trip?booking_code={worker.code}&phone_last4={worker.last4}")
    assert query.status_code == 200
    assert "/my-trip/" not in query.get_data(as_text=True)


def test_every_miss_gets_one_answer_whatever_was_wrong(app, client, scene):
    worker, other = scene.seated[0], scene.seated[1]
    wrong_digits = f"{(int(worker.last4) + 1) % 10000:04d}"
    unknown_code = "ZZZZZZZZZZ" if worker.code != "ZZZZZZZZZZ" else "YYYYYYYYYY"
    answers = [
        look_up(client, worker.code, wrong_digits),  # a real code, wrong digits
        look_up(client, unknown_code, worker.last4),  # no such code, real digits
        look_up(client, other.code, worker.last4),  # someone else's code and my digits
    ]
    assert {a.status_code for a in answers} == {200}
    bodies = {without_csrf(a.get_data(as_text=True)) for a in answers}
    assert len(bodies) == 1
    body = bodies.pop()
    assert said(app, NO_MATCH) in body
    # Nothing typed comes back: no code, no digits.
    for text in (worker.code, unknown_code, other.code, wrong_digits, worker.last4):
        assert text not in body

    # A code of the wrong shape gets the same answer, plus a hint on the field.
    shape = look_up(client, "ABC", worker.last4)
    html = shape.get_data(as_text=True)
    assert shape.status_code == 200
    assert said(app, NO_MATCH) in html
    assert said(app, "A booking code has 10 letters and digits, for example ABCDE-FGHJK.") in html


def test_booking_codes_are_read_as_people_type_them(app, client, scene):
    worker = scene.seated[0]
    with app.app_context():  # a code with a zero and a one, to type O for 0 and I or L for 1
        db.session.get(RosterEntry, worker.entry_id).booking_code = "K0M1N2P3Q4"
        db.session.commit()
    for typed in (
        "K0M1N2P3Q4",
        "k0m1n2p3q4",
        "K0M1N-2P3Q4",
        " k0m1n 2p3q4 ",
        "K 0 M 1 N - 2 P 3 Q 4",
        "KOM1N-2P3Q4",
        "komin-2p3q4",
        "KOML N2P3Q4",
    ):
        found = look_up(client, typed, f" {worker.last4} ")
        assert found.status_code == 302, typed
        with app.app_context():
            assert trips.entry_for_token(token_of(found.headers["Location"])).id == worker.entry_id


def full_width(text: str) -> str:
    """As a Chinese keyboard types it: each ASCII letter, digit and hyphen in full width."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def test_full_width_codes_and_digits_find_the_trip_and_use_up_no_attempts(app, client, scene):
    """０００３ and ＣＭＭ６１－ＫＱ５Ｖ７ from a Chinese keyboard are the worker's digits and code:
    they lead to the trip page, as often as the worker tries, never to the 429 page."""
    worker = scene.seated[0]
    typed = full_width(trips.shown_booking_code(worker.code))
    assert typed != trips.shown_booking_code(worker.code)
    for n in range(7):  # more than the five misses one code is allowed
        found = look_up(client, typed if n % 2 else worker.code, full_width(worker.last4))
        assert found.status_code == 302, n
        with app.app_context():
            assert trips.entry_for_token(token_of(found.headers["Location"])).id == worker.entry_id
    # Wrong digits in full width are still a miss.
    wrong = f"{(int(worker.last4) + 1) % 10000:04d}"
    miss = look_up(client, typed, full_width(wrong))
    assert miss.status_code == 200
    assert said(app, NO_MATCH) in miss.get_data(as_text=True)


def test_new_booking_codes_use_the_whole_alphabet_evenly():
    """Codes are 10 letters of Crockford's 32, each equally likely: 4,000 codes are all
    different, read back as typed, and use every letter about as often (40,000 letters,
    1,250 expected each; a code maker that favoured or skipped letters lands far outside)."""
    codes = [trips.new_booking_code() for _ in range(4000)]
    assert len(set(codes)) == len(codes)
    assert all(trips.normalize_booking_code(trips.shown_booking_code(c)) == c for c in codes)
    counts = Counter("".join(codes))
    assert set(counts) == set(trips.BOOKING_ALPHABET)
    assert 1000 < min(counts.values()) <= max(counts.values()) < 1500


def test_too_many_misses_on_one_code_are_refused_from_any_address(app, client, scene):
    """Five misses on one booking code within 15 minutes, from five addresses: the sixth try
    on that code gets the 429 page, even with the right digits; other codes still work."""
    worker, other = scene.seated[0], scene.seated[1]
    wrong = f"{(int(worker.last4) + 1) % 10000:04d}"
    for n in range(5):
        typed = worker.code.lower() if n % 2 else trips.shown_booking_code(worker.code)
        miss = look_up(client, typed, wrong, environ_base={"REMOTE_ADDR": f"10.0.0.{n + 1}"})
        assert miss.status_code == 200
    refused = look_up(client, worker.code, worker.last4, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert refused.status_code == 429
    assert said(app, "Too many attempts") in refused.get_data(as_text=True)
    found = look_up(client, other.code, other.last4, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert found.status_code == 302


def test_too_many_misses_from_one_address_are_refused(app, client, scene):
    worker = scene.seated[0]
    for n in range(10):  # ten different (unknown) codes: the per-code limit never trips
        miss = look_up(client, f"{n:010d}", worker.last4)
        assert miss.status_code == 200
    refused = look_up(client, worker.code, worker.last4)
    assert refused.status_code == 429
    elsewhere = look_up(client, worker.code, worker.last4, environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert elsewhere.status_code == 302


# --- the trip page ---------------------------------------------------------------------------


def test_trip_page_shows_seat_code_health_pass_and_whom_to_call(app, client, scene):
    worker = scene.seated[0]
    page = client.get(f"/my-trip/{worker.token}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert worker.seat in html
    assert "云阳汽车站" in html
    assert "渝F12345" in html
    assert trips.shown_booking_code(worker.code) in html
    assert said(app, "Health check: cleared.") in html
    assert f'src="/my-trip/{worker.token}/pass.svg"' in html
    assert 'href="tel:+8613900001111"' in html  # the driver
    assert 'href="tel:+8613700002222"' in html  # the escort
    assert 'href="tel:0531-88886666"' in html  # the employer's contact on site
    assert said(app, "Your ID card") in html
    assert 'href="/trip"' in html  # the way back to the lookup form
    assert "<details" in html
    assert f'action="/my-trip/{worker.token}/withdraw"' in html
    assert "<script" not in html
    assert " style=" not in html


def test_the_page_never_shows_the_whole_id_or_phone_number(app, client, scene):
    worker = scene.seated[0]
    with app.app_context():
        person = db.session.get(RosterEntry, worker.entry_id).worker
        id_number = vault().decrypt(person.id_number_token)
        phone = vault().decrypt(person.phone_token)
    pages = [
        client.get(f"/my-trip/{worker.token}"),
        client.get(f"/my-trip/{worker.token}/pass.svg"),
        submit(client, f"/my-trip/{worker.token}/withdraw", form_url=f"/my-trip/{worker.token}"),
        client.get(f"/my-trip/{worker.token}"),
    ]
    for page in pages:
        text = page.get_data(as_text=True)
        assert id_number not in text
        assert phone not in text
        assert phone[3:] not in text  # the national form
    assert mask_id_number(id_number) in pages[0].get_data(as_text=True)


def test_health_results_in_plain_words(app, client, scene, people):
    with app.app_context():
        blocked = trips.trip_page_token(scene.blocked[0])
        waiting = trips.trip_page_token(scene.waiting[0])
    html = client.get(f"/my-trip/{blocked}").get_data(as_text=True)
    assert said(app, BLOCKED) in html
    assert said(app, "Health check: cleared.") not in html
    html = client.get(f"/my-trip/{waiting}").get_data(as_text=True)
    assert said(app, "Health check: cleared.") in html
    assert said(app, "You have no seat yet. You will get a text message when you do.") in html
    assert "pass.svg" not in html
    assert client.get(f"/my-trip/{waiting}/pass.svg").status_code == 404  # no code yet

    # A fever at the vehicle door.
    feverish = scene.seated[0]
    with app.app_context():
        coordinator = db.session.get(User, people.coordinator_id)
        trips.lock_manifest(scene.trip_id, coordinator)
        verdict = trips.board(scene.trip_id, feverish.code, Decimal("38.2"), coordinator)
        assert verdict.code == "fever"
        db.session.commit()
    html = client.get(f"/my-trip/{feverish.token}").get_data(as_text=True)
    assert said(app, "You did not board: fever. Follow the health staff's instructions.") in html
    assert f'action="/my-trip/{feverish.token}/withdraw"' not in html


REFUSED_AT_DOOR = "Your health pass will not be accepted when you board."
NEW_PASS = (
    "Get a new health pass before the trip and send it to your employer, %(employer)s. "
    "They are told of this too."
)


def test_a_pass_the_door_will_refuse_is_said_plainly_on_the_trip_page(app, client, scene, people):
    """The issuer of a seated worker's pass is taken off the trust list after the trip is
    locked, and the periodic check tells the employer: the worker's page no longer says
    "cleared" but that the pass will not be accepted at boarding, why, and what to do, in
    Chinese and in English; the door indeed refuses them."""
    worker, other = scene.seated[0], scene.seated[1]
    with app.app_context():
        coordinator = db.session.get(User, people.coordinator_id)
        trips.lock_manifest(scene.trip_id, coordinator)
        db.session.commit()
    html = client.get(f"/my-trip/{worker.token}").get_data(as_text=True)
    assert said(app, "Health check: cleared.") in html  # before: the door lets them on
    assert said(app, REFUSED_AT_DOOR) not in html
    with app.app_context():
        admin = db.session.get(User, people.admin_id)
        health.revoke_issuer(db.session.scalar(select(HealthIssuer)), "密钥泄露", admin)
        assert health.recheck_departing(utcnow(), timedelta(days=7))["seated_failing"] == 3
        db.session.commit()
        employer = db.session.get(TransportRequest, scene.request_id).organization.name

    for language in ("zh_CN", "en"):
        client.get(f"/language/{language}")
        page = client.get(f"/my-trip/{worker.token}")
        html = page.get_data(as_text=True)
        assert page.status_code == 200
        with app.test_request_context(), force_locale(language):
            expected = [
                gettext(REFUSED_AT_DOOR),
                gettext(str(HEALTH_REASONS["issuer_revoked"])),
                gettext(NEW_PASS, employer=employer),
            ]
            cleared = gettext("Health check: cleared.")
        assert all(text in html for text in expected), language
        assert cleared not in html
        assert worker.seat in html  # the seat is kept: a new pass may still come
    client.get("/language/zh_CN")

    with app.app_context():
        coordinator = db.session.get(User, people.coordinator_id)
        verdict = trips.board(scene.trip_id, other.code, Decimal("36.5"), coordinator)
        assert (verdict.code, verdict.reasons) == ("health_blocked", ("issuer_revoked",))
        db.session.rollback()


NO_SEAT_YET = "You have no seat yet. You will get a text message when you do."
TRIP_CANCELLED = "Your trip %(trip)s on %(date)s at %(time)s has been cancelled."
AFTER_CANCELLING = (
    "Do not go to %(place)s. Your employer and the coordinators will arrange another trip: "
    "you will get a text message with your new seat."
)


def test_a_cancelled_trip_is_said_on_the_page_until_the_worker_has_a_new_seat(
    app, client, client_as, scene
):
    """The coordinator cancels the locked trip: a worker who missed the SMS reads on their
    page that their trip (reference, day and time) is cancelled and what comes next, in
    Chinese and English, not "no seat yet"; a worker who never had a seat on it is not told
    so; once seated again, the page shows the new seat."""
    worker = scene.seated[0]
    coordinator = client_as("coordinator")
    assert submit(coordinator, f"/trips/{scene.trip_id}/lock", form_url=f"/trips/{scene.trip_id}")
    cancelled = submit(
        coordinator,
        f"/trips/{scene.trip_id}/cancel",
        {"reason": "车辆故障"},
        form_url=f"/trips/{scene.trip_id}",
    )
    assert cancelled.status_code == 302
    with app.app_context():
        trip = db.session.get(Trip, scene.trip_id)
        assert trip.status == "cancelled"
        reference, departs = trip.reference, trip.departs_at
        never_seated = trips.trip_page_token(scene.waiting[0])

    for language in ("zh_CN", "en"):
        client.get(f"/language/{language}")
        html = client.get(f"/my-trip/{worker.token}").get_data(as_text=True)
        with app.test_request_context(), force_locale(language):
            expected = [
                gettext(
                    TRIP_CANCELLED,
                    trip=reference,
                    date=format_date(departs, "full"),
                    time=format_time(departs, "short"),
                ),
                gettext(AFTER_CANCELLING, place="云阳汽车站"),
            ]
            no_seat = gettext(NO_SEAT_YET)
        assert all(text in html for text in expected), language
        assert no_seat not in html
        assert worker.seat not in html
    client.get("/language/zh_CN")
    html = client.get(f"/my-trip/{never_seated}").get_data(as_text=True)
    assert said(app, NO_SEAT_YET) in html
    assert reference not in html

    # A new trip, and a seat on it: the page shows that, and no longer the cancellation.
    with app.app_context():
        old = db.session.get(Trip, scene.trip_id)
        leg = trips.Leg(
            old.origin_region_code,
            old.origin_point,
            old.origin_address,
            old.destination_region_code,
            old.destination_point,
            None,
            old.departs_at + timedelta(hours=2),
            old.arrives_at + timedelta(hours=2),
            10,
        )
        coordinator_user = db.session.get(User, old.created_by_id)
        vehicle = scenario.vehicle("渝F67890", "coach-45")
        new = trips.create_trip(vehicle, leg, coordinator_user, {scene.request_id: WORKERS})
        trips.allocate_seats(new.id, coordinator_user)
        db.session.commit()
        assert trips.itinerary(worker.entry_id)
    html = client.get(f"/my-trip/{worker.token}").get_data(as_text=True)
    assert reference not in html
    assert "渝F67890" in html


def test_a_tampered_or_expired_link_gets_a_friendly_page(app, client, scene, monkeypatch):
    worker = scene.seated[0]
    tampered = worker.token[:-2] + ("AA" if not worker.token.endswith("AA") else "BB")
    with app.app_context():
        old = time.time() - 61 * 24 * 3600
        with monkeypatch.context() as patched:
            patched.setattr(TimestampSigner, "get_timestamp", lambda self: int(old))
            expired = trips.trip_page_token(worker.entry_id)
        with monkeypatch.context() as patched:  # 59 days old: still good
            patched.setattr(TimestampSigner, "get_timestamp", lambda self: int(old + 2 * 86400))
            recent = trips.trip_page_token(worker.entry_id)
    assert client.get(f"/my-trip/{recent}").status_code == 200
    for token in (tampered, expired, "not-a-token", worker.token + "x"):
        page = client.get(f"/my-trip/{token}")
        html = page.get_data(as_text=True)
        assert page.status_code == 404
        assert said(app, "This trip link is not valid or has expired.") in html
        assert 'href="/trip"' in html
        assert client.get(f"/my-trip/{token}/pass.svg").status_code == 404
        withdrawn = submit(client, f"/my-trip/{token}/withdraw", form_url="/trip")
        assert withdrawn.status_code == 404
    # A tiny maximum age expires even a fresh link.
    monkeypatch.setattr(trips, "TRIP_PAGE_MAX_AGE", timedelta(seconds=-1))
    assert client.get(f"/my-trip/{worker.token}").status_code == 404
    with app.app_context():
        assert db.session.get(RosterEntry, worker.entry_id).status == EntryStatus.SEATED


# --- the boarding pass -----------------------------------------------------------------------


def svg_modules(svg: bytes) -> list[list[bool]]:
    """The dark modules of one of segno's SVG QR codes, read from its path (M, m and h only:
    each ``h`` draws a run of dark modules along the row it is on)."""
    root = ET.fromstring(svg)  # noqa: S314 - our own server's answer, in a test
    assert root.tag == f"{SVG}svg"
    scale = int(re.search(rb"scale\((\d+)\)", svg).group(1))
    size = int(root.get("width")) // scale
    path = next(p for p in root.iter(f"{SVG}path") if p.get("class") == "qrline")
    grid = [[False] * size for _ in range(size)]
    x = y = 0.0
    for command, a, b in re.findall(r"([Mmh])(-?[\d.]+)(?: (-?[\d.]+))?", path.get("d")):
        if command == "M":
            x, y = float(a), float(b)
        elif command == "m":
            x, y = x + float(a), y + float(b)
        else:
            for column in range(int(x), int(x + float(a))):
                grid[int(y)][column] = True
            x += float(a)
    assert re.sub(r"[Mmh](-?[\d.]+)( -?[\d.]+)?", "", path.get("d")) == ""
    return grid


def decode(grid: list[list[bool]]) -> list[str]:
    pixels = 10
    image = Image.new("L", (len(grid) * pixels,) * 2, 255)
    draw = ImageDraw.Draw(image)
    for y, row in enumerate(grid):
        for x, dark in enumerate(row):
            if dark:
                draw.rectangle(
                    [x * pixels, y * pixels, (x + 1) * pixels - 1, (y + 1) * pixels - 1], fill=0
                )
    return [found.text for found in zxingcpp.read_barcodes(image)]


def test_the_boarding_pass_is_a_qr_code_of_the_booking_code_only(app, client, scene):
    worker = scene.seated[0]
    answer = client.get(f"/my-trip/{worker.token}/pass.svg")
    assert answer.status_code == 200
    assert answer.mimetype == "image/svg+xml"
    assert answer.headers["Cache-Control"] == "no-store"
    svg = answer.get_data()
    grid = svg_modules(svg)
    assert decode(grid) == [worker.code]
    # The very matrix segno makes for the code (the border is white).
    expected = [
        [bool(v) for v in row] for row in segno.make(worker.code, error="m", micro=False).matrix
    ]
    border = (len(grid) - len(expected)) // 2
    assert [row[border : border + len(expected)] for row in grid[border:-border]] == expected
    # Nothing about the person: only the path of the modules.
    with app.app_context():
        person = db.session.get(RosterEntry, worker.entry_id).worker
        personal = [
            person.name,
            vault().decrypt(person.id_number_token),
            vault().decrypt(person.phone_token)[3:],
            worker.code,
        ]
    text = svg.decode()
    assert not [p for p in personal if p in text]
    assert not re.search(r"<(text|title|desc|metadata)\b", text)


# --- "I can't go" ----------------------------------------------------------------------------


def withdraw(client, token: str):
    return submit(client, f"/my-trip/{token}/withdraw", form_url=f"/my-trip/{token}")


def count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def test_i_cant_go_frees_the_seat_for_a_waiting_worker(app, client, scene, people):
    worker = scene.seated[0]
    with app.app_context():
        seat_label = db.session.scalar(
            select(SeatAssignment.seat_label).where(
                SeatAssignment.roster_entry_id == worker.entry_id
            )
        )
    done = withdraw(client, worker.token)
    html = done.get_data(as_text=True)
    assert done.status_code == 200
    assert said(app, WITHDRAWN) in html
    with app.app_context():
        entry = db.session.get(RosterEntry, worker.entry_id)
        assert entry.status == EntryStatus.WITHDRAWN
        assert count(SeatAssignment, SeatAssignment.roster_entry_id == entry.id) == 0
        assert count(AuditEntry, AuditEntry.action == "entry.withdrawn") == 1
        told = db.session.scalars(
            select(Notification).where(Notification.template == "worker_withdrew")
        ).all()
        assert told
        assert all(n.context["by_worker"] for n in told)

        # The next allocation gives the freed seat to a worker who was waiting.
        coordinator = db.session.get(User, people.coordinator_id)
        assert trips.allocate_seats(scene.trip_id, coordinator).seated == 1
        db.session.commit()
        holder = db.session.scalar(
            select(SeatAssignment.roster_entry_id).where(
                SeatAssignment.trip_id == scene.trip_id, SeatAssignment.seat_label == seat_label
            )
        )
        assert holder in scene.waiting
        assert db.session.get(RosterEntry, holder).status == EntryStatus.SEATED
        assert count(SeatAssignment, SeatAssignment.trip_id == scene.trip_id) == 3

    # The trip page shows the withdrawn state: no seat, no pass, no second "I can't go".
    page = client.get(f"/my-trip/{worker.token}").get_data(as_text=True)
    assert said(app, WITHDRAWN_STATE) in page
    assert worker.seat not in page
    assert "pass.svg" not in page
    assert "/withdraw" not in page
    assert client.get(f"/my-trip/{worker.token}/pass.svg").status_code == 404


def test_saying_i_cant_go_twice_records_it_once(app, client, scene):
    worker = scene.seated[1]
    assert withdraw(client, worker.token).status_code == 200
    with app.app_context():
        before = (
            count(AuditEntry),
            count(Notification),
            db.session.get(RosterEntry, worker.entry_id).withdrawn_at,
        )
    again = submit(client, f"/my-trip/{worker.token}/withdraw", form_url="/trip")
    assert again.status_code == 200
    assert said(app, ALREADY) in again.get_data(as_text=True)
    with app.app_context():
        after = (
            count(AuditEntry),
            count(Notification),
            db.session.get(RosterEntry, worker.entry_id).withdrawn_at,
        )
    assert after == before


def test_after_boarding_i_cant_go_is_refused_and_says_whom_to_call(app, client, scene, people):
    worker = scene.seated[2]
    with app.app_context():
        coordinator = db.session.get(User, people.coordinator_id)
        trips.lock_manifest(scene.trip_id, coordinator)
        assert trips.board(scene.trip_id, worker.code, Decimal("36.5"), coordinator).code == (
            "boarded"
        )
        db.session.commit()
        audits = count(AuditEntry)
    page = client.get(f"/my-trip/{worker.token}").get_data(as_text=True)
    assert "/withdraw" not in page  # no longer offered

    token = csrf_token(client, "/trip")
    refused = client.post(f"/my-trip/{worker.token}/withdraw", data={"csrf_token": token})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 409
    assert said(app, REFUSED) in html
    assert 'href="tel:0531-88886666"' in html
    assert 'href="tel:+8613900001111"' in html
    with app.app_context():
        assert db.session.get(RosterEntry, worker.entry_id).status == EntryStatus.BOARDED
        assert count(SeatAssignment, SeatAssignment.roster_entry_id == worker.entry_id) == 1
        assert count(AuditEntry) == audits
        assert db.session.get(Trip, scene.trip_id).status == "locked"


def test_withdrawing_needs_the_form_token(app, client, scene):
    """Refused without its form token (an expired form); the page leads back to the worker's
    own trip page, not to the staff sign-in that the home link led to."""
    worker = scene.seated[0]
    refused = client.post(f"/my-trip/{worker.token}/withdraw")
    assert refused.status_code == 400
    back = re.search(r'<p class="back"><a href="([^"]*)">← ([^<]*)</a>', refused.get_data(True))
    assert back.groups() == (f"/my-trip/{worker.token}", "返回")
    lookup = client.post("/trip", data={"code": "ABCDE-FGHJK", "last4": "0000"})
    assert lookup.status_code == 400
    assert '<p class="back"><a href="/trip">' in lookup.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(RosterEntry, worker.entry_id).status == EntryStatus.SEATED


def test_a_withdrawal_leaves_a_fully_seated_request_scheduled(app, people, issuer_key, client):
    """The others all have seats: the request is scheduled before and after."""
    scene = build_scene(app, people, issuer_key)
    with app.app_context():
        request = db.session.get(RosterEntry, scene.seated[0].entry_id).request
        request_id = request.id
    with app.app_context():  # the employer withdraws those without a seat
        hr = db.session.get(scenario.User, people.employer_a_id)
        request = db.session.get(TransportRequest, request_id)
        for entry in [e for e in request.entries if e.status != EntryStatus.SEATED]:
            trips.withdraw_from_travel(entry.id, hr)
        db.session.commit()
        assert db.session.get(TransportRequest, request_id).status == RequestStatus.SCHEDULED
    token = scene.seated[0].token
    submit(client, f"/my-trip/{token}/withdraw", form_url=f"/my-trip/{token}")
    with app.app_context():
        assert db.session.get(TransportRequest, request_id).status == RequestStatus.SCHEDULED


def test_the_trip_page_says_the_day_and_the_time_to_the_minute(client, scene):
    """When to be there, as a worker reads it: the date with its weekday and the time to the
    minute (it said 星期日 中国标准时间 07:30:00: seconds, and a zone every worker shares)."""
    page = client.get(f"/my-trip/{scene.seated[0].token}").get_data(as_text=True)
    shown = re.search(r'class="big trip-time"><strong>([^<]*)</strong>', page).group(1)
    assert shown == f"{DAY.year}年{DAY.month}月{DAY.day}日{WEEKDAYS[DAY.weekday()]} 07:30"
