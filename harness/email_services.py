"""The two services an email-dispatch connector talks to, as real servers on loopback.

- :class:`TemplateRegistry`: `GET /templates/<id>` answers the template as JSON (404 for
  an unknown one), or 503 to a chosen share of calls; it counts the calls per template, so a
  test can bound what the connector's cache let through.
- :class:`MailApi`: `POST /v1/emails` takes a JSON array of emails (each with an
  `email_id`). It answers 500 to a chosen share of requests, and stalls a chosen share
  (takes the emails, then answers only after `stall_s`, later than the client's timeout). It
  honours the idempotency header as real mail APIs do: a key it has answered 2xx gets that
  first answer again and its emails are not taken twice; a key whose first request is still
  being answered waits for that answer. A 500 is an answer it did not process: not
  remembered, the key may be sent again. It records each email id it took.

Both draw their faults from a `random.Random` they are given, so a run is repeatable (the
order in which concurrent requests draw is not). Both are the standard library's threading
HTTP/1.1 server, as `harness.http_sink`::

    with TemplateRegistry({"welcome": {...}}, unavailable=0.2) as registry, \\
         MailApi(failing=0.2, stalling=0.05, stall_s=2.0) as mail:
        registry.url(), mail.url()
        mail.accepted_ids(), mail.requests, registry.fetches
"""

from __future__ import annotations

import json
import random
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote

from harness.process import Service

__all__ = [
    "EmailEvents",
    "MailApi",
    "TemplateRegistry",
    "email_events",
    "sample_templates",
]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: _App


class _App(Service):
    """A threading HTTP server on loopback whose requests go to `answer`."""

    def __init__(self, rng: int | random.Random, host: str = "127.0.0.1") -> None:
        self._server = _Server((host, 0), _Handler)
        self._server.app = self
        self.host = host
        self.port: int = self._server.server_address[1]
        # Repeatable faults, no secret: the standard generator is the one wanted.
        self._rng = rng if isinstance(rng, random.Random) else random.Random(rng)  # noqa: S311
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def url(self, path: str = "") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(0.05,),
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _draw(self) -> float:
        with self._lock:
            return self._rng.random()

    def answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        raise NotImplementedError


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        return

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, content = self.server.app.answer(self.command, self.path, headers, body)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)
        except OSError:  # the client gave up (its timeout) while we stalled
            self.close_connection = True

    do_GET = _handle
    do_POST = _handle


def sample_templates(count: int = 12) -> dict[str, dict[str, Any]]:
    """`count` templates `tpl-00` ... using the variables `name` and `code` (and, for every
    third one, `plan` too), with a text and an HTML body."""
    templates = {}
    for n in range(count):
        extra = " on the {{ plan }} plan" if n % 3 == 0 else ""
        templates[f"tpl-{n:02d}"] = {
            "id": f"tpl-{n:02d}",
            "version": 1 + n % 4,
            "subject": f"[{n:02d}] Hello {{{{ name }}}}",
            "text": f"Hi {{{{ name }}}}, your code is {{{{ code }}}}{extra}.\n",
            "html": f"<p>Hi {{{{ name }}}}, your code is <b>{{{{ code }}}}</b>{extra}.</p>",
        }
    return templates


class TemplateRegistry(_App):
    """`GET /templates/<id>`: the template, 404 when unknown, 503 to `unavailable` of calls."""

    def __init__(
        self,
        templates: dict[str, dict[str, Any]],
        *,
        unavailable: float = 0.0,
        rng: int | random.Random = 0,
    ) -> None:
        super().__init__(rng)
        self.templates = dict(templates)
        self.unavailable = unavailable
        self.fetches: Counter[str] = Counter()
        """Calls per template id, whatever they were answered."""
        self.unavailable_answers = 0

    def answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        prefix = "/templates/"
        if method != "GET" or not path.startswith(prefix):
            return 404, b'{"error":"no such endpoint"}'
        template_id = unquote(path[len(prefix) :].split("?", 1)[0])
        with self._lock:
            self.fetches[template_id] += 1
        if self._draw() < self.unavailable:
            with self._lock:
                self.unavailable_answers += 1
            return 503, b'{"error":"registry unavailable"}'
        template = self.templates.get(template_id)
        if template is None:
            return 404, json.dumps({"error": f"no template {template_id}"}).encode()
        return 200, json.dumps(template).encode()

    @property
    def total_fetches(self) -> int:
        with self._lock:
            return sum(self.fetches.values())


@dataclass
class _Answer:
    """The first answer to one idempotency key; `ready` is set once it is final."""

    status: int = 0
    body: bytes = b""
    ready: threading.Event = field(default_factory=threading.Event)


