"""Building trip scenarios through the real services: approved requests of health-cleared
workers, and vehicles. Call inside an app context; the caller commits."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import select

from app.accounts.models import Organization, User
from app.core.clock import utcnow
from app.core.identity import id_number_check_character
from app.demand import services as demand
from app.demand.models import TransportRequest
from app.demand.roster import WorkerData
from app.extensions import db
from app.fleet.models import Driver, Operator, Vehicle
from app.health import services as health
from app.health.cli import create_demo_issuer, issue_demo_pass
from app.trips.services import Leg

_serial = iter(range(1, 10**6))


def trusted_issuer(tmp_path, today: date) -> str:
    """A health authority on the trust list; returns its private key."""
    create_demo_issuer(
        "重庆市云阳县卫生健康委员会",
        "500235",
        tmp_path / "issuer.pem",
        today - timedelta(days=7),
        None,
    )
    return (tmp_path / "issuer.pem").read_text()


def approved_request(
    organization_id: int,
    coordinator_id: int,
    issuer_key: str,
    departure: date,
    groups: dict[str, int],
    failing: int = 0,
) -> TransportRequest:
    """A request of ``sum(groups)`` workers (group tag -> size) from Yunyang to the employer's
    site, submitted and approved; the first ``failing`` workers carry a yellow pass."""
    organization = db.session.get(Organization, organization_id)
    hr = db.session.scalar(select(User).where(User.organization_id == organization_id))
    coordinator = db.session.get(User, coordinator_id)
    workers = []
    for tag, size in groups.items():
        for _ in range(size):
            n = next(_serial)
            first17 = f"500235{1970 + n % 30}{1 + n % 12:02d}{1 + n % 28:02d}{n % 1000:03d}"
            data = WorkerData(
                name=f"工人{n}",
                id_number=first17 + id_number_check_character(first17),
                phone=f"+86138{n:08d}",
                home_region_code="500235",
                home_region_name="重庆市 云阳县",
                group_tag=tag,
            )
            worker = demand.create_worker(organization, data, hr)
            status = "yellow" if len(workers) < failing else "green"
            issued = utcnow() - timedelta(hours=1)
            token = issue_demo_pass(
                issuer_key, data.id_number, data.name, status, issued, timedelta(days=7)
            )
            health.attach_pass(worker, token, hr)
            workers.append(worker)
    request = demand.create_request(
        organization,
        {
            "origin_region_code": "500235",
            "origin_region_name": "重庆市 云阳县",
            "pickup_point": "云阳汽车站",
            "pickup_address": "云阳县双江街道滨江大道",
            "destination_region_code": "370100",
            "destination_region_name": "山东省 济南市",
            "site_name": f"{organization.name}项目部",
            "site_address": "济南市经十路",
            "site_contact_name": "赵经理",
            "site_contact_phone": "0531-88886666",
            "earliest_departure": departure,
            "latest_departure": departure + timedelta(days=1),
            "preferred_mode": "any",
        },
        hr,
    )
    demand.add_workers(request, workers, hr)
    demand.submit_request(request, hr)
    demand.approve_request(request, coordinator, "")
    return request


def vehicle(
    identifier: str = "渝F12345",
    template: str = "coach-45",
    carriages: int = 1,
    first_carriage: int = 1,
    kind: str = "coach",
    operator: Operator | None = None,
) -> Vehicle:
    """A vehicle of ``operator`` (by default 云阳客运公司, made when missing)."""
    operator = operator or db.session.scalar(
        select(Operator).where(Operator.name == "云阳客运公司")
    )
    if operator is None:
        operator = Operator(name="云阳客运公司", contact_phone="02355551234")
        db.session.add(operator)
    created = Vehicle(
        operator=operator,
        kind=kind,
        identifier=identifier,
        seatmap_template=template,
        carriages=carriages,
        first_carriage=first_carriage,
        blocked_seats=[],
    )
    db.session.add(created)
    db.session.flush()
    return created


def driver(name: str = "刘师傅", phone: str = "+8613900001111") -> Driver:
    operator = db.session.scalar(select(Operator).where(Operator.name == "云阳客运公司"))
    n = next(_serial)
    created = Driver(
        operator=operator,
        name=name,
        phone=phone,
        licence_number_token=f"token-{n}",
        licence_number_hash=f"hash-{n}",
    )
    db.session.add(created)
    db.session.flush()
    return created


def yunyang_to_jinan(day: date, max_load_percent: int = 100) -> Leg:
    """A coach leg from 云阳汽车站 at 06:00 on ``day`` to 济南长途汽车总站, 18 hours."""
    departs = datetime.combine(day, datetime.min.time(), health.local_zone()) + timedelta(hours=6)
    return Leg(
        "500235",
        "云阳汽车站",
        None,
        "370100",
        "济南长途汽车总站",
        None,
        departs,
        departs + timedelta(hours=18),
        max_load_percent=max_load_percent,
    )
