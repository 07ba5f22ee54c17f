from __future__ import annotations

import contextlib
import re
from datetime import date

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import contains_eager
from sqlalchemy.orm.exc import StaleDataError

from app.core.access import Role, get_visible_or_404, roles_required, select_visible
from app.core.clock import utcnow
from app.core.errors import DomainError
from app.core.identity import InvalidIdentifier, normalize_mobile, validate_id_number
from app.core.paging import paginate
from app.core.pii import vault
from app.demand import exports, services
from app.demand.forms import (
    ENTRY_STATUS_NAMES,
    MODE_NAMES,
    REQUEST_STATUS_NAMES,
    DecisionForm,
    RosterImportForm,
    TransportRequestForm,
    WorkerForm,
    message_for,
    problem_text,
)
from app.demand.models import (
    EntryStatus,
    ImportStatus,
    RequestStatus,
    RosterEntry,
    RosterImport,
    TransportRequest,
    Worker,
)
from app.extensions import db
from app.health import services as health
from app.health.views import health_reasons
from app.trips import services as trips

bp = Blueprint("demand", __name__, template_folder="templates")

employer_only = roles_required(Role.EMPLOYER)


@bp.app_context_processor
def demand_names() -> dict:
    return {
        "request_status_names": REQUEST_STATUS_NAMES,
        "entry_status_names": ENTRY_STATUS_NAMES,
        "mode_names": MODE_NAMES,
    }


def _refuse(error: DomainError) -> None:
    db.session.rollback()
    flash(message_for(error.code, **error.details), "error")


# --- roster --------------------------------------------------------------------------------


def _roster_search(query, text: str):
    """Name contains; ID and mobile numbers match exactly (through their hashes)."""
    pii = vault()
    conditions = [Worker.name.contains(text, autoescape=True), Worker.group_tag == text]
    with contextlib.suppress(InvalidIdentifier):
        conditions.append(
            Worker.id_number_hash == pii.lookup_hash(validate_id_number(text, services.today()))
        )
    with contextlib.suppress(InvalidIdentifier):
        conditions.append(Worker.phone_hash == pii.lookup_hash(normalize_mobile(text)))
    return query.where(or_(*conditions))


NUMBER_RUN = re.compile(r"\d{7,}")


def _search_text() -> tuple[str, str | None]:
    """The search typed, and what of it may go into page links. Searches are posted, and an
    ID or phone number never goes into a URL (URLs end up in logs and browser history)."""
    if request.method == "POST":
        text = request.form.get("q", "") if FlaskForm().validate_on_submit() else ""
    else:
        text = request.args.get("q", "")
    text = text.strip()
    return text, None if NUMBER_RUN.search(text.replace(" ", "")) else text or None


@bp.route("/roster", methods=["GET", "POST"])
@employer_only
def roster():
    search, linkable = _search_text()
    query = select_visible(Worker)
    if search:
        query = _roster_search(query, search)
    page = paginate(query.order_by(Worker.name, Worker.id))
    return render_template(
        "demand/roster.html",
        page=page,
        search=search,
        linkable=linkable,
        masked=exports.masked_worker,
    )


@bp.route("/roster/new", methods=["GET", "POST"])
@employer_only
def new_worker():
    return _worker_page(None)


@bp.route("/roster/<int:worker_id>/edit", methods=["GET", "POST"])
@employer_only
def edit_worker(worker_id: int):
    return _worker_page(get_visible_or_404(Worker, worker_id))


def _worker_page(worker: Worker | None):
    """Add a worker (``worker`` None) or change one, checked like an imported row."""
    shown = vars(services.worker_data(worker)) if worker and request.method == "GET" else None
    form = WorkerForm(data=shown)
    if form.validate_on_submit() and form.check_worker(services.today(), services.age_rule()):
        image = form.health_pass_image.data
        try:
            # The pass is read first: an unreadable one saves nothing, and the form keeps
            # everything typed.
            given = health.pass_from_input(form.health_pass.data, image.read() if image else None)
            if worker is None:
                saved = services.create_worker(current_user.organization, form.worker, current_user)
                done = _("%(name)s added to the roster.", name=saved.name)
            else:
                saved = services.update_worker(worker, form.worker, current_user)
                done = _("Changes to %(name)s saved.", name=saved.name)
            refused: tuple[str, ...] = ()
            if given:
                certificate = health.attach_pass(saved, given[0], current_user, given[1])
                # Said now, not first when the worker is put on a request: a pass for someone
                # else, a yellow one, one from an issuer not on the trust list.
                refused = health.Checker().verdict(saved, certificate, utcnow()).reasons
        except DomainError as error:
            db.session.rollback()
            getattr(form, error.field or "id_number").errors.append(message_for(error.code))
        else:
            db.session.commit()
            flash(done, "success")
            if refused:
                reasons = " ".join(health_reasons(",".join(refused)))
                flash(
                    _("The pass is kept, but it does not clear them: %(why)s", why=reasons), "error"
                )
            return redirect(url_for("demand.roster"))
    certificate = health.current_certificates([worker.id]).get(worker.id) if worker else None
    return render_template(
        "demand/worker_form.html", form=form, worker=worker, certificate=certificate
    )


