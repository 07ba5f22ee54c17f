"""``flask demo seed``: demo organizations and accounts for trying the service.

Each domain adds its demo data here as it lands. Running the command again changes nothing.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from app.accounts import services as accounts
from app.accounts.models import Organization, User
from app.core.access import Role
from app.core.clock import utcnow
from app.core.identity import id_number_check_character
from app.demand import services as demand
from app.demand.models import RequestStatus, RosterEntry, TransportRequest, Worker
from app.demand.roster import WorkerData
from app.extensions import db
from app.fleet import services as fleet
from app.fleet.models import Operator, Vehicle
from app.health import services as health
from app.health.cli import create_demo_issuer, issue_demo_pass
from app.health.models import HealthIssuer
from app.health.passes import key_id, public_jwk_from_text
from app.trips import services as trips
from app.trips.models import SeatAssignment, Trip

demo_cli = AppGroup("demo", help="Demo data.")

DEMO_PASSWORD = "fangang-demo-2026"  # noqa: S105 - printed on purpose, demo only

DEMO_ORGANIZATIONS = [
    # name, unified social credit code, region code
    ("济南城建工程有限公司", "91370100MA3C12340R", "370100"),
    ("山东鲁中建设集团有限公司", "91370102MA3D567800", "370102"),
]

DEMO_USERS = [
    # email, role, name, organization index, region code
    ("admin@demo.fangang.cn", Role.ADMIN, "系统管理员", None, None),
    ("coordinator@demo.fangang.cn", Role.COORDINATOR, "王调度", None, "370100"),
    ("hr@jinan-chengjian.demo.fangang.cn", Role.EMPLOYER, "李人事", 0, None),
    ("hr@luzhong.demo.fangang.cn", Role.EMPLOYER, "张人事", 1, None),
]


@demo_cli.command("seed")
def seed_command():
    """Create the demo organizations and accounts (idempotent) and print the credentials."""
    organizations = []
    for name, credit_code, region_code in DEMO_ORGANIZATIONS:
        organization = accounts.find_organization(credit_code)
        if organization is None:
            organization = accounts.create_organization(name, credit_code, region_code)
        organizations.append(organization)
    for email, role, name, organization_index, region_code in DEMO_USERS:
        if accounts.find_user_by_email(email) is None:
            organization = None if organization_index is None else organizations[organization_index]
            accounts.create_user(email, DEMO_PASSWORD, role, name, organization, region_code)
    issuer_key = _seed_health_issuer()
    for index, organization in enumerate(organizations):
        _seed_demand(organization, index, issuer_key)
    coordinator = accounts.find_user_by_email(DEMO_USERS[1][0])
    _seed_fleet(coordinator)
    _seed_journey(organizations[0], coordinator)
    db.session.commit()

    click.echo(f"Demo accounts (password for all: {DEMO_PASSWORD}):")
    for email, role, name, organization_index, _region in DEMO_USERS:
        where = ""
        if organization_index is not None:
            where = f" — {DEMO_ORGANIZATIONS[organization_index][0]}"
        click.echo(f"  {role.value:<12} {email:<38} {name}{where}")
    _echo_journey()


# Home counties of the demo workers (Chongqing and Sichuan, as in the K4016 campaign).
DEMO_COUNTIES = [
    ("500235", "重庆市云阳县", "龙洞村"),
    ("500236", "重庆市奉节县", "石门村"),
    ("511602", "四川省广安市广安区", "花桥村"),
]
DEMO_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
DEMO_GIVEN = ["建国", "志强", "秀英", "桂兰", "海军", "明", "小红", "国平", "德华", "春梅"]


DEMO_ISSUER_KEY = "demo-health-issuer.pem"

DEMO_VEHICLES = [
    {"kind": "coach", "identifier": "渝F12345", "template": "coach-53"},
    {"kind": "coach", "identifier": "渝F23456", "template": "coach-45"},
    {"kind": "coach", "identifier": "渝F34567", "template": "coach-33"},
]
DEMO_TRAIN = {
    "kind": "train",
    "identifier": "K4016",
    "template": "train-hard-seat-118",
    "first_carriage": 3,
    "carriages": 9,
}
DEMO_DRIVERS = [
    {"name": "刘师傅", "phone": "13983001234", "licence_number": "500235197803121234"},
    {"name": "陈师傅", "phone": "13983005678", "licence_number": "500235198107225678"},
]


def _seed_fleet(coordinator: User) -> None:
    """A coach company with three coaches and two drivers; the K4016 special train."""
    if db.session.scalar(select(Operator.id).limit(1)) is not None:
        return
    operator = fleet.create_operator(
        {"name": "重庆云阳汽车运输公司", "contact_name": "周经理", "contact_phone": "023-55551234"},
        coordinator,
    )
    for vehicle in DEMO_VEHICLES:
        fleet.create_vehicle(operator, vehicle, coordinator)
    for driver in DEMO_DRIVERS:
        fleet.create_driver(operator, driver, coordinator)
    railway = fleet.create_operator({"name": "中国铁路成都局集团有限公司"}, coordinator)
    fleet.create_vehicle(railway, DEMO_TRAIN, coordinator)


DEMO_DEPARTURE = time(6, 30)


def _seed_journey(organization: Organization, coordinator: User) -> None:
    """The first employer's request approved and carried by the first coach at 06:30 on its
    first day, seats given and the manifest locked, so every role has a trip to look at and
    the workers' seat messages are written (``instance/sms.log`` in the embedded mode). The
    other employer's request stays submitted, for the coordinator to decide."""
    if db.session.scalar(select(Trip.id).limit(1)) is not None:
        return
    request = db.session.scalar(
        select(TransportRequest).where(TransportRequest.organization_id == organization.id)
    )
    # A database seeded before this journey existed may hold a request whose day has passed.
    if request.status != RequestStatus.SUBMITTED or request.earliest_departure <= demand.today():
        return
    demand.approve_request(request, coordinator)
    coach = db.session.scalar(
        select(Vehicle).where(Vehicle.identifier == DEMO_VEHICLES[0]["identifier"])
    )
    departs = datetime.combine(request.earliest_departure, DEMO_DEPARTURE, health.local_zone())
    leg = trips.Leg(
        **trips.route_of(request),
        departs_at=departs,
        arrives_at=departs + timedelta(hours=22),
        max_load_percent=50,  # the 2020 coach rule: half the seats, the last two rows empty
        isolation_rows=2,
    )
    waiting = trips.plannable_counts([request.id])[request.id]
    planned, problems = trips.apply_plan(leg, {coach.id: {request.id: waiting}}, coordinator)
    if problems:
        raise click.ClickException(f"the demo trip cannot be planned: {problems}")
    trips.allocate_trips([planned[0].id], coordinator)
    trips.lock_manifest(planned[0].id, coordinator)


