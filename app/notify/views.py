from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import select, update

from app.core.access import Role, roles_required
from app.core.clock import utcnow
from app.core.paging import paginate
from app.extensions import db
from app.notify import services
from app.notify.models import Notification, NotificationStatus
from app.notify.texts import sms_segments

bp = Blueprint("notify", __name__, template_folder="templates")

operators = roles_required(Role.COORDINATOR, Role.ADMIN)

# What each message looks like, for the preview page: a made-up but realistic case.
SAMPLES = {
    "request_submitted": {
        "reference": "R2027-000123",
        "employer": "济南城建工程有限公司",
        "origin": "重庆市 云阳县",
        "site": "历下区经十路工地",
        "destination": "山东省 济南市",
        "earliest": "2027-02-20",
        "latest": "2027-02-22",
        "workers": 42,
        "url": "https://fangang.example/requests/123",
    },
    "request_decided": {
        "reference": "R2027-000123",
        "decision": "rejected",
        "reason": "日期与专列不符，请改为下周",
        "url": "https://fangang.example/requests/123",
    },
    "seat_given": {
        "name": "张三",
        "date": "2月20日",
        "time": "06:30",
        "meeting_point": "云阳汽车站东门",
        "vehicle": "渝F·12345",
        "seat": "12",
        "driver_phone": "13800138000",
        "url": "https://fgzt.cn/t/Xk3d9",
    },
    "departure_reminder": {
        "hours_before": 24,
        "time": "06:30",
        "meeting_point": "云阳汽车站东门",
        "seat": "12",
        "url": "https://fgzt.cn/t/Xk3d9",
    },
    "trip_changed": {
        "name": "张三",
        "date": "2月20日",
        "time": "07:00",
        "meeting_point": "云阳汽车站东门",
        "vehicle": "渝F·12345",
        "seat": "14",
        "driver_phone": "13800138000",
        "url": "https://fgzt.cn/t/Xk3d9",
    },
    "trip_cancelled": {
        "name": "张三",
        "date": "2月20日",
        "time": "06:30",
        "meeting_point": "云阳汽车站东门",
        "vehicle": "渝F·12345",
    },
    "seat_withdrawn": {
        "name": "张三",
        "date": "2月20日",
        "time": "06:30",
        "meeting_point": "云阳汽车站东门",
        "vehicle": "渝F·12345",
        "seat": "12",
        "url": "https://fgzt.cn/t/Xk3d9",
    },
    "trip_cancelled_employer": {
        "trip": "T2027-000045",
        "reference": "R2027-000123",
        "reason": "车辆故障，另行安排",
        "url": "https://fangang.example/requests/123",
    },
    "trip_advance_notice": {
        "trip": "T2027-000045",
        "vehicle": "K4016",
        "origin": "重庆西站",
        "destination": "济南站",
        "arrival": "2027/2/21 14:30",
        "total": 476,
        "employers": [["中建八局一公司", 62], ["济南城建工程有限公司", 48]],
        "url": "https://fangang.example/trips/45",
    },
    "worker_fever": {
        "name": "张三",
        "trip": "T2027-000045",
        "reference": "R2027-000123",
        "celsius": "37.8",
        "place": "云阳汽车站东门",
        "url": "https://fangang.example/requests/123",
    },
    "worker_withdrew": {
        "name": "张三",
        "reference": "R2027-000123",
        "by_worker": True,
        "url": "https://fangang.example/requests/123",
    },
    "trip_departed": {
        "trip": "T2027-000045",
        "reference": "R2027-000123",
        "vehicle": "渝F12345",
        "workers": 22,
        "final": 22,
        "destination": "济南长途汽车总站",
        "url": "https://fangang.example/requests/123/handover/45",
    },
    "trip_arrived": {
        "trip": "T2027-000045",
        "reference": "R2027-000123",
        "vehicle": "渝F12345",
        "workers": 22,
        "final": 22,
        "destination": "济南长途汽车总站",
        "url": "https://fangang.example/requests/123/handover/45",
    },
    "health_blocked": {
        "reference": "R2027-000123",
        "workers": [
            {"name": "张三", "reasons": "expired_at_departure"},
            {"name": "李四", "reasons": "wrong_name,status_not_green"},
        ],
        "url": "https://fangang.example/requests/123?status=blocked",
    },
}
# The other versions a message has, each shown too: the number a worker is given to call is
# the driver's, else the escort's, else there is none.
VARIANTS = {
    template: [
        {**SAMPLES[template], "driver_phone": "", "escort_phone": "13700002222"},
        {**SAMPLES[template], "driver_phone": ""},
    ]
    for template in ("seat_given", "trip_changed")
}