class MailApi(_App):
    """`POST /v1/emails`: a JSON array of emails; see the module docstring."""

    path = "/v1/emails"

    def __init__(
        self,
        *,
        failing: float = 0.0,
        stalling: float = 0.0,
        stall_s: float = 2.0,
        idempotency_header: str = "Idempotency-Key",
        rng: int | random.Random = 0,
    ) -> None:
        super().__init__(rng)
        self.failing = failing
        self.stalling = stalling
        self.stall_s = stall_s
        self._header = idempotency_header.lower()
        self._answers: dict[str, _Answer] = {}
        self._accepted: list[str] = []
        self.requests = 0
        """Every POST received, whatever it was answered (repeats included)."""
        self.emails_received = 0
        """Emails in every POST received, repeats and refused requests included."""
        self.failed = 0
        self.stalled = 0
        self.repeats = 0
        self._first: Any = None

    def first_email(self) -> Any:
        """The first email taken, as it was posted (None before any)."""
        with self._lock:
            return self._first

    def accepted_ids(self) -> list[str]:
        """The email ids taken, in the order taken; an id taken twice appears twice."""
        with self._lock:
            return list(self._accepted)

    def answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        if method != "POST" or path.split("?", 1)[0] != self.path:
            return 404, b'{"error":"no such endpoint"}'
        key = headers.get(self._header)
        try:
            emails = json.loads(body)
            ids = [str(email["email_id"]) for email in emails]
        except (ValueError, TypeError, KeyError):
            return 400, b'{"error":"a JSON array of emails, each with an email_id"}'
        with self._lock:
            self.requests += 1
            self.emails_received += len(ids)
        if not key:
            return 400, json.dumps({"error": f"{self._header} header required"}).encode()
        with self._lock:
            first = self._answers.get(key)
            if first is None:
                first = self._answers[key] = _Answer()
                mine = True
            else:
                self.repeats += 1
                mine = False
        if not mine:
            first.ready.wait()
            return first.status, first.body
        return self._process(key, first, ids, emails[0] if emails else None)

    def _process(self, key: str, slot: _Answer, ids: list[str], sample: Any) -> tuple[int, bytes]:
        if self._draw() < self.failing:
            with self._lock:
                self.failed += 1
                del self._answers[key]  # not processed: the key may come again
            slot.status, slot.body = 500, b'{"error":"internal error"}'
            slot.ready.set()  # requests that waited on it get the same 500
            return slot.status, slot.body
        stall = self._draw() < self.stalling
        with self._lock:
            self._accepted.extend(ids)
            if self._first is None:
                self._first = sample
            if stall:
                self.stalled += 1
        slot.status, slot.body = 200, json.dumps({"accepted": len(ids)}).encode()
        if stall:
            time.sleep(self.stall_s)
        slot.ready.set()
        return slot.status, slot.body


EMAIL_DESCRIPTORS = Path(__file__).resolve().parent.parent / "examples/email-dispatch/email.binpb"


@dataclass(frozen=True)
class EmailEvents:
    """Email requests to produce, and which of them must (not) reach the mail API."""

    rows: list[tuple[int, bytes, bytes]]
    """(partition, key, value) in order; the key is the recipient."""
    valid: set[str]
    unknown_template: set[str]
    missing_variable: set[str]

    @property
    def bad(self) -> set[str]:
        return self.unknown_template | self.missing_variable


def email_events(
    count: int,
    *,
    partitions: int = 3,
    templates: dict[str, dict[str, Any]] | None = None,
    unknown_every: int = 100,
    missing_every: int = 100,
) -> EmailEvents:
    """`count` `email.v1.EmailRequested` events, ids `em-000000`...; one in `unknown_every`
    names a template the registry does not know (three such ids), one in `missing_every`
    lacks the variable `code` its template uses; the others render. Keyed by recipient,
    partitioned by a hash of it, so a recipient's emails keep their order."""
    from connectors.config.schemas import find_message_class, load_descriptor_set

    pool = load_descriptor_set(EMAIL_DESCRIPTORS)
    found = find_message_class("email.v1.EmailRequested", (pool,))
    if found is None:  # pragma: no cover - the descriptor set ships with the example
        raise RuntimeError(f"{EMAIL_DESCRIPTORS} lacks email.v1.EmailRequested")
    # A generated class takes its fields as keywords; the stubs type only the base class.
    requested: Callable[..., Any] = found
    ids = sorted(templates or sample_templates())
    rows: list[tuple[int, bytes, bytes]] = []
    valid: set[str] = set()
    unknown: set[str] = set()
    missing: set[str] = set()
    for n in range(count):
        email_id = f"em-{n:06d}"
        recipient = f"user{n % 701}@example.com"
        variables = {"name": f"User {n % 701}", "code": f"{n * 7919 % 1_000_000:06d}"}
        variables["plan"] = ("free", "pro", "business")[n % 3]
        template_id = ids[n % len(ids)]
        if unknown_every and n % unknown_every == unknown_every // 3:
            template_id = f"tpl-retired-{n % 3}"
            unknown.add(email_id)
        elif missing_every and n % missing_every == missing_every // 2:
            del variables["code"]
            missing.add(email_id)
        else:
            valid.add(email_id)
        message = requested(
            email_id=email_id,
            template_id=template_id,
            recipient=recipient,
            variables=variables,
            locale="en",
            requested_at_ms=1_767_225_600_000 + n * 1000,
        )
        key = recipient.encode()
        rows.append((zlib.crc32(key) % partitions, key, message.SerializeToString()))
    return EmailEvents(rows, valid, unknown, missing)
