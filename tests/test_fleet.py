"""The coordinators' fleet through its pages: operators, vehicles with their seat maps and
blocked seats, drivers with encrypted licence numbers, and who may open any of it."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.core.clock import utcnow
from app.core.models import AuditEntry
from app.core.pii import vault
from app.extensions import db
from app.fleet.models import Driver, Operator, Vehicle
from tests.conftest import People, csrf_token, sign_in, submit

LICENCE = "37010219800101123X"
LICENCE_MASKED = "3701************3X"


def errors(response) -> list[str]:
    return re.findall(r'class="error[^"]*" role="alert">([^<]+)', response.get_data(as_text=True))


def field_errors(response, field_id: str) -> list[str]:
    """The messages shown in the form field whose input has this HTML id."""
    html = response.get_data(as_text=True)
    for block in html.split('<div class="field')[1:]:
        if f'id="{field_id}"' in block:
            return re.findall(r'class="error" role="alert">([^<]+)', block)
    raise AssertionError(f"no field {field_id} on the page")


def operator_form(**changes) -> dict:
    return {
        "name": "重庆公路运输集团",
        "contact_name": "刘经理",
        "contact_phone": "023-68881234",
        **changes,
    }


def vehicle_form(**changes) -> dict:
    return {
        "kind": "coach",
        "identifier": "鲁A12345",
        "template": "coach-45",
        "first_carriage": "1",
        "carriages": "1",
        "notes": "",
        **changes,
    }


def driver_form(**changes) -> dict:
    return {
        "name": "王师傅",
        "phone": "138 0013 8000",
        "licence_number": LICENCE.lower(),
        **changes,
    }


@pytest.fixture
def coordinator(client_as):
    client = client_as("coordinator")
    client.get("/language/en")
    return client


def add_operator(client, **changes) -> int:
    response = submit(client, "/fleet", operator_form(**changes))
    assert response.status_code == 302, errors(response)
    return int(response.headers["Location"].rsplit("/", 1)[1])


def post_vehicle(client, operator_id: int, **changes):
    return submit(
        client,
        f"/fleet/operators/{operator_id}/vehicles",
        vehicle_form(**changes),
        form_url=f"/fleet/operators/{operator_id}",
    )


def add_vehicle(client, operator_id: int, **changes) -> int:
    response = post_vehicle(client, operator_id, **changes)
    assert response.status_code == 302, errors(response)
    return int(response.headers["Location"].rsplit("/", 1)[1])


def post_driver(client, operator_id: int, **changes):
    return submit(
        client,
        f"/fleet/operators/{operator_id}/drivers",
        driver_form(**changes),
        form_url=f"/fleet/operators/{operator_id}",
    )


def block(client, vehicle_id: int, labels: list[str]):
    return submit(
        client,
        f"/fleet/vehicles/{vehicle_id}/blocked-seats",
        {"blocked_seats": labels},
        form_url=f"/fleet/vehicles/{vehicle_id}",
    )


def seat_boxes(html: str) -> list[str]:
    return re.findall(r'<input type="checkbox" name="blocked_seats" value="([^"]+)"', html)


def seat_state(html: str, label: str) -> tuple[str, bool]:
    """(state, ticked) of one seat as the grid shows it."""
    found = re.search(
        r'<label class="seat seat-(\w+)[^"]*"[^>]*>\s*'
        rf'<input type="checkbox" name="blocked_seats" value="{re.escape(label)}"( checked)?>',
        html,
    )
    assert found, f"seat {label} is not on the page"
    return found.group(1), bool(found.group(2))


# --- operators and vehicles ----------------------------------------------------------------


def test_coordinator_adds_an_operator_and_a_coach_with_45_seats(app, coordinator):
    fleet = coordinator.get("/fleet").get_data(as_text=True)
    assert 'href="/fleet"' in fleet  # the Fleet link in the header
    operator_id = add_operator(coordinator)
    page = coordinator.get(f"/fleet/operators/{operator_id}").get_data(as_text=True)
    assert "重庆公路运输集团" in page
    assert "023-68881234" in page
    assert "No vehicles yet." in page

    # Typed the way people do: lower case, a space and a dot; kept in the canonical form.
    vehicle_id = add_vehicle(coordinator, operator_id, identifier="鲁a ·12345")
    page = coordinator.get(f"/fleet/vehicles/{vehicle_id}").get_data(as_text=True)
    assert "鲁A12345" in page
    assert len(seat_boxes(page)) == 45
    assert seat_boxes(page)[0] == "1A"
    assert seat_boxes(page)[-1] == "11E"
    assert seat_state(page, "11C") == ("free", False)
    assert "Coach, 45 seats" in page
    assert f'href="/fleet/operators/{operator_id}"' in page  # back to the operator

    listed = coordinator.get(f"/fleet/operators/{operator_id}").get_data(as_text=True)
    assert ">鲁A12345</a>" in listed
    assert '<td data-label="Seats">45</td>' in listed
    with app.app_context():
        vehicle = db.session.get(Vehicle, vehicle_id)
        assert (vehicle.kind, vehicle.identifier, vehicle.seatmap_template) == (
            "coach",
            "鲁A12345",
            "coach-45",
        )
        assert vehicle.rated_seats == 45
        audit = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "vehicle.created"))
        assert audit.object_id == vehicle_id
        assert audit.details["template"] == "coach-45"


def test_train_with_six_hard_seat_carriages_from_carriage_3(app, coordinator):
    operator_id = add_operator(coordinator, name="济南局集团公司")
    vehicle_id = add_vehicle(
        coordinator,
        operator_id,
        kind="train",
        identifier="k 4016",
        template="train-hard-seat-118",
        first_carriage="3",
        carriages="6",
    )
    page = coordinator.get(f"/fleet/vehicles/{vehicle_id}").get_data(as_text=True)
    boxes = seat_boxes(page)
    assert len(boxes) == 708
    assert boxes[0] == "3-001"
    assert boxes[-1] == "8-118"
    for carriage in range(3, 9):
        assert f"Carriage {carriage:02d}" in page
    assert "Carriage 02" not in page
    assert "Carriage 09" not in page
    assert "K4016" in page
    listed = coordinator.get(f"/fleet/operators/{operator_id}").get_data(as_text=True)
    assert "03–08" in listed
    assert '<td data-label="Seats">708</td>' in listed
    with app.app_context():
        vehicle = db.session.get(Vehicle, vehicle_id)
        assert (vehicle.first_carriage, vehicle.carriages) == (3, 6)
        assert vehicle.seat_map.carriages == (3, 4, 5, 6, 7, 8)


def test_blocking_and_unblocking_seats(app, coordinator):
    operator_id = add_operator(coordinator)
    vehicle_id = add_vehicle(coordinator, operator_id)

    response = block(coordinator, vehicle_id, ["11E", "1A"])
    assert response.status_code == 302
    page = coordinator.get(f"/fleet/vehicles/{vehicle_id}").get_data(as_text=True)
    assert "Blocked seats saved: 2 blocked." in page
    assert seat_state(page, "1A") == ("blocked", True)
    assert seat_state(page, "11E") == ("blocked", True)
    assert seat_state(page, "1B") == ("free", False)
    with app.app_context():
        assert db.session.get(Vehicle, vehicle_id).blocked_seats == ["1A", "11E"]  # seat order

    # Unticking frees a seat.
    assert block(coordinator, vehicle_id, ["11E"]).status_code == 302
    page = coordinator.get(f"/fleet/vehicles/{vehicle_id}").get_data(as_text=True)
    assert seat_state(page, "1A") == ("free", False)
    assert seat_state(page, "11E") == ("blocked", True)

    # A label that is no seat of this coach (posted by hand or from an old page) is refused
    # and nothing changes.
    response = block(coordinator, vehicle_id, ["1A", "12A"])
    assert response.status_code == 200
    assert "Some of these seats do not exist on this vehicle." in errors(response)
    with app.app_context():
        assert db.session.get(Vehicle, vehicle_id).blocked_seats == ["11E"]


def test_duplicate_plate_is_refused_next_to_the_field(app, coordinator):
    operator_id = add_operator(coordinator)
    add_vehicle(coordinator, operator_id)
    response = post_vehicle(coordinator, operator_id, identifier="鲁A 12345", template="coach-53")
    assert response.status_code == 200
    assert field_errors(response, "vehicle-identifier") == [
        "This operator already has a vehicle with this number."
    ]
    with app.app_context():
        assert db.session.query(Vehicle).count() == 1


def test_a_coach_or_flight_in_service_under_one_operator_is_refused_under_another(app, coordinator):
    first_id = add_operator(coordinator)
    coach_id = add_vehicle(coordinator, first_id)
    add_vehicle(
        coordinator, first_id, kind="aircraft", identifier="CA1234", template="aircraft-180"
    )
    second_id = add_operator(coordinator, name="山东交运集团")

    # One plate is one coach, one flight number one aircraft, whoever registers it.
    response = post_vehicle(coordinator, second_id, identifier="鲁a-12345")
    assert response.status_code == 200
    assert field_errors(response, "vehicle-identifier") == [
        "鲁A12345 is already in service under 重庆公路运输集团: one vehicle cannot run for "
        "two operators. Take it out of service there first."
    ]
    response = post_vehicle(
        coordinator, second_id, kind="aircraft", identifier="CA1234", template="aircraft-180"
    )
    assert field_errors(response, "vehicle-identifier") == [
        "CA1234 is already in service under 重庆公路运输集团: one vehicle cannot run for "
        "two operators. Take it out of service there first."
    ]
    other_id = add_vehicle(coordinator, second_id, identifier="鲁A54321")
    # Nor may another of its vehicles be renumbered to that plate.
    response = submit(
        coordinator, f"/fleet/vehicles/{other_id}", vehicle_form(identifier="鲁A12345", active="y")
    )
    assert (
        "already in service under 重庆公路运输集团"
        in field_errors(response, "vehicle-identifier")[0]
    )
    with app.app_context():
        assert db.session.get(Vehicle, other_id).identifier == "鲁A54321"
        assert db.session.query(Vehicle).count() == 3

    # Sold to the second operator: out of service at the first, in service at the second...
    response = submit(coordinator, f"/fleet/vehicles/{coach_id}", vehicle_form())
    assert response.status_code == 302, errors(response)
    add_vehicle(coordinator, second_id)
    # ... and then the first cannot put its old record back into service.
    response = submit(coordinator, f"/fleet/vehicles/{coach_id}", vehicle_form(active="y"))
    assert response.status_code == 200
    assert field_errors(response, "vehicle-identifier") == [
        "鲁A12345 is already in service under 山东交运集团: one vehicle cannot run for "
        "two operators. Take it out of service there first."
    ]
    with app.app_context():
        assert not db.session.get(Vehicle, coach_id).active

    # The same refusal in Chinese.
    coordinator.get("/language/zh_CN")
    response = post_vehicle(coordinator, first_id)
    assert field_errors(response, "vehicle-identifier") == ["该运输企业已有相同编号的车辆。"]
    response = post_vehicle(
        coordinator, first_id, kind="aircraft", identifier="CA1234", template="aircraft-180"
    )
    assert field_errors(response, "vehicle-identifier") == ["该运输企业已有相同编号的车辆。"]
    third_id = add_operator(coordinator, name="云阳客运二公司")
    response = post_vehicle(coordinator, third_id)
    assert field_errors(response, "vehicle-identifier") == [
        "鲁A12345已在山东交运集团名下运营：同一车辆不能同时属于两家运输企业。请先在那里将其停用。"
    ]


def test_carriages_of_a_train_are_reserved_under_one_operator_only(app, coordinator):
    bureau_id = add_operator(coordinator, name="济南局集团公司")
    train = {"kind": "train", "identifier": "K4016", "template": "train-hard-seat-118"}
    add_vehicle(coordinator, bureau_id, **train, first_carriage="3", carriages="6")
    other_id = add_operator(coordinator, name="云阳客运二公司")

    # Carriages 08-10 share carriage 08 with 03-08.
    response = post_vehicle(coordinator, other_id, **train, first_carriage="8", carriages="3")
    assert response.status_code == 200
    assert field_errors(response, "vehicle-first_carriage") == [
        "Carriages 03–08 of K4016 are already reserved under 济南局集团公司: choose carriages "
        "that do not overlap them."
    ]
    # Other carriages of the same train (专厢 for another employer) are fine, and another train.
    reserved_id = add_vehicle(coordinator, other_id, **train, first_carriage="9", carriages="3")
    add_vehicle(coordinator, other_id, **{**train, "identifier": "K4017"}, first_carriage="3")
    # Stretching them over carriage 08 later is refused too.
    response = submit(
        coordinator,
        f"/fleet/vehicles/{reserved_id}",
        vehicle_form(**train, first_carriage="7", carriages="5", active="y"),
    )
    assert field_errors(response, "vehicle-first_carriage") == [
        "Carriages 03–08 of K4016 are already reserved under 济南局集团公司: choose carriages "
        "that do not overlap them."
    ]
    with app.app_context():
        reserved = db.session.get(Vehicle, reserved_id)
        assert (reserved.first_carriage, reserved.carriages) == (9, 3)
        assert db.session.query(Vehicle).count() == 3


@pytest.mark.parametrize(
    ("changes", "field", "example"),
    [
        ({"identifier": "鲁12345"}, "vehicle-identifier", "鲁A12345"),
        ({"identifier": "AB1234567"}, "vehicle-identifier", "鲁A12345"),
        (
            {"kind": "train", "identifier": "X123", "template": "train-hard-seat-118"},
            "vehicle-identifier",
            "K4016",
        ),
        (
            {"kind": "aircraft", "identifier": "C1", "template": "aircraft-180"},
            "vehicle-identifier",
            "CA1234",
        ),
        ({"template": "train-hard-seat-118"}, "vehicle-template", "coach seat map"),
        ({"carriages": "2"}, "vehicle-carriages", "exactly one carriage"),
        (
            {
                "kind": "train",
                "identifier": "K4016",
                "template": "train-hard-seat-118",
                "carriages": "31",
            },
            "vehicle-carriages",
            "1 to 30",
        ),
    ],
)
def test_wrong_vehicle_numbers_and_layouts_are_refused(app, coordinator, changes, field, example):
    operator_id = add_operator(coordinator)
    response = post_vehicle(coordinator, operator_id, **changes)
    assert response.status_code == 200
    shown = field_errors(response, field)
    assert len(shown) == 1, shown
    assert example in shown[0]
    with app.app_context():
        assert db.session.query(Vehicle).count() == 0


def test_editing_a_vehicle_keeps_the_blocked_seats_that_still_exist(app, coordinator):
    operator_id = add_operator(coordinator)
    vehicle_id = add_vehicle(coordinator, operator_id)
    block(coordinator, vehicle_id, ["2C", "11E"])
    response = submit(
        coordinator,
        f"/fleet/vehicles/{vehicle_id}",
        vehicle_form(identifier="鲁A54321", template="coach-33", notes="空调坏了", active="y"),
    )
    assert response.status_code == 302, errors(response)
    page = coordinator.get(f"/fleet/vehicles/{vehicle_id}").get_data(as_text=True)
    assert len(seat_boxes(page)) == 33
    assert "空调坏了" in page
    with app.app_context():
        vehicle = db.session.get(Vehicle, vehicle_id)
        assert vehicle.identifier == "鲁A54321"
        assert vehicle.blocked_seats == ["2C"]  # coach-33 has no 11E
        assert vehicle.active

    # Unticked "In service": taken out of service.
    submit(coordinator, f"/fleet/vehicles/{vehicle_id}", vehicle_form(template="coach-33"))
    page = coordinator.get(f"/fleet/operators/{operator_id}").get_data(as_text=True)
    assert "Out of service" in page


def test_seat_map_cannot_change_under_a_coming_trip(app, coordinator):
    operator_id = add_operator(coordinator)
    vehicle_id = add_vehicle(coordinator, operator_id)
    with app.app_context():
        _coming_trip(vehicle_id)
    response = submit(
        coordinator, f"/fleet/vehicles/{vehicle_id}", vehicle_form(template="coach-53", active="y")
    )
    assert response.status_code == 200
    assert "cannot change" in field_errors(response, "vehicle-template")[0]
    # Other facts may still change.
    response = submit(
        coordinator, f"/fleet/vehicles/{vehicle_id}", vehicle_form(notes="新司机", active="y")
    )
    assert response.status_code == 302


def saved(client, url: str, form: dict) -> str:
    """Post the form, which must save; the page it leads to."""
    response = submit(client, url, form)
    assert response.status_code == 302, errors(response)
    return client.get(response.location).get_data(as_text=True)


def _coming_trip(vehicle_id: int, driver_id: int | None = None, days: int = 3) -> str:
    """A trip on this vehicle (and driver) leaving in ``days``; its reference."""
    from app.trips.models import Trip

    departs = utcnow() + timedelta(days=days)
    trip = Trip(
        vehicle_id=vehicle_id,
        origin_region_code="500235",
        origin_point="云阳汽车站",
        destination_region_code="370102",
        destination_point="历下区工地",
        departs_at=departs,
        arrives_at=departs + timedelta(hours=20),
    )
    if driver_id is not None:
        trip.drivers = [db.session.get(Driver, driver_id)]
    db.session.add(trip)
    db.session.commit()
    return trip.reference


def test_taking_a_vehicle_with_coming_trips_out_of_service_names_them(app, coordinator):
    """Allowed (a coach sold on still runs its last trips for the old operator), but it was
    said nowhere: a coach that broke down would have kept its trips in silence."""
    operator_id = add_operator(coordinator)
    vehicle_id = add_vehicle(coordinator, operator_id)
    with app.app_context():
        first, second = _coming_trip(vehicle_id), _coming_trip(vehicle_id, days=5)
    # "In service" unticked.
    page = saved(coordinator, f"/fleet/vehicles/{vehicle_id}", vehicle_form())
    assert f"It still runs 2 trips not yet arrived ({first}, {second})" in page
    with app.app_context():
        assert not db.session.get(Vehicle, vehicle_id).active

    # Nothing to say of a vehicle whose trips are over, nor when it stays in service.
    with app.app_context():
        from app.trips import services as trips
        from app.trips.models import Trip

        for trip_id in db.session.scalars(select(Trip.id)):
            trips.cancel_trip(trip_id, "车辆故障", None)
        db.session.commit()
    url = f"/fleet/vehicles/{vehicle_id}"
    saved(coordinator, url, vehicle_form(active="y"))
    assert "It still runs" not in saved(coordinator, url, vehicle_form())


def test_making_a_driver_on_a_coming_trip_unavailable_names_the_trip(app, coordinator):
    operator_id = add_operator(coordinator)
    vehicle_id = add_vehicle(coordinator, operator_id)
    assert post_driver(coordinator, operator_id).status_code == 302
    with app.app_context():
        driver_id = db.session.scalar(select(Driver.id))
        reference = _coming_trip(vehicle_id, driver_id)
    # "Available" unticked while a coming trip counts on them.
    page = saved(coordinator, f"/fleet/drivers/{driver_id}/edit", driver_form())
    assert f"王师傅 is still on 1 trip not yet arrived ({reference}): give it" in page
    with app.app_context():
        assert not db.session.get(Driver, driver_id).active


def test_operators_are_searched_paginated_and_unique_by_name(app, coordinator):
    from app.fleet import services

    with app.app_context():
        for n in range(30):
            services.create_operator({"name": f"客运公司{n:02d}"}, None)
        db.session.commit()
    first = coordinator.get("/fleet").get_data(as_text=True)
    assert "客运公司00" in first
    assert "客运公司29" not in first
    assert 'rel="next"' in first
    assert "客运公司29" in coordinator.get("/fleet?page=2").get_data(as_text=True)
    found = coordinator.get("/fleet?q=司07").get_data(as_text=True)
    assert "客运公司07" in found
    assert "客运公司08" not in found

    response = submit(coordinator, "/fleet", operator_form(name="客运公司07"))
    assert response.status_code == 200
    assert field_errors(response, "operator-name") == [
        "An operator with this name is already registered."
    ]
    # Renaming onto another operator's name is refused the same way.
    with app.app_context():
        operator_id = db.session.scalar(select(Operator.id).where(Operator.name == "客运公司01"))
    response = submit(
        coordinator, f"/fleet/operators/{operator_id}", operator_form(name="客运公司02")
    )
    assert field_errors(response, "operator-name") == [
        "An operator with this name is already registered."
    ]
    response = submit(
        coordinator, f"/fleet/operators/{operator_id}", operator_form(name="客运公司一")
    )
    assert response.status_code == 302
    assert "客运公司一" in coordinator.get(f"/fleet/operators/{operator_id}").get_data(as_text=True)


# --- drivers -------------------------------------------------------------------------------


def test_driver_licence_is_stored_encrypted_and_shown_masked(app, coordinator):
    operator_id = add_operator(coordinator)
    response = post_driver(coordinator, operator_id)
    assert response.status_code == 302, errors(response)

    listed = coordinator.get(f"/fleet/operators/{operator_id}").get_data(as_text=True)
    assert "王师傅" in listed
    assert LICENCE_MASKED in listed
    assert LICENCE not in listed
    assert LICENCE.lower() not in listed
    assert "13800138000" in listed  # a work number: coordinators call it
    assert LICENCE not in coordinator.get("/fleet").get_data(as_text=True)

    with app.app_context():
        driver = db.session.scalar(select(Driver))
        assert driver.phone == "+8613800138000"
        assert LICENCE not in driver.licence_number_token
        assert vault().decrypt(driver.licence_number_token) == LICENCE
        assert driver.licence_number_hash == vault().lookup_hash(LICENCE)
        driver_id = driver.id
        details = [entry.details for entry in db.session.scalars(select(AuditEntry))]
        assert LICENCE not in str(details)

    # Whole only in the edit form, for correcting it.
    edit = coordinator.get(f"/fleet/drivers/{driver_id}/edit").get_data(as_text=True)
    assert f'value="{LICENCE}"' in edit
    assert f'href="/fleet/operators/{operator_id}#drivers"' in edit
    response = submit(
        coordinator,
        f"/fleet/drivers/{driver_id}/edit",
        driver_form(name="王建国", licence_number="370102198001011230"),
    )
    assert response.status_code == 302, errors(response)
    listed = coordinator.get(f"/fleet/operators/{operator_id}").get_data(as_text=True)
    assert "王建国" in listed
    assert "3701************30" in listed
    assert "Not available" in listed  # "Available" was unticked
    with app.app_context():
        driver = db.session.get(Driver, driver_id)
        assert vault().decrypt(driver.licence_number_token) == "370102198001011230"
        assert not driver.active


def test_wrong_driver_details_are_refused_with_messages(app, coordinator):
    operator_id = add_operator(coordinator)
    response = post_driver(coordinator, operator_id, phone="0531-88886666", licence_number="AB-12")
    assert response.status_code == 200
    assert field_errors(response, "driver-phone") == [
        "This looks like a landline; a mobile number is needed for text messages."
    ]
    assert "12 to 18 letters and digits" in field_errors(response, "driver-licence_number")[0]
    response = post_driver(coordinator, operator_id, phone="1380013800")
    assert field_errors(response, "driver-phone") == ["A mobile number has 11 digits."]

    # One licence, one driver, whichever operator employs them.
    assert post_driver(coordinator, operator_id).status_code == 302
    other_id = add_operator(coordinator, name="山东交运集团")
    response = post_driver(coordinator, other_id, name="王二", licence_number=f" {LICENCE} ")
    assert field_errors(response, "driver-licence_number") == [
        "A driver with this licence number is already registered."
    ]
    with app.app_context():
        assert db.session.query(Driver).count() == 1


# --- access --------------------------------------------------------------------------------


def test_only_coordinators_and_admins_open_the_fleet(app, client, client_as, coordinator):
    operator_id = add_operator(coordinator)
    vehicle_id = add_vehicle(coordinator, operator_id)
    assert post_driver(coordinator, operator_id).status_code == 302
    with app.app_context():
        driver_id = db.session.scalar(select(Driver.id))
    pages = [
        "/fleet",
        f"/fleet/operators/{operator_id}",
        f"/fleet/vehicles/{vehicle_id}",
        f"/fleet/drivers/{driver_id}/edit",
    ]

    employer = client_as("employer")
    assert 'href="/fleet"' not in employer.get("/").get_data(as_text=True)
    for url in pages:
        assert employer.get(url).status_code == 403
    token = csrf_token(employer, "/account")
    posted = employer.post(
        f"/fleet/vehicles/{vehicle_id}/blocked-seats",
        data={"csrf_token": token, "blocked_seats": ["1A"]},
    )
    assert posted.status_code == 403
    assert employer.post("/fleet", data={"csrf_token": token, "name": "x"}).status_code == 403

    for url in pages:
        response = client.get(url)
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]

    admin = client_as("admin")
    for url in pages:
        assert admin.get(url).status_code == 200
    assert block(admin, vehicle_id, ["1A"]).status_code == 302
    assert coordinator.get("/fleet/vehicles/999").status_code == 404
    with app.app_context():
        assert db.session.get(Vehicle, vehicle_id).blocked_seats == ["1A"]


def test_seat_grid_shows_taken_seats_with_group_colours_and_names(app):
    """The macro as the trips pages use it: no checkboxes, taken seats coloured by group."""
    from flask import render_template_string

    from app.trips.seatmaps import build_vehicle

    seat_map = build_vehicle("aircraft-180")
    seats = {
        "1A": {"state": "taken", "group": 2, "text": "张三"},
        "1B": {"state": "taken", "group": 10},
        "30F": {"state": "isolation"},
    }
    with app.test_request_context():
        html = render_template_string(
            '{% from "fleet/_seatmap.html" import seat_grid %}{{ seat_grid(m, s) }}',
            m=seat_map,
            s=seats,
        )
    assert "<input" not in html
    assert html.count('class="seat seat-') == 180
    assert 'class="seatmap"' in html
    assert "seat-rows seat-cols-7" in html  # ABC_DEF: the aisle is column 4
    assert re.search(r'class="seat seat-taken seat-col-1 seat-group-2" title="1A">.*?张三', html)
    assert 'class="seat seat-taken seat-col-2 seat-group-2" title="1B"' in html  # 10 % 8
    assert 'class="seat seat-free seat-col-5" title="1D"' in html
    assert 'class="seat seat-isolation seat-col-7" title="30F"' in html
    assert "<h3>" not in html  # one cabin: no carriage heading


@pytest.mark.postgres
def test_fleet_on_postgresql_and_concurrent_duplicates(pg_app, pg_people, monkeypatch):
    from app.core.errors import DomainError
    from app.fleet import services

    client = pg_app.test_client()
    assert sign_in(client, People.EMAILS["coordinator"]).status_code == 302
    client.get("/language/en")
    operator_id = add_operator(client)
    train = {
        "kind": "train",
        "identifier": "K4016",
        "template": "train-hard-seat-118",
        "first_carriage": "3",
        "carriages": "6",
    }
    vehicle_id = add_vehicle(client, operator_id, **train)
    assert block(client, vehicle_id, ["8-118", "3-001"]).status_code == 302
    response = post_vehicle(client, operator_id, **train)
    assert field_errors(response, "vehicle-identifier") == [
        "This operator already has a vehicle with this number."
    ]
    assert post_driver(client, operator_id).status_code == 302

    # Two coordinators saving the same thing at once: both pass the check, the database
    # refuses the second, and the refusal is the same as the check's.
    monkeypatch.setattr(services, "_check_operator_name", lambda *args: None)
    monkeypatch.setattr(services, "_check_identifier", lambda *args: None)
    monkeypatch.setattr(services, "_check_in_service_elsewhere", lambda *args: None)
    monkeypatch.setattr(services, "_check_licence", lambda *args: None)
    with pg_app.app_context():
        operator = db.session.get(Operator, operator_id)
        attempts = {
            "name.taken": lambda: services.create_operator(operator_form(), None),
            "identifier.taken": lambda: services.create_vehicle(operator, train, None),
            "licence_number.taken": lambda: services.create_driver(
                operator, {**driver_form(), "name": "李师傅"}, None
            ),
        }
        for code, attempt in attempts.items():
            with pytest.raises(DomainError) as refused:
                attempt()
            assert refused.value.code == code
            db.session.rollback()
        vehicle = db.session.get(Vehicle, vehicle_id)
        assert vehicle.blocked_seats == ["3-001", "8-118"]
        assert db.session.query(Driver).count() == 1


@pytest.mark.postgres
def test_the_database_keeps_one_plate_in_service_on_postgresql(pg_app, monkeypatch):
    from sqlalchemy.exc import IntegrityError

    from app.core.errors import DomainError
    from app.fleet import services

    coach = {"kind": "coach", "identifier": "渝F12345", "template": "coach-53"}
    with pg_app.app_context():
        first = services.create_operator({"name": "重庆云阳汽车运输公司"}, None)
        second = services.create_operator({"name": "云阳客运二公司"}, None)
        services.create_vehicle(first, coach, None)
        db.session.commit()

        def register(template="coach-53", **changes):
            vehicle = Vehicle(
                operator_id=second.id, seatmap_template=template, blocked_seats=[], **changes
            )
            db.session.add(vehicle)
            db.session.flush()

        # Behind the pages' check, the database itself refuses the plate in service twice...
        with pytest.raises(IntegrityError, match="uq_vehicles_in_service_identifier"):
            register(kind="coach", identifier="渝F12345")
        db.session.rollback()
        # ... but keeps a retired record, and the same train number on other carriages.
        register(kind="coach", identifier="渝F12345", active=False)
        register("train-hard-seat-118", kind="train", identifier="K4016")
        second_train = Vehicle(
            operator_id=first.id,
            kind="train",
            identifier="K4016",
            seatmap_template="train-hard-seat-118",
            first_carriage=3,
            blocked_seats=[],
        )
        db.session.add(second_train)
        db.session.flush()
        db.session.rollback()

        # Two coordinators registering the plate at once: the second passes the check before
        # the first commits, the database refuses it, and the refusal names the operator.
        check = services._check_in_service_elsewhere
        calls = []

        def late_check(*args):
            calls.append(args)
            if len(calls) > 1:
                check(*args)

        monkeypatch.setattr(services, "_check_in_service_elsewhere", late_check)
        with pytest.raises(DomainError) as refused:
            services.create_vehicle(second, coach, None)
        assert refused.value.code == "identifier.in_service_elsewhere"
        assert refused.value.details["operator"] == "重庆云阳汽车运输公司"
        db.session.rollback()
        assert db.session.query(Vehicle).count() == 1