@bp.get("/outbox")
@operators
def outbox():
    """The messages of the user's region (an admin's: all)."""
    visible = Notification.visible_to(current_user)
    failed = paginate(
        select(Notification)
        .where(
            visible, Notification.status.in_([NotificationStatus.FAILED, NotificationStatus.DEAD])
        )
        .order_by(Notification.id.desc()),
    )
    retrying, last_retried = services.retrying(visible)
    return render_template(
        "notify/outbox.html",
        counts=services.status_counts(visible),
        retrying=retrying,
        last_retried=last_retried,
        events=services.recent_events(utcnow() - timedelta(hours=24), visible),
        failed=failed,
        form=FlaskForm(),
        running=db.session.scalar(
            select(Notification.id)
            .where(
                visible,
                Notification.status.in_([NotificationStatus.PENDING, NotificationStatus.SENDING]),
                Notification.send_at <= utcnow(),
            )
            .limit(1)
        )
        is not None,
    )


@bp.post("/outbox/retry")
@operators
def retry():
    if FlaskForm().validate_on_submit():
        ids = (
            None
            if request.form.get("all")
            else [int(value) for value in request.form.getlist("id") if value.isdigit()]
        )
        count = services.retry(ids, current_user)
        db.session.commit()
        flash(_("%(count)s messages queued again.", count=count), "success")
    return redirect(url_for("notify.outbox"))


@bp.get("/outbox/preview")
@operators
def preview():
    shown = []
    samples = [
        (template, context)
        for template, sample in SAMPLES.items()
        for context in [sample, *VARIANTS.get(template, [])]
    ]
    for template, context in samples:
        for locale in current_app.config["LANGUAGES"]:
            for channel in ("email", "inapp", "sms"):
                fake = Notification(
                    template=template, locale=locale, channel=channel, context=context
                )
                try:
                    subject, text = services.render(fake)
                except KeyError:  # the message has no version for this channel
                    continue
                segments = sms_segments(text) if channel == "sms" else None
                shown.append((template, locale, channel, subject, text, segments))
    return render_template("notify/preview.html", shown=shown)


def _in_service(url: str | None) -> str | None:
    """A message's link as a path: it is opened here, on whatever address the reader came
    by (the absolute link, made with BASE_URL, is for messages read elsewhere)."""
    if not url:
        return None
    parts = urlsplit(url)
    return urlunsplit(("", "", parts.path or "/", parts.query, parts.fragment))


@bp.get("/inbox")
@login_required
def inbox():
    page = paginate(
        select(Notification)
        .where(
            Notification.user_id == current_user.id,
            Notification.channel == "inapp",
            Notification.status == NotificationStatus.SENT,
        )
        .order_by(Notification.id.desc()),
    )
    messages = [(n, services.render(n)[1], _in_service(n.context.get("url"))) for n in page.items]
    unread = [n.id for n in page.items if n.read_at is None]
    if unread:
        db.session.execute(
            update(Notification).where(Notification.id.in_(unread)).values(read_at=utcnow())
        )
        db.session.commit()
    return render_template("notify/inbox.html", page=page, messages=messages, unread=set(unread))
