"""Who sees what: roles, organization scoping, friendly error pages, both languages."""

import pytest

from tests.conftest import People, submit


def test_employer_sees_own_organization_but_not_another(client_as, people):
    client = client_as("employer")
    own = client.get(f"/organizations/{people.organization_a_id}")
    assert own.status_code == 200
    assert "甲建筑有限公司" in own.get_data(as_text=True)

    other = client.get(f"/organizations/{people.organization_b_id}")
    missing = client.get("/organizations/999999")
    # Another organization's page looks exactly like a missing one.
    assert other.status_code == missing.status_code == 404
    assert other.get_data(as_text=True) == missing.get_data(as_text=True).replace(
        "/organizations/999999", f"/organizations/{people.organization_b_id}"
    )
    assert "乙制造有限公司" not in other.get_data(as_text=True)
    assert "页面不存在" in other.get_data(as_text=True)


def test_employer_sees_only_own_colleagues(client_as, people):
    page = client_as("employer").get(f"/organizations/{people.organization_a_id}")
    text = page.get_data(as_text=True)
    assert People.EMAILS["employer"] in text
    assert People.EMAILS["employer_b"] not in text


@pytest.mark.parametrize(
    ("role", "url", "status"),
    [
        ("employer", "/organizations", 403),
        ("employer", "/users", 403),
        ("employer", "/admin/system", 403),
        ("coordinator", "/users", 403),
        ("coordinator", "/organizations/new", 403),
        ("coordinator", "/organizations", 200),
        ("admin", "/users", 200),
        ("admin", "/admin/system", 200),
    ],
)
def test_role_checks(client_as, role, url, status):
    response = client_as(role).get(url)
    assert response.status_code == status
    if status == 403:
        assert "无权" in response.get_data(as_text=True)


def test_navigation_follows_the_role(client_as):
    admin_home = client_as("admin").get("/").get_data(as_text=True)
    employer_home = client_as("employer").get("/").get_data(as_text=True)
    assert 'href="/users"' in admin_home
    assert 'href="/users"' not in employer_home
    assert 'href="/organizations"' not in employer_home


def test_language_switch_to_english_and_back(client_as):
    client = client_as("employer")
    assert "退出登录" in client.get("/").get_data(as_text=True)  # Chinese by default

    response = client.get("/language/en?next=/account")
    assert response.headers["Location"] == "/account"
    page = client.get("/account").get_data(as_text=True)
    assert "Sign out" in page
    assert '<html lang="en">' in page

    client.get("/language/zh_CN")
    assert "退出登录" in client.get("/account").get_data(as_text=True)


def test_language_choice_is_remembered_on_the_account(app, client_as):
    client_as("coordinator").get("/language/en")
    fresh = client_as("coordinator")  # another device, new session
    assert "Sign out" in fresh.get("/").get_data(as_text=True)


def test_unknown_language_and_offsite_next_are_ignored(client):
    response = client.get("/language/fr?next=https://evil.example.com/")
    assert response.headers["Location"] == "/"
    assert "登录" in client.get("/login").get_data(as_text=True)


def test_not_found_page_in_both_languages(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "页面不存在" in response.get_data(as_text=True)
    client.get("/language/en")
    response = client.get("/no/such/page")
    assert "Page not found" in response.get_data(as_text=True)
    assert "Home" in response.get_data(as_text=True)  # a way back


def test_unexpected_error_gets_the_friendly_page_and_nothing_is_saved(tmp_path):
    from sqlalchemy import func, select

    from app.accounts.models import Organization
    from app.accounts.services import create_organization
    from app.extensions import db
    from tests.conftest import make_app

    app = make_app(f"sqlite:///{tmp_path / 'e.db'}", PROPAGATE_EXCEPTIONS=False)
    with app.app_context():
        db.create_all()

    @app.get("/boom")
    def boom():
        create_organization("半途公司", "91370100MA3C99990H")
        raise RuntimeError("bug")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    text = response.get_data(as_text=True)
    assert "出错" in text
    assert "RuntimeError" not in text
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Organization)) == 0


def test_admin_registers_an_organization_with_a_checked_credit_code(client_as):
    client = client_as("admin")
    response = submit(
        client,
        "/organizations/new",
        {"name": "丙物流有限公司", "credit_code": "91370100MA3C99990A", "region_code": "37010"},
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "校验码" in page  # the credit code's check character is wrong
    assert "行政区划代码" in page
    assert "六位" in page

    response = submit(
        client,
        "/organizations/new",
        {
            "name": "丙物流有限公司",
            "credit_code": "9137 0100 ma3c 9999 0h",
            "region_code": "370100",
        },
    )
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "91370100MA3C99990H" in page  # stored normalised

    again = submit(
        client,
        "/organizations/new",
        {"name": "重复公司", "credit_code": "91370100MA3C99990H"},
    )
    assert "已注册" in again.get_data(as_text=True)


def test_organization_list_paginates_and_searches(app, client_as):
    from app.accounts.services import create_organization
    from app.core.identity import credit_code_check_character
    from app.extensions import db

    with app.app_context():
        for number in range(30):
            first17 = f"9137010000000{number:04d}"
            create_organization(
                f"批量企业{number:02d}", first17 + credit_code_check_character(first17)
            )
        db.session.commit()
    client = client_as("coordinator")
    first = client.get("/organizations").get_data(as_text=True)
    assert "第 1 页" in first
    assert 'rel="next"' in first
    second = client.get("/organizations?page=2").get_data(as_text=True)
    assert 'rel="prev"' in second
    found = client.get("/organizations?q=批量企业07").get_data(as_text=True)
    assert "批量企业07" in found
    assert "批量企业08" not in found
