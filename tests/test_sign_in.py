"""Signing in and out, as people do it through the pages."""

from tests.conftest import PASSWORD, People, csrf_token, sign_in, submit


def test_sign_in_lands_on_home_and_sign_out_ends_the_session(client, people):
    assert client.get("/").status_code == 302  # not signed in: to the sign-in page

    response = sign_in(client, "HR@A.example.cn ")  # case and spaces as people type them
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    home = client.get("/").get_data(as_text=True)
    assert "甲建筑有限公司" in home
    assert "退出登录" in home

    response = submit(client, "/logout", form_url="/")
    assert response.status_code == 302
    assert client.get("/").headers["Location"].startswith("/login")


def test_wrong_password_and_unknown_email_get_the_same_answer(client, people):
    wrong_password = sign_in(client, People.EMAILS["employer"], "not the password")
    unknown_email = sign_in(client, "nobody@example.cn", PASSWORD)
    for response in (wrong_password, unknown_email):
        assert response.status_code == 200
        assert "邮箱或密码错误" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302  # still signed out


def test_empty_form_shows_field_errors_in_chinese(client, people):
    response = submit(client, "/login", {"email": "", "password": ""})
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "请输入邮箱地址" in page
    assert "请输入密码" in page


def test_next_goes_back_to_the_asked_page_but_never_off_site(client, people):
    token = csrf_token(client, "/login")
    response = client.post(
        "/login?next=/account",
        data={"csrf_token": token, "email": People.EMAILS["admin"], "password": PASSWORD},
    )
    assert response.headers["Location"] == "/account"

    other = client.application.test_client()
    token = csrf_token(other, "/login")
    response = other.post(
        "/login?next=//evil.example.com/",
        data={"csrf_token": token, "email": People.EMAILS["admin"], "password": PASSWORD},
    )
    assert response.headers["Location"] == "/"


def test_form_without_csrf_token_is_refused(client, people):
    response = client.post("/login", data={"email": People.EMAILS["admin"], "password": PASSWORD})
    assert response.status_code == 400
    assert "表单已过期" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_sign_out_needs_the_csrf_token(client_as):
    client = client_as("employer")
    client.post("/logout")  # a cross-site form would post this
    assert client.get("/").status_code == 200  # still signed in


def test_repeated_failures_are_rate_limited_per_account(client, people):
    email = People.EMAILS["employer"]
    for _ in range(5):
        assert sign_in(client, email, "guess").status_code == 200
    blocked = sign_in(client, email, PASSWORD)  # even the right password waits now
    assert blocked.status_code == 429
    assert "尝试次数过多" in blocked.get_data(as_text=True)
    # Another account from the same address is not locked out by it.
    assert sign_in(client, People.EMAILS["admin"]).status_code == 302


def test_successful_sign_ins_do_not_use_up_the_allowance(app, people):
    for _ in range(8):
        client = app.test_client()
        assert sign_in(client, People.EMAILS["employer"]).status_code == 302


def test_inactive_account_cannot_sign_in(app, client, people):
    from app.accounts.models import User
    from app.extensions import db

    with app.app_context():
        db.session.get(User, people.employer_a_id).active = False
        db.session.commit()
    response = sign_in(client, People.EMAILS["employer"])
    assert response.status_code == 200
    assert "邮箱或密码错误" in response.get_data(as_text=True)


def test_session_cookie_is_httponly_and_samesite(client, people):
    response = sign_in(client, People.EMAILS["admin"])
    cookie = next(
        c for c in response.headers.getlist("Set-Cookie") if c.startswith("fangang_session=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_production_cookies_are_secure_and_hsts_is_sent(tmp_path, monkeypatch, redis_url):
    from tests.conftest import make_app

    monkeypatch.setenv("FANGANG_ENV", "production")
    app = make_app(f"sqlite:///{tmp_path / 'p.db'}", TESTING=False, REDIS_URL=redis_url)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["REMEMBER_COOKIE_SECURE"] is True
    response = app.test_client().get("/login")
    assert "max-age" in response.headers["Strict-Transport-Security"]


def test_pages_carry_security_headers(client):
    response = client.get("/login")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"


def test_passwords_are_stored_hashed_with_scrypt(app, people):
    from app.accounts.models import User
    from app.extensions import db

    with app.app_context():
        user = db.session.get(User, people.admin_id)
        assert user.password_hash.startswith("scrypt:")
        assert PASSWORD not in user.password_hash


def test_sign_in_and_out_are_audited_without_pii(app, client, people):
    from sqlalchemy import select

    from app.core.models import AuditEntry
    from app.extensions import db

    sign_in(client, People.EMAILS["employer"], "wrong")
    sign_in(client, People.EMAILS["employer"])
    submit(client, "/logout", form_url="/")
    with app.app_context():
        actions = db.session.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.object_id == people.employer_a_id, AuditEntry.object_type == "users")
            .order_by(AuditEntry.id)
        ).all()
    assert actions == ["user.created", "user.sign_in_failed", "user.signed_in", "user.signed_out"]
