"""The SMS and email channels against real servers: the fake SMS gateway and aiosmtpd."""

from __future__ import annotations

import base64
import email
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from email import policy
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from app.notify.channels import (
    Outcome,
    OutgoingMessage,
    Result,
    SmsGateway,
    SmtpMailer,
    _gateway_error_code,
    message_id,
)
from app.notify.cli import notify_cli
from app.notify.fake_gateway import FakeSmsGateway

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sms(count: int, prefix: str = "trip", start: int = 0) -> list[OutgoingMessage]:
    return [
        OutgoingMessage(
            key=f"{prefix}-{n}",
            to=f"+86138{n:08d}",
            subject="",
            text=f"【返岗直通车】您的车次 G{n} 明天 07:30 在县汽车站发车。",
        )
        for n in range(start, start + count)
    ]


def outcomes(results: list[Result]) -> set[Outcome]:
    return {result.outcome for result in results}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[FakeSmsGateway]:
    fake = FakeSmsGateway(record_file=tmp_path / "sms.jsonl").start()
    yield fake
    fake.stop()


@pytest.fixture
def client(gateway: FakeSmsGateway) -> Iterator[SmsGateway]:
    channel = SmsGateway(gateway.url, timeout=2.0)
    yield channel
    channel.close()


# --- SMS -----------------------------------------------------------------------------------


def test_a_large_batch_is_split_and_a_repeat_is_not_delivered_twice(
    gateway: FakeSmsGateway, client: SmsGateway, tmp_path: Path
) -> None:
    messages = sms(250)

    results = client.send(messages)

    assert [r.key for r in results] == [m.key for m in messages]
    assert outcomes(results) == {Outcome.SENT}
    assert all(r.provider_id and not r.error for r in results)
    assert gateway.batch_sizes == [100, 100, 50]
    received = gateway.messages
    assert len(received) == 250
    assert received[7]["to"] == messages[7].to
    assert received[7]["text"] == messages[7].text
    assert received[7]["idempotency_key"] == "trip-7"
    assert len((tmp_path / "sms.jsonl").read_text(encoding="utf-8").splitlines()) == 250

    again = client.send(messages)

    assert outcomes(again) == {Outcome.SENT}
    assert [r.provider_id for r in again] == [r.provider_id for r in results]
    assert len(gateway.messages) == 250


def test_invalid_numbers_are_permanent_and_the_rest_are_sent(
    gateway: FakeSmsGateway, client: SmsGateway
) -> None:
    good = sms(3)
    bad = [
        OutgoingMessage("bad-landline", "+861012345678", "", "x"),
        OutgoingMessage("bad-short", "+8613800", "", "x"),
        OutgoingMessage("bad-local", "13800138000", "", "x"),
        OutgoingMessage("bad-foreign", "+14155550100", "", "x"),
    ]
    messages = [good[0], bad[0], good[1], bad[1], bad[2], good[2], bad[3]]

    results = client.send(messages)

    assert [r.outcome for r in results] == [
        Outcome.SENT,
        Outcome.PERMANENT,
        Outcome.SENT,
        Outcome.PERMANENT,
        Outcome.PERMANENT,
        Outcome.SENT,
        Outcome.PERMANENT,
    ]
    assert {r.error for r in results if r.outcome is Outcome.PERMANENT} == {"invalid_number"}
    assert [m["idempotency_key"] for m in gateway.messages] == [m.key for m in good]


def test_server_errors_are_transient_until_the_gateway_recovers(
    gateway: FakeSmsGateway, client: SmsGateway
) -> None:
    messages = sms(3)
    gateway.fail_next(2, 500)

    first, second, third = (client.send(messages) for _ in range(3))

    for failed in (first, second):
        assert outcomes(failed) == {Outcome.TRANSIENT}
        assert {r.error for r in failed} == {"http_500"}
    assert outcomes(third) == {Outcome.SENT}
    assert len(gateway.messages) == 3


def test_after_a_failed_request_the_rest_of_the_call_is_not_attempted(
    gateway: FakeSmsGateway, client: SmsGateway
) -> None:
    gateway.fail_next(1, 503)

    results = client.send(sms(250))

    assert outcomes(results) == {Outcome.TRANSIENT}
    assert {r.error for r in results} == {"http_503"}
    assert gateway.requests == 1


