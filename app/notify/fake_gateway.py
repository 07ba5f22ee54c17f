"""A fake SMS gateway for development, tests and benchmarks (stdlib only).

It speaks the protocol of ``channels.SmsGateway``: ``POST /v1/sms/batch`` takes a batch, drops
repeats by idempotency key (answering ``duplicate``), rejects numbers that are not Chinese
mobile numbers in E.164 (``+861[3-9]`` and nine digits) as ``invalid_number`` and keeps the
accepted messages in memory (and, with ``record_file``, as JSON lines).

Control endpoints, so that another process (a test, a benchmark) can drive it::

    GET    /v1/sms/messages   the accepted messages, a JSON list
    DELETE /v1/sms/messages   forget everything (messages, seen keys, failures, delay)
    GET    /v1/control        the state: {"messages", "requests", "duplicates", "fail_next",
                              "status", "delay"}
    POST   /v1/control        {"fail_next": 2, "status": 500} and/or {"delay": 0.5}

``fail_next(n, status)`` makes the next n batch requests answer ``status`` without taking
anything; ``status=200`` answers a malformed 200 body. With a delay the gateway takes the batch
and then answers late, like a real gateway whose answer is lost to a client timeout.

For fault tests, in the same process: ``hold()`` keeps every batch, once taken, unanswered until
``release()`` (so a test knows a batch is in flight and acts then: kills the worker or its
database connection); ``go_down()`` stops listening and drops open connections (clients get
"connection refused") and ``come_up()`` listens again on the same port, with what it had taken;
``duplicates`` counts the messages it dropped as repeats.

Run it on its own (no app, no database)::

    python -m app.notify.fake_gateway --port 9090 [--record sms.jsonl]

It has no authentication: bind it to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import re
import socket
import threading
import time
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

CN_MOBILE = re.compile(r"\+861[3-9]\d{9}")
BATCH_PATH = "/v1/sms/batch"
MESSAGES_PATH = "/v1/sms/messages"
CONTROL_PATH = "/v1/control"
MAX_BODY = 16 * 1024 * 1024
HOLD_LIMIT = 60.0  # seconds a held batch waits for release at most (a test that forgot it)


class FakeSmsGateway:
    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, record_file: Path | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._messages: list[dict] = []
        self._ids: dict[str, str] = {}  # idempotency key -> message id
        self._counter = itertools.count(1)
        self._fail_next = 0
        self._fail_status = 500
        self._delay = 0.0
        self._requests = 0
        self._duplicates = 0
        self._released = threading.Event()
        self._released.set()
        self._connections: set[socket.socket] = set()
        self._batch_sizes: list[int] = []
        self.last_authorization: str | None = None  # the Authorization header of the last batch
        self.record_file = Path(record_file) if record_file else None
        self._record: TextIO | None = None
        if self.record_file:
            self._record = self.record_file.open("a", encoding="utf-8")
        self._server: _Server | None = self._listen((host, port))
        self._thread: threading.Thread | None = None
        self.address = self._server.server_address[:2]
        self.url = f"http://{self.address[0]}:{self.address[1]}"

    def _listen(self, address: tuple) -> _Server:
        server = _Server(address, _Handler)
        server.gateway = self
        return server

    # --- running ---

    def start(self) -> FakeSmsGateway:
        """Serve in a daemon thread."""
        if self._server is None:
            raise RuntimeError("the gateway is down: come_up() first")
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until ``stop`` (from another thread) or KeyboardInterrupt."""
        self._server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self.release()
        self._close()
        with self._lock:
            if self._record is not None:
                self._record.close()
                self._record = None

    def _close(self) -> None:
        if self._server is None:
            return
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self._server = None

    def go_down(self) -> None:
        """Stop listening and cut open (keep-alive) connections: clients are refused until
        ``come_up``. What was taken is kept."""
        self._close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def come_up(self) -> None:
        """Listen again on the same address (after ``go_down``)."""
        if self._server is None:
            self._server = self._listen(self.address)
            self.start()

    def __enter__(self) -> FakeSmsGateway:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- inspecting and steering ---

    @property
    def messages(self) -> list[dict]:
        """The accepted messages in order (a copy)."""
        with self._lock:
            return list(self._messages)

    @property
    def requests(self) -> int:
        """Batch requests received, failed ones included."""
        with self._lock:
            return self._requests

    @property
    def duplicates(self) -> int:
        """Messages answered ``duplicate`` (sent again with a key already taken)."""
        with self._lock:
            return self._duplicates

    @property
    def batch_sizes(self) -> list[int]:
        """The number of messages in each batch request that was processed."""
        with self._lock:
            return list(self._batch_sizes)

    def fail_next(self, count: int, status: int = 500) -> None:
        """The next ``count`` batch requests answer ``status`` (200: a malformed body)."""
        with self._lock:
            self._fail_next = max(0, int(count))
            self._fail_status = int(status)

    def set_delay(self, seconds: float) -> None:
        """Answer each batch request ``seconds`` late."""
        with self._lock:
            self._delay = max(0.0, float(seconds))

    def hold(self) -> None:
        """From now on, keep each batch, once taken, unanswered until ``release``."""
        self._released.clear()

    def release(self) -> None:
        """Answer the batches held, and stop holding."""
        self._released.set()

    def _wait_released(self) -> None:
        self._released.wait(timeout=HOLD_LIMIT)

    def reset(self) -> None:
        self.release()
        with self._lock:
            self._messages.clear()
            self._ids.clear()
            self._fail_next = 0
            self._fail_status = 500
            self._delay = 0.0
            self._requests = 0
            self._duplicates = 0
            self._batch_sizes.clear()
            self.last_authorization = None

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "messages": len(self._messages),
                "requests": self._requests,
                "duplicates": self._duplicates,
                "fail_next": self._fail_next,
                "status": self._fail_status,
                "delay": self._delay,
            }

    # --- the protocol ---

    def _take_batch(self, authorization: str | None) -> tuple[int, float]:
        """Count a batch request; the failure status to answer (0: none) and the delay."""
        with self._lock:
            self._requests += 1
            self.last_authorization = authorization
            if self._fail_next > 0:
                self._fail_next -= 1
                return self._fail_status, self._delay
            return 0, self._delay

    def _accept(self, items: list[dict]) -> list[dict]:
        received_at = datetime.now(UTC).isoformat()
        results = []
        lines = []
        with self._lock:
            self._batch_sizes.append(len(items))
            for item in items:
                key, to, text = item["idempotency_key"], item["to"], item["text"]
                if key in self._ids:
                    self._duplicates += 1
                    results.append(
                        {"idempotency_key": key, "status": "duplicate", "id": self._ids[key]}
                    )
                elif not CN_MOBILE.fullmatch(to):
                    results.append(
                        {"idempotency_key": key, "status": "rejected", "error": "invalid_number"}
                    )
                else:
                    message_id = f"fake-{next(self._counter)}"
                    self._ids[key] = message_id
                    record = {
                        "id": message_id,
                        "idempotency_key": key,
                        "to": to,
                        "text": text,
                        "received_at": received_at,
                    }
                    self._messages.append(record)
                    results.append({"idempotency_key": key, "status": "accepted", "id": message_id})
                    if self._record is not None:
                        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
            if lines and self._record is not None:
                self._record.writelines(lines)
                self._record.flush()
        return results