@bp.post("/roster/<int:worker_id>/delete")
@employer_only
def delete_worker(worker_id: int):
    worker = get_visible_or_404(Worker, worker_id)
    if FlaskForm().validate_on_submit():
        name = worker.name
        try:
            services.delete_worker(worker, current_user)
        except DomainError as error:
            _refuse(error)
        else:
            db.session.commit()
            flash(_("%(name)s removed from the roster.", name=name), "success")
    return redirect(url_for("demand.roster"))


@bp.get("/roster/export.<fmt>")
@employer_only
def export_roster(fmt: str):
    workers = db.session.scalars(select_visible(Worker).order_by(Worker.name, Worker.id))
    return exports.roster_file(workers, fmt, f"roster-{services.today():%Y%m%d}")


@bp.get("/roster/template.<fmt>")
@employer_only
def roster_template(fmt: str):
    return exports.roster_file([], fmt, "roster-template")


# --- imports -------------------------------------------------------------------------------


def _start_import(form: RosterImportForm, transport_request: TransportRequest | None):
    upload = form.file.data
    try:
        roster_import = services.create_roster_import(
            current_user.organization,
            upload.filename or "roster",
            upload.read(),
            current_user,
            transport_request,
        )
    except DomainError as error:
        db.session.rollback()
        form.file.errors = [*form.file.errors, message_for(error.code)]
        return None
    db.session.commit()  # the import runs after this: in-process, or on a Celery worker
    return redirect(url_for("demand.roster_import", import_id=roster_import.id))


@bp.route("/roster/import", methods=["GET", "POST"])
@employer_only
def import_roster():
    form = RosterImportForm()
    if form.validate_on_submit() and (started := _start_import(form, None)):
        return started
    return render_template("demand/import_form.html", form=form, transport_request=None)


@bp.get("/roster/imports/<int:import_id>")
@employer_only
def roster_import(import_id: int):
    roster_import = get_visible_or_404(RosterImport, import_id)
    problems = [{**p, "text": problem_text(p)} for p in roster_import.errors[:500]]
    running = roster_import.status in (ImportStatus.QUEUED, ImportStatus.VALIDATING)
    joined = None
    if roster_import.status == ImportStatus.DONE and roster_import.request_id is not None:
        # Every worker of the file is on the request now (all or nothing): said with the
        # request's own count, as the employer checks it against their list.
        counts = services.status_counts(roster_import.request_id)
        joined = {
            "count": roster_import.added + roster_import.updated,
            "ref": db.session.get(TransportRequest, roster_import.request_id).reference,
            "total": sum(counts.values()) - counts[EntryStatus.WITHDRAWN.value],
        }
    return render_template(
        "demand/import_result.html",
        roster_import=roster_import,
        problems=problems,
        running=running,
        joined=joined,
        problem=message_for(roster_import.problem) if roster_import.problem else None,
    )


@bp.get("/roster/imports/<int:import_id>/errors.<fmt>")
@employer_only
def roster_import_errors(import_id: int, fmt: str):
    roster_import = get_visible_or_404(RosterImport, import_id)
    return exports.problems_file(roster_import, fmt, problem_text)


# --- transport requests --------------------------------------------------------------------


@bp.get("/requests")
@roles_required(Role.EMPLOYER, Role.ADMIN)
def requests():
    query = select_visible(TransportRequest)
    status = request.args.get("status", "")
    if status in RequestStatus.__members__.values():
        query = query.where(TransportRequest.status == status)
    query, date_problem = _date_filters(query)
    page = paginate(query.order_by(TransportRequest.id.desc()))
    return render_template(
        "demand/requests.html",
        page=page,
        status=status,
        date_problem=date_problem,
        **_date_args(),
    )


def _date_args() -> dict:
    return {"date_from": request.args.get("from", ""), "date_to": request.args.get("to", "")}


def _date_filters(query) -> tuple[Select, str | None]:
    """Requests whose departure window overlaps the dates asked for. A date that cannot be
    read, or a range that ends before it starts, is not applied but said (the list would
    otherwise look filtered, or empty, for no reason the user can see)."""
    days: dict[str, date] = {}
    for arg in ("from", "to"):
        text = request.args.get(arg, "").strip()
        if not text:
            continue
        try:
            days[arg] = date.fromisoformat(text)
        except ValueError:
            return query, _("“%(value)s” is not a date: write it as 2027-02-15.", value=text)
    if "from" in days and "to" in days and days["from"] > days["to"]:
        return query, _(
            "The first date (%(first)s) is after the last (%(last)s): swap them.",
            first=days["from"].isoformat(),
            last=days["to"].isoformat(),
        )
    if "from" in days:
        query = query.where(TransportRequest.latest_departure >= days["from"])
    if "to" in days:
        query = query.where(TransportRequest.earliest_departure <= days["to"])
    return query, None