@pytest.mark.parametrize(
    ("status", "outcome", "error"),
    [
        (429, Outcome.TRANSIENT, "http_429"),
        (502, Outcome.TRANSIENT, "http_502"),
        (401, Outcome.TRANSIENT, "auth"),
        (403, Outcome.TRANSIENT, "auth"),
        (400, Outcome.PERMANENT, "bad_request_400"),
        (422, Outcome.PERMANENT, "bad_request_422"),
        (200, Outcome.TRANSIENT, "bad_response"),  # a 200 without "results"
    ],
)
def test_http_status_mapping(
    gateway: FakeSmsGateway, client: SmsGateway, status: int, outcome: Outcome, error: str
) -> None:
    gateway.fail_next(1, status)

    results = client.send(sms(2))

    assert [(r.outcome, r.error) for r in results] == [(outcome, error)] * 2
    assert gateway.messages == []
    assert outcomes(client.send(sms(2))) == {Outcome.SENT}


def test_a_bad_request_does_not_stop_the_other_requests_of_the_call(
    gateway: FakeSmsGateway, client: SmsGateway
) -> None:
    gateway.fail_next(1, 400)

    results = client.send(sms(150))

    assert [r.outcome for r in results] == [Outcome.PERMANENT] * 100 + [Outcome.SENT] * 50
    assert len(gateway.messages) == 50


def test_a_slow_gateway_times_out_and_the_retry_is_a_duplicate(gateway: FakeSmsGateway) -> None:
    gateway.set_delay(0.6)
    messages = sms(3)
    with SmsGateway(gateway.url, timeout=0.2) as channel:
        results = channel.send(messages)

        assert [(r.outcome, r.error) for r in results] == [(Outcome.TRANSIENT, "timeout")] * 3

        gateway.set_delay(0)
        retried = channel.send(messages)

    # The gateway took the batch before its answer was lost: the retry is not sent twice.
    assert outcomes(retried) == {Outcome.SENT}
    assert len(gateway.messages) == 3


def test_nothing_listening_is_transient() -> None:
    with SmsGateway(f"http://127.0.0.1:{free_port()}", timeout=1.0) as channel:
        results = channel.send(sms(150))

    assert [(r.outcome, r.error) for r in results] == [
        (Outcome.TRANSIENT, "connection_error")
    ] * 150


def test_basic_auth_is_sent_when_configured(gateway: FakeSmsGateway, client: SmsGateway) -> None:
    client.send(sms(1))
    assert gateway.last_authorization is None

    with SmsGateway(gateway.url, username="fangang", password="s3cret:pw") as channel:
        assert outcomes(channel.send(sms(1, start=1))) == {Outcome.SENT}

    expected = base64.b64encode(b"fangang:s3cret:pw").decode()
    assert gateway.last_authorization == f"Basic {expected}"


def test_errors_never_carry_the_number_or_the_text(gateway: FakeSmsGateway) -> None:
    with SmsGateway(gateway.url) as channel:
        results = channel.send([OutgoingMessage("k", "+8610012345678", "", "秘密内容")])
    assert results == [Result("k", Outcome.PERMANENT, "invalid_number")]

    # A gateway's error code is passed on only when it looks like a code, not like a number.
    assert _gateway_error_code("invalid_number") == "invalid_number"
    echoes = ("+8613800138000", "bad number 13800138000", "no_13800138000", None, 42, "x" * 65)
    for echoed in echoes:
        assert _gateway_error_code(echoed) == "rejected"