def _valid_batch(payload: object) -> list[dict] | None:
    if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
        return None
    items = payload["messages"]
    for item in items:
        if not isinstance(item, dict) or not all(
            isinstance(item.get(field), str) for field in ("idempotency_key", "to", "text")
        ):
            return None
    return items


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    gateway: FakeSmsGateway

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up (a timeout in a test) are not worth a traceback."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    # Headers and body leave in one write, and without Nagle: two small writes would wait for
    # the client's delayed ACK (40 ms a request, ~2,000 messages a second at most).
    wbufsize = 64 * 1024
    server: _Server
    server_version = "FakeSmsGateway/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # --- plumbing ---

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        gateway = self.server.gateway
        with gateway._lock:
            gateway._connections.add(self.connection)

    def finish(self) -> None:
        gateway = self.server.gateway
        with gateway._lock:
            gateway._connections.discard(self.connection)
        with contextlib.suppress(OSError):  # a connection cut by go_down
            super().finish()

    def _reply(self, status: int, payload: object) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)  # buffered: sent with the headers when the request is done

    def _read_json(self) -> object:
        """The request body as JSON; ``...`` when it is not JSON (or too large)."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            return ...
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"null")
        except ValueError:
            return ...

    # --- routes ---

    def do_POST(self) -> None:
        payload = self._read_json()
        if self.path == BATCH_PATH:
            self._batch(payload)
        elif self.path == CONTROL_PATH:
            self._control(payload)
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": "not_found"})

    def do_GET(self) -> None:
        gateway = self.server.gateway
        if self.path == MESSAGES_PATH:
            self._reply(HTTPStatus.OK, gateway.messages)
        elif self.path == CONTROL_PATH:
            self._reply(HTTPStatus.OK, gateway.state())
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": "not_found"})

    def do_DELETE(self) -> None:
        if self.path == MESSAGES_PATH:
            self.server.gateway.reset()
            self._reply(HTTPStatus.OK, {"ok": True})
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": "not_found"})

    def _batch(self, payload: object) -> None:
        gateway = self.server.gateway
        failure, delay = gateway._take_batch(self.headers.get("Authorization"))
        if failure:
            if delay:
                time.sleep(delay)
            body = {"error": "injected_failure"}  # for 200: a body without "results"
            self._reply(failure, body)
            return
        items = _valid_batch(payload)
        if items is None:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "bad_request"})
            return
        results = gateway._accept(items)
        if delay:  # taken, answered late: a client timeout loses the answer, not the batch
            time.sleep(delay)
        gateway._wait_released()
        self._reply(HTTPStatus.OK, {"results": results})

    def _control(self, payload: object) -> None:
        gateway = self.server.gateway
        if not isinstance(payload, dict) or not payload.keys() <= {"fail_next", "status", "delay"}:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "bad_request"})
            return
        try:
            if "fail_next" in payload:
                gateway.fail_next(int(payload["fail_next"]), int(payload.get("status", 500)))
            if "delay" in payload:
                gateway.set_delay(float(payload["delay"]))
        except (TypeError, ValueError):
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "bad_request"})
            return
        self._reply(HTTPStatus.OK, gateway.state())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake SMS gateway (no authentication).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9090, help="0 picks a free port")
    parser.add_argument("--record", type=Path, help="append accepted messages as JSON lines")
    args = parser.parse_args(argv)
    gateway = FakeSmsGateway(args.host, args.port, record_file=args.record)
    print(f"Fake SMS gateway listening on {gateway.url}", flush=True)
    print(f"Point the app at it: SMS_GATEWAY_URL={gateway.url}", flush=True)
    try:
        gateway.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        gateway.stop()


if __name__ == "__main__":
    main()