@bp.route("/requests/new", methods=["GET", "POST"])
@employer_only
def new_request():
    form = TransportRequestForm()
    if form.validate_on_submit():
        try:
            created = services.create_request(
                current_user.organization, form.fields_dict(), current_user
            )
        except DomainError as error:
            db.session.rollback()
            getattr(form, error.field).errors.append(message_for(error.code))
        else:
            db.session.commit()
            flash(_("Draft %(ref)s saved. Now add the workers.", ref=created.reference), "success")
            return redirect(url_for("demand.request_workers", request_id=created.id))
    return render_template("demand/request_form.html", form=form, transport_request=None)


@bp.route("/requests/<int:request_id>/edit", methods=["GET", "POST"])
@employer_only
def edit_request(request_id: int):
    transport_request = get_visible_or_404(TransportRequest, request_id)
    if transport_request.status != RequestStatus.DRAFT:
        flash(message_for("request.frozen"), "error")
        return redirect(url_for("demand.request_detail", request_id=request_id))
    form = TransportRequestForm(obj=transport_request)
    if form.validate_on_submit():
        try:
            services.update_request(transport_request, form.fields_dict(), current_user)
        except DomainError as error:
            db.session.rollback()
            target = getattr(form, error.field) if error.field else None
            if target is None:
                flash(message_for(error.code), "error")
                return redirect(url_for("demand.request_detail", request_id=request_id))
            target.errors.append(message_for(error.code))
        else:
            db.session.commit()
            flash(_("Changes saved."), "success")
            return redirect(url_for("demand.request_detail", request_id=request_id))
    return render_template(
        "demand/request_form.html", form=form, transport_request=transport_request
    )


@bp.get("/requests/<int:request_id>")
@roles_required(Role.EMPLOYER, Role.COORDINATOR, Role.ADMIN)
def request_detail(request_id: int):
    transport_request = get_visible_or_404(TransportRequest, request_id)
    status = request.args.get("status", "")
    entries = (
        select(RosterEntry)
        .join(Worker)
        .options(contains_eager(RosterEntry.worker))
        .where(RosterEntry.request_id == request_id)
    )
    if status in EntryStatus.__members__.values():
        entries = entries.where(RosterEntry.status == status)
    page = paginate(entries.order_by(Worker.group_tag, Worker.name, Worker.id), per_page=50)
    return render_template(
        "demand/request_detail.html",
        transport_request=transport_request,
        counts=services.status_counts(request_id),
        page=page,
        status=status,
        masked=exports.masked_worker,
        seats=trips.seats_of_entries([entry.id for entry in page.items]),
        request_trips=trips.request_trips(request_id),
        decision_form=DecisionForm(),
        action_form=FlaskForm(),
    )


RESUBMITTED_NOTICE = _l(
    "The request was approved: with the workers added it went back to the coordinators, and "
    "waits for their approval again."
)


@bp.route("/requests/<int:request_id>/workers", methods=["GET", "POST"])
@employer_only
def request_workers(request_id: int):
    """Choose workers from the roster: a whole group, everyone, or one by one."""
    transport_request = get_visible_or_404(TransportRequest, request_id)
    on_request = select(RosterEntry.worker_id).where(
        RosterEntry.request_id == request_id, RosterEntry.status != EntryStatus.WITHDRAWN
    )
    available = select_visible(Worker).where(Worker.id.not_in(on_request))
    form = FlaskForm()
    if "q" not in request.form and form.validate_on_submit():
        chosen = available
        if request.form.get("group") == "*":
            pass
        elif "group" in request.form:
            chosen = chosen.where(Worker.group_tag == (request.form["group"] or None))
        else:
            ids = [int(value) for value in request.form.getlist("worker") if value.isdigit()]
            chosen = chosen.where(Worker.id.in_(ids))
        workers = list(db.session.scalars(chosen))
        was_approved = transport_request.status == RequestStatus.APPROVED
        try:
            added = services.add_workers(transport_request, workers, current_user)
            db.session.commit()
        except DomainError as error:
            _refuse(error)
        except StaleDataError:
            _refuse(DomainError("request.stale"))
        else:
            flash(_("%(count)s workers added.", count=added), "success")
            if was_approved and transport_request.status == RequestStatus.SUBMITTED:
                flash(RESUBMITTED_NOTICE, "info")
        return redirect(url_for("demand.request_workers", request_id=request_id))

    search, linkable = _search_text()
    listed = _roster_search(available, search) if search else available
    page = paginate(listed.order_by(Worker.group_tag, Worker.name, Worker.id), per_page=100)
    groups = db.session.execute(
        available.with_only_columns(Worker.group_tag, func.count())
        .group_by(Worker.group_tag)
        .order_by(Worker.group_tag)
    ).all()
    return render_template(
        "demand/request_workers.html",
        transport_request=transport_request,
        page=page,
        groups=groups,
        search=search,
        linkable=linkable,
        form=form,
        import_form=RosterImportForm(),
        masked=exports.masked_worker,
    )