def test_the_rate_limit_waits_without_real_sleeping(gateway: FakeSmsGateway) -> None:
    now = [1000.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    channel = SmsGateway(
        gateway.url, per_second=50, batch_size=100, clock=lambda: now[0], sleep=sleep
    )
    with channel:
        results = channel.send(sms(200))

    assert outcomes(results) == {Outcome.SENT}
    # One second's worth goes at once; each further 50 waits a second.
    assert gateway.batch_sizes == [50, 50, 50, 50]
    assert sum(sleeps) == pytest.approx(3.0)

    # Time that passed refills the bucket: after 2 s idle, 100 go without waiting.
    now[0] += 2
    sleeps.clear()
    with SmsGateway(
        gateway.url, per_second=50, clock=lambda: now[0], sleep=sleep
    ) as fresh:  # a new client starts full
        fresh.send(sms(50, prefix="fresh"))
        assert sleeps == []
        fresh.send(sms(50, prefix="fresh", start=50))
        assert sum(sleeps) == pytest.approx(1.0)


def test_a_fractional_rate_sends_one_message_at_a_time(gateway: FakeSmsGateway) -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    with SmsGateway(gateway.url, per_second=0.5, clock=lambda: now[0], sleep=sleep) as channel:
        assert outcomes(channel.send(sms(3))) == {Outcome.SENT}

    assert gateway.batch_sizes == [1, 1, 1]
    assert sum(sleeps) == pytest.approx(4.0)


def test_an_injected_client_is_used_and_left_open(gateway: FakeSmsGateway) -> None:
    with httpx.Client() as http:
        channel = SmsGateway(gateway.url, client=http)
        assert outcomes(channel.send(sms(2))) == {Outcome.SENT}
        channel.close()
        assert not http.is_closed


# --- the fake gateway's control endpoints ----------------------------------------------------


def test_the_control_endpoints_work_over_http(gateway: FakeSmsGateway, client: SmsGateway) -> None:
    with httpx.Client(base_url=gateway.url, timeout=2.0) as http:
        state = http.post("/v1/control", json={"fail_next": 1, "status": 503}).json()
        assert state["fail_next"] == 1
        assert state["status"] == 503
        assert {r.error for r in client.send(sms(2))} == {"http_503"}

        assert outcomes(client.send(sms(2))) == {Outcome.SENT}
        listed = http.get("/v1/sms/messages").json()
        assert [m["idempotency_key"] for m in listed] == ["trip-0", "trip-1"]
        assert listed[0]["text"].startswith("【返岗直通车】")
        assert set(listed[0]) == {"id", "idempotency_key", "to", "text", "received_at"}

        assert http.post("/v1/control", json={"delay": 0.25}).json()["delay"] == 0.25
        assert http.post("/v1/control", json={"bogus": 1}).status_code == 400
        assert http.post("/v1/control", content=b"not json").status_code == 400

        assert http.delete("/v1/sms/messages").status_code == 200
        assert http.get("/v1/sms/messages").json() == []
        assert http.get("/v1/control").json()["delay"] == 0
        # After a reset the keys are forgotten too.
        assert outcomes(client.send(sms(2))) == {Outcome.SENT}
        assert len(http.get("/v1/sms/messages").json()) == 2

        assert http.post("/v1/sms/batch", json={"messages": [{"to": 1}]}).status_code == 400
        assert http.get("/nowhere").status_code == 404


def test_the_fake_gateway_runs_as_its_own_process(tmp_path: Path) -> None:
    record = tmp_path / "sms.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "app.notify.fake_gateway", "--port", "0", "--record", str(record)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first_line = process.stdout.readline()
        url = first_line.split()[-1]
        assert url.startswith("http://127.0.0.1:")
        assert "SMS_GATEWAY_URL=" + url in process.stdout.readline()

        with SmsGateway(url) as channel:
            assert outcomes(channel.send(sms(5))) == {Outcome.SENT}
        with httpx.Client(base_url=url) as http:
            assert len(http.get("/v1/sms/messages").json()) == 5
        lines = record.read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["idempotency_key"] for line in lines] == [
            f"trip-{n}" for n in range(5)
        ]
    finally:
        process.terminate()
        process.wait(timeout=5)
        process.stdout.close()


def test_the_cli_command_is_registered() -> None:
    result = CliRunner().invoke(notify_cli, ["fake-sms-gateway", "--help"])

    assert result.exit_code == 0
    assert "--record" in result.output


# --- email ---------------------------------------------------------------------------------


class Recorder:
    """An aiosmtpd handler that keeps what it receives and refuses chosen recipients."""

    def __init__(self, refuse: dict[str, str] | None = None) -> None:
        self.refuse = refuse or {}
        self.envelopes: list = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Recorder, int]]:
    handler = Recorder(
        refuse={
            "nobody@example.cn": "550 5.1.1 No such user",
            "busy@example.cn": "451 4.3.0 Try again later",
        }
    )
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def mail(key: str, to: str) -> OutgoingMessage:
    return OutgoingMessage(
        key=key,
        to=to,
        subject="返岗直通车：您的员工 3 月 2 日到岗名单",
        text="您好，\n\n3 月 2 日 G1234 次专车将送达 42 名员工，请安排接站。\n\n返岗直通车",
    )


