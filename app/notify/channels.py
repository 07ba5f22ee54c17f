"""Delivery channels: SMS through an HTTP gateway, email through SMTP.

The outbox hands a channel a batch of :class:`OutgoingMessage` and records the :class:`Result`
of each: ``SENT`` (done), ``TRANSIENT`` (try again later, the idempotency key makes a repeat
safe) or ``PERMANENT`` (will never work, e.g. an invalid number). Channels never raise for a
delivery problem, and a ``Result.error`` is a short code for the operator view: it never holds
the phone number, the address or the text.

No Flask here: the settings are passed in.

SMS gateway protocol (the fake in ``fake_gateway.py`` implements the same)::

    POST {url}/v1/sms/batch    (HTTP basic auth when a username is set)
    {"messages": [{"idempotency_key": "...", "to": "+8613800138000", "text": "..."}]}

    200 {"results": [{"idempotency_key": "...", "status": "accepted" | "duplicate" | "rejected",
                      "id": "...", "error": "invalid_number"}]}
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

import httpx


@dataclass(frozen=True)
class OutgoingMessage:
    key: str  # the notification's idempotency key (the gateway drops duplicates by it)
    to: str  # E.164 phone number for SMS ("+8613800138000"), email address for email
    subject: str  # email only ("" for SMS)
    text: str  # the message body (plain text)


class Outcome(enum.StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Result:
    key: str
    outcome: Outcome
    error: str = ""  # short, for the operator view; never the phone number or the text
    provider_id: str = ""  # the gateway's message id when sent


# --- SMS ---------------------------------------------------------------------------------------

BATCH_PATH = "/v1/sms/batch"

# A gateway's error code is passed on only when it looks like a code: no spaces, no long digit
# runs (a gateway that echoes the number must not put it into the operator view).
_ERROR_CODE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
_DIGIT_RUN = re.compile(r"\d{5,}")


def _gateway_error_code(value: object) -> str:
    if isinstance(value, str) and _ERROR_CODE.fullmatch(value) and not _DIGIT_RUN.search(value):
        return value
    return "rejected"


class TokenBucket:
    """Blocking token bucket: ``rate`` tokens a second, at most ``capacity`` saved up.

    Starts full. ``acquire(n)`` waits until ``n`` tokens are there (``n`` must not exceed the
    capacity). Thread-safe: concurrent callers queue behind the lock, which is the point.
    """

    def __init__(
        self,
        rate: float,
        capacity: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._sleep = sleep
        self._tokens = capacity
        self._updated = clock()
        self._lock = threading.Lock()

    def acquire(self, count: float = 1) -> None:
        if count > self.capacity:
            raise ValueError("cannot acquire more tokens than the bucket holds")
        with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= count:
                    self._tokens -= count
                    return
                self._sleep((count - self._tokens) / self.rate)


class SmsGateway:
    """Sends SMS in batches through the HTTP gateway; one keep-alive ``httpx.Client``.

    ``per_second`` > 0 limits messages per second for this client (a blocking token bucket that
    starts with one second's worth; requests then carry at most ``per_second`` messages).
    After a request fails in a way that is not about its content (timeout, connection error,
    429, 5xx, 401/403, a malformed answer) the rest of the call is not attempted: those messages
    come back ``TRANSIENT`` with the same error, so a dead gateway costs one timeout per call.
    """

    def __init__(
        self,
        url: str,
        username: str = "",
        password: str = "",
        timeout: float = 5.0,
        per_second: float = 0,
        batch_size: int = 100,
        client: httpx.Client | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.endpoint = url.rstrip("/") + BATCH_PATH
        self._auth = httpx.BasicAuth(username, password) if username else None
        self._timeout = httpx.Timeout(timeout)
        self._owns_client = client is None
        self._client = client or httpx.Client(
            timeout=self._timeout,
            limits=httpx.Limits(max_connections=10, max_keepalive_connections=10),
        )
        self.batch_size = batch_size
        self._bucket: TokenBucket | None = None
        if per_second > 0:
            capacity = max(1, int(per_second))
            self.batch_size = min(batch_size, capacity)
            self._bucket = TokenBucket(per_second, capacity, clock=clock, sleep=sleep)

    def send(self, messages: Sequence[OutgoingMessage]) -> list[Result]:
        """One Result per message, in the same order."""
        results: list[Result] = []
        failed: str = ""  # the error of a request that failed for reasons of the gateway
        for chunk in self._chunks(messages):
            if failed:
                results.extend(Result(m.key, Outcome.TRANSIENT, failed) for m in chunk)
                continue
            if self._bucket is not None:
                self._bucket.acquire(len(chunk))
            chunk_results, failed = self._send_chunk(chunk)
            results.extend(chunk_results)
        return results

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> SmsGateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _chunks(self, messages: Sequence[OutgoingMessage]) -> Iterator[Sequence[OutgoingMessage]]:
        for start in range(0, len(messages), self.batch_size):
            yield messages[start : start + self.batch_size]

    def _send_chunk(self, chunk: Sequence[OutgoingMessage]) -> tuple[list[Result], str]:
        """The chunk's results, and the error when the whole request failed transiently."""
        body = json.dumps(
            {"messages": [{"idempotency_key": m.key, "to": m.to, "text": m.text} for m in chunk]},
            ensure_ascii=False,
        ).encode()
        try:
            response = self._client.post(
                self.endpoint,
                content=body,
                headers={"Content-Type": "application/json"},
                auth=self._auth,
                timeout=self._timeout,
            )
        except httpx.TimeoutException:
            return self._all(chunk, Outcome.TRANSIENT, "timeout"), "timeout"
        except httpx.ConnectError:
            return self._all(chunk, Outcome.TRANSIENT, "connection_error"), "connection_error"
        except httpx.RequestError:  # other transport and decoding failures
            return self._all(chunk, Outcome.TRANSIENT, "transport_error"), "transport_error"

        status = response.status_code
        if status == 200:
            return self._parse(chunk, response)
        if status in (401, 403):
            error = "auth"
        elif status in (408, 429) or status >= 500 or status < 400:
            error = f"http_{status}"
        else:  # the gateway refuses this request's content: other requests may be fine
            return self._all(chunk, Outcome.PERMANENT, f"bad_request_{status}"), ""
        return self._all(chunk, Outcome.TRANSIENT, error), error

    def _parse(
        self, chunk: Sequence[OutgoingMessage], response: httpx.Response
    ) -> tuple[list[Result], str]:
        try:
            items = response.json()["results"]
            answers = {item["idempotency_key"]: item for item in items if isinstance(item, dict)}
        except (ValueError, KeyError, TypeError):
            return self._all(chunk, Outcome.TRANSIENT, "bad_response"), "bad_response"
        results = []
        for message in chunk:
            answer = answers.get(message.key)
            status = answer.get("status") if answer else None
            provider_id = str(answer.get("id") or "")[:100] if answer else ""  # the column
            if status in ("accepted", "duplicate"):
                results.append(Result(message.key, Outcome.SENT, provider_id=provider_id))
            elif status == "rejected":
                error = _gateway_error_code(answer.get("error"))
                results.append(Result(message.key, Outcome.PERMANENT, error))
            else:  # no or an unknown answer for this message: ask again later
                results.append(Result(message.key, Outcome.TRANSIENT, "bad_response"))
        return results, ""

    @staticmethod
    def _all(chunk: Sequence[OutgoingMessage], outcome: Outcome, error: str) -> list[Result]:
        return [Result(m.key, outcome, error) for m in chunk]


# --- email -------------------------------------------------------------------------------------

# local@domain, nothing that could smuggle a second address or a header in.
_ADDRESS = re.compile(r"[^@\s<>,;\"\\]+@[^@\s<>,;\"\\]+")


def message_id(key: str) -> str:
    """The Message-ID of the email for an idempotency key: a repeat carries the same one."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@fangang>"


class SmtpMailer:
    """Sends email over one SMTP connection per ``send`` call, one email per message.

    ``use_ssl`` connects with implicit TLS (port 465); ``use_tls`` upgrades with STARTTLS.
    """

    def __init__(
        self,
        host: str,
        port: int = 25,
        username: str = "",
        password: str = "",
        sender: str = "",
        use_tls: bool = False,
        use_ssl: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.sender = sender or (username if "@" in username else "noreply@localhost")
        self.envelope_sender = parseaddr(self.sender)[1] or self.sender
        self.use_tls = use_tls
        self.use_ssl = use_ssl
        self.timeout = timeout

    def send(self, messages: Sequence[OutgoingMessage]) -> list[Result]:
        """One Result per message, in the same order."""
        results: list[Result | None] = [None] * len(messages)
        pending: list[tuple[int, EmailMessage]] = []
        for index, message in enumerate(messages):
            if not _ADDRESS.fullmatch(message.to):
                results[index] = Result(message.key, Outcome.PERMANENT, "invalid_address")
                continue
            try:
                pending.append((index, self._build(message)))
            except (ValueError, TypeError):  # e.g. a line break in the subject
                results[index] = Result(message.key, Outcome.PERMANENT, "invalid_message")
        if pending:
            self._deliver(messages, pending, results)
        return [r for r in results if r is not None]

    def _build(self, message: OutgoingMessage) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = message.to
        email["Subject"] = message.subject
        email["Date"] = formatdate(usegmt=True)
        email["Message-ID"] = message_id(message.key)
        email.set_content(message.text, charset="utf-8")
        return email

    def _connect(self) -> smtplib.SMTP:
        """An SMTP session ready to send, or ``_SetupFailed`` with the error code."""
        context = ssl.create_default_context()
        try:
            if self.use_ssl:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=context
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        except smtplib.SMTPResponseException as error:  # a 4xx/5xx greeting
            raise _SetupFailed(f"smtp_{error.smtp_code}") from None
        except OSError as error:
            raise _SetupFailed(_os_error_code(error)) from None
        stage = "connection_error"
        try:
            smtp.ehlo()
            if self.use_tls:
                stage = "tls"
                smtp.starttls(context=context)
                smtp.ehlo()
            if self.username:
                stage = "auth"
                smtp.login(self.username, self.password)
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError):
            smtp.close()
            raise _SetupFailed(stage) from None
        except OSError as error:
            smtp.close()
            raise _SetupFailed(
                _os_error_code(error, "tls" if stage == "tls" else "connection_error")
            ) from None
        return smtp

    def _deliver(
        self,
        messages: Sequence[OutgoingMessage],
        pending: list[tuple[int, EmailMessage]],
        results: list[Result | None],
    ) -> None:
        def fail_rest(start: int, error: str) -> None:
            for index, _ in pending[start:]:
                results[index] = Result(messages[index].key, Outcome.TRANSIENT, error)

        try:
            smtp = self._connect()
        except _SetupFailed as error:
            return fail_rest(0, error.code)

        try:
            for position, (index, email) in enumerate(pending):
                key = messages[index].key
                try:
                    smtp.send_message(email, self.envelope_sender, [messages[index].to])
                    results[index] = Result(key, Outcome.SENT, provider_id=email["Message-ID"])
                except smtplib.SMTPRecipientsRefused as error:
                    code = next(iter(error.recipients.values()), (0, b""))[0]
                    results[index] = _by_reply(key, code, "recipient_refused")
                except smtplib.SMTPSenderRefused as error:  # our sender: configuration
                    results[index] = Result(
                        key, Outcome.TRANSIENT, f"sender_refused_{error.smtp_code}"
                    )
                except smtplib.SMTPDataError as error:
                    results[index] = _by_reply(key, error.smtp_code, "data_refused")
                except smtplib.SMTPNotSupportedError:  # a non-ASCII address, no SMTPUTF8
                    results[index] = Result(key, Outcome.PERMANENT, "smtputf8_unsupported")
                except TimeoutError:
                    return fail_rest(position, "timeout")
                except OSError:  # disconnected, reset, an unexpected reply
                    return fail_rest(position, "connection_error")
                if smtp.sock is None:  # the server closed the connection (421)
                    return fail_rest(position + 1, "disconnected")
        finally:
            try:
                smtp.quit()
            except OSError:
                smtp.close()
        return None


class _SetupFailed(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _os_error_code(error: OSError, default: str = "connection_error") -> str:
    if isinstance(error, ssl.SSLError):
        return "tls"
    if isinstance(error, TimeoutError):
        return "timeout"
    return default


def _by_reply(key: str, code: int, what: str) -> Result:
    """5xx: the server will never take it; anything else: try again later."""
    outcome = Outcome.PERMANENT if 500 <= code < 600 else Outcome.TRANSIENT
    return Result(key, outcome, f"{what}_{code}")