@bp.post("/requests/<int:request_id>/import")
@employer_only
def import_into_request(request_id: int):
    transport_request = get_visible_or_404(TransportRequest, request_id)
    form = RosterImportForm()
    if form.validate_on_submit() and (started := _start_import(form, transport_request)):
        return started
    return render_template(
        "demand/import_form.html", form=form, transport_request=transport_request
    )


TRANSITIONS = {
    "submit": (services.submit_request, _l("Request submitted to the coordinators.")),
    "withdraw": (services.withdraw_request, _l("Request taken back; it is a draft again.")),
    "cancel": (
        lambda request, actor: trips.cancel_request_travel(request.id, actor),
        _l("Request cancelled."),
    ),
}


@bp.post("/requests/<int:request_id>/<any(submit, withdraw, cancel):action>")
@employer_only
def change_request(request_id: int, action: str):
    transport_request = get_visible_or_404(TransportRequest, request_id)
    if FlaskForm().validate_on_submit():
        operation, done = TRANSITIONS[action]
        _apply(lambda: operation(transport_request, current_user), done)
    return redirect(url_for("demand.request_detail", request_id=request_id))


def _apply(operation, done_message: str) -> None:
    try:
        operation()
        db.session.commit()
    except DomainError as error:
        _refuse(error)
    except StaleDataError:
        _refuse(DomainError("request.stale"))
    else:
        flash(done_message, "success")


@bp.post("/requests/<int:request_id>/entries/<int:entry_id>/withdraw")
@employer_only
def withdraw_entry(request_id: int, entry_id: int):
    transport_request = get_visible_or_404(TransportRequest, request_id)
    entry = db.session.get(RosterEntry, entry_id)
    if entry is None or entry.request_id != transport_request.id:
        abort(404)
    if FlaskForm().validate_on_submit():
        name = entry.worker.name
        _apply(
            lambda: trips.withdraw_from_travel(entry.id, current_user),
            _("%(name)s withdrawn from this request.", name=name),
        )
    return redirect(url_for("demand.request_detail", request_id=request_id))


# --- coordinators --------------------------------------------------------------------------


@bp.get("/queue")
@roles_required(Role.COORDINATOR, Role.ADMIN)
def queue():
    query = select_visible(TransportRequest).where(
        TransportRequest.status == RequestStatus.SUBMITTED
    )
    origin = request.args.get("origin", "").strip()
    destination = request.args.get("destination", "").strip()
    if origin:
        query = query.where(
            or_(
                TransportRequest.origin_region_code.startswith(origin, autoescape=True),
                TransportRequest.origin_region_name.contains(origin, autoescape=True),
            )
        )
    if destination:
        query = query.where(
            or_(
                TransportRequest.destination_region_code.startswith(destination, autoescape=True),
                TransportRequest.destination_region_name.contains(destination, autoescape=True),
            )
        )
    query, date_problem = _date_filters(query)
    page = paginate(query.order_by(TransportRequest.submitted_at, TransportRequest.id))
    worker_counts = dict(
        db.session.execute(
            select(RosterEntry.request_id, func.count())
            .where(
                RosterEntry.request_id.in_([r.id for r in page.items]),
                RosterEntry.status != EntryStatus.WITHDRAWN,
            )
            .group_by(RosterEntry.request_id)
        ).all()
    )
    return render_template(
        "demand/queue.html",
        page=page,
        worker_counts=worker_counts,
        origin=origin,
        destination=destination,
        date_problem=date_problem,
        **_date_args(),
    )


@bp.post("/requests/<int:request_id>/<any(approve, reject):decision>")
@roles_required(Role.COORDINATOR)
def decide(request_id: int, decision: str):
    transport_request = get_visible_or_404(TransportRequest, request_id)
    form = DecisionForm()
    if form.validate_on_submit():
        reason = form.reason.data or ""
        if decision == "approve":
            _apply(
                lambda: services.approve_request(transport_request, current_user, reason),
                _("Request approved."),
            )
        else:
            _apply(
                lambda: services.reject_request(transport_request, current_user, reason),
                _("Request rejected."),
            )
    return redirect(url_for("demand.request_detail", request_id=request_id))