def test_chinese_email_arrives_intact(smtp_server: tuple[Recorder, int]) -> None:
    handler, port = smtp_server
    mailer = SmtpMailer(
        "127.0.0.1", port, sender="返岗直通车 <noreply@fangang.example.cn>", timeout=5
    )

    results = mailer.send([mail("roster-1", "hr@factory.example.cn")])

    assert results == [Result("roster-1", Outcome.SENT, provider_id=message_id("roster-1"))]
    [envelope] = handler.envelopes
    assert envelope.mail_from == "noreply@fangang.example.cn"
    assert envelope.rcpt_tos == ["hr@factory.example.cn"]
    received = email.message_from_bytes(envelope.original_content, policy=policy.default)
    assert received["Subject"] == "返岗直通车：您的员工 3 月 2 日到岗名单"
    assert received["From"].addresses[0].display_name == "返岗直通车"
    assert received["To"] == "hr@factory.example.cn"
    # On the wire lines end in CRLF.
    assert received.get_content().replace("\r\n", "\n").rstrip("\n") == mail("k", "x").text
    assert received.get_content_charset() == "utf-8"
    assert received["Message-ID"] == message_id("roster-1")
    assert received["Message-ID"].endswith("@fangang>")
    assert received["Date"]


def test_the_message_id_is_the_same_for_a_repeat(smtp_server: tuple[Recorder, int]) -> None:
    handler, port = smtp_server
    mailer = SmtpMailer("127.0.0.1", port, sender="noreply@fangang.example.cn")

    mailer.send([mail("roster-2", "hr@factory.example.cn")])
    mailer.send([mail("roster-2", "hr@factory.example.cn")])
    mailer.send([mail("roster-3", "hr@factory.example.cn")])

    ids = [
        email.message_from_bytes(e.original_content, policy=policy.default)["Message-ID"]
        for e in handler.envelopes
    ]
    assert ids[0] == ids[1] != ids[2]


def test_a_refused_recipient_is_permanent_and_the_others_are_sent(
    smtp_server: tuple[Recorder, int],
) -> None:
    handler, port = smtp_server
    mailer = SmtpMailer("127.0.0.1", port, sender="noreply@fangang.example.cn")

    results = mailer.send(
        [
            mail("a", "hr@factory.example.cn"),
            mail("b", "nobody@example.cn"),
            mail("c", "busy@example.cn"),
            mail("d", "boss@factory.example.cn"),
        ]
    )

    assert [(r.key, r.outcome, r.error) for r in results] == [
        ("a", Outcome.SENT, ""),
        ("b", Outcome.PERMANENT, "recipient_refused_550"),
        ("c", Outcome.TRANSIENT, "recipient_refused_451"),
        ("d", Outcome.SENT, ""),
    ]
    assert [e.rcpt_tos for e in handler.envelopes] == [
        ["hr@factory.example.cn"],
        ["boss@factory.example.cn"],
    ]


def test_a_server_that_is_down_is_transient() -> None:
    mailer = SmtpMailer("127.0.0.1", free_port(), sender="noreply@fangang.example.cn", timeout=2)

    results = mailer.send([mail("a", "hr@factory.example.cn"), mail("b", "boss@example.cn")])

    assert [(r.outcome, r.error) for r in results] == [(Outcome.TRANSIENT, "connection_error")] * 2


def test_invalid_addresses_are_permanent_without_connecting() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        mailer = SmtpMailer("127.0.0.1", listener.getsockname()[1], timeout=1)

        results = mailer.send(
            [
                mail("a", "not-an-address"),
                mail("b", "two@a.cn, three@b.cn"),
                mail("c", ""),
            ]
        )

        assert [(r.outcome, r.error) for r in results] == [
            (Outcome.PERMANENT, "invalid_address")
        ] * 3
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_a_header_injection_is_permanent(smtp_server: tuple[Recorder, int]) -> None:
    handler, port = smtp_server
    mailer = SmtpMailer("127.0.0.1", port, sender="noreply@fangang.example.cn")
    bad = OutgoingMessage("x", "hr@factory.example.cn", "hi\r\nBcc: evil@example.com", "text")

    results = mailer.send([bad, mail("ok", "hr@factory.example.cn")])

    assert [(r.outcome, r.error) for r in results] == [
        (Outcome.PERMANENT, "invalid_message"),
        (Outcome.SENT, ""),
    ]
    assert len(handler.envelopes) == 1