def _echo_journey() -> None:
    """How to see the demo trip as one of its workers does."""
    seat = db.session.execute(
        select(Trip, RosterEntry)
        .join(SeatAssignment, SeatAssignment.trip_id == Trip.id)
        .join(RosterEntry, RosterEntry.id == SeatAssignment.roster_entry_id)
        .order_by(Trip.id, RosterEntry.id)
        .limit(1)
    ).first()
    if seat is None:
        return
    trip, entry = seat
    departs = trip.departs_at.astimezone(health.local_zone())
    click.echo(
        f"Demo trip: {trip.vehicle.identifier}, {trip.origin_point} {departs:%Y-%m-%d %H:%M}"
        f" → {trip.destination_point}, manifest locked, seat messages sent."
    )
    where = "" if current_app.config.get("SMS_GATEWAY_URL") else " (in instance/sms.log)"
    click.echo(
        f"  A worker's view: /trip with booking code {trips.shown_booking_code(entry.booking_code)}"
        f" and phone digits {entry.worker.phone_last4}, or the link in their text message{where}."
    )


def _seed_health_issuer() -> str:
    """A demo health authority on the trust list; its private key stays in instance/."""
    key_file = Path(current_app.instance_path) / DEMO_ISSUER_KEY
    if key_file.exists():
        private_pem = key_file.read_text()
        kid = key_id(public_jwk_from_text(private_pem))
        if db.session.scalar(select(HealthIssuer.id).where(HealthIssuer.kid == kid)) is None:
            health.create_issuer(
                "重庆市云阳县卫生健康委员会（演示）",
                "500235",
                private_pem,
                health.local_day_start(demand.today() - timedelta(days=30)),
                None,
                None,
            )
        return private_pem
    create_demo_issuer(
        "重庆市云阳县卫生健康委员会（演示）",
        "500235",
        key_file,
        demand.today() - timedelta(days=30),
        None,
    )
    return key_file.read_text()


def _demo_pass(issuer_key: str, data: WorkerData, n: int) -> str:
    """A realistic mix: mostly green, some expired before departure, one yellow, one
    bound to somebody else's ID number."""
    status, hours, id_number = "green", 7 * 24, data.id_number
    if n % 10 == 7:
        hours = 12  # expires before the departure
    elif n == 6:
        status = "yellow"
    elif n == 9:
        id_number = id_number[:-5] + ("00001" if not id_number.endswith("00001") else "00002")
        id_number = id_number[:17] + id_number_check_character(id_number[:17])
    issued = utcnow() - timedelta(hours=2)
    return issue_demo_pass(issuer_key, id_number, data.name, status, issued, timedelta(hours=hours))


def _seed_demand(organization: Organization, index: int, issuer_key: str) -> None:
    """Thirty workers in three village groups, with health passes, and one submitted
    transport request leaving in a day or two."""
    if db.session.scalar(select(Worker.id).where(Worker.organization_id == organization.id)):
        return
    hr = db.session.scalar(select(User).where(User.organization_id == organization.id))
    workers = []
    for n in range(30):
        code, county, village = DEMO_COUNTIES[n % 3]
        first17 = f"{code}19{75 + n % 25:02d}{1 + n % 12:02d}{1 + n % 28:02d}{index}{n:02d}"
        data = WorkerData(
            name=DEMO_SURNAMES[(n + index * 7) % 20] + DEMO_GIVEN[n % 10],
            id_number=first17 + id_number_check_character(first17),
            phone=f"+86139{index:02d}{n:06d}",
            home_region_code=code,
            home_region_name=county,
            group_tag=village,
        )
        worker = demand.create_worker(organization, data, hr)
        health.attach_pass(worker, _demo_pass(issuer_key, data, n), hr)
        workers.append(worker)
    departure = demand.today() + timedelta(days=1 + index)
    request = demand.create_request(
        organization,
        {
            "origin_region_code": "500235",
            "origin_region_name": "重庆市 云阳县",
            "pickup_point": "云阳汽车站",
            "pickup_address": "云阳县双江街道滨江大道",
            "destination_region_code": organization.region_code or "370100",
            "destination_region_name": "山东省 济南市",
            "site_name": f"{organization.name}项目部",
            "site_address": "济南市经十路",
            "site_contact_name": "赵经理",
            "site_contact_phone": "0531-88886666",
            "earliest_departure": departure,
            "latest_departure": departure + timedelta(days=2),
            "preferred_mode": "any",
        },
        hr,
    )
    demand.add_workers(request, [w for w in workers if w.home_region_code == "500235"], hr)
    demand.submit_request(request, hr)
