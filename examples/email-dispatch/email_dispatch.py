"""`render_email`: an email request → the email the mail API sends, rendered from its template.

Each `email.v1.EmailRequested` names a template of the template registry. The transform
fetches it (`GET $EMAIL_TEMPLATES_URL/templates/<id>`, JSON with `version`, `subject`,
`text` and optionally `html`) with the connector's shared client, `ctx.http`, keeps it
compiled in `ctx.cache` (TRANSFORM_CACHE_TTL_S), renders it with Jinja2 and returns an
`email.v1.Email` keyed by the email id. The HTTP writer then posts a partition's emails in
batches, each request under an idempotency key.

What happens to a record:

- the registry is down, slow or answers 5xx/408/429: `ctx.http` raises RetriableError, the
  record is tried again with the runner's backoff (nothing after it is committed meanwhile);
- the registry does not know the template (404, or any other 4xx), or the template does not
  compile: the record is poison (dead-lettered, `dlq.stage` = `transform:render_email`).
  That answer is cached like a template, so a burst of requests for a missing template does
  not turn into a burst of calls; a template published later is used once the entry expires;
- a variable the template uses is missing from the request: poison, naming the variable
  (StrictUndefined: an email is never sent with a hole in it).

Templates come from another team's service, so they are rendered in Jinja2's sandbox; the
HTML body is autoescaped, the subject and text are not.

Run it with `TRANSFORM_MODULES=email_dispatch` and this folder on `PYTHONPATH`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from connectors import ConfigError, PoisonError, Problem, Put, TransformContext, transform

NAME = "render_email"
STAGE = f"transform:{NAME}"
OUTPUT_TYPE = "email.v1.Email"


def registry_from(environ: Mapping[str, str]) -> str:
    """`EMAIL_TEMPLATES_URL`, checked when the module is imported (at `connector check` and
    before `run` connects to anything)."""
    value = environ.get("EMAIL_TEMPLATES_URL", "").strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            [
                Problem(
                    "EMAIL_TEMPLATES_URL",
                    "the http:// or https:// base URL of the template registry",
                    value or None,
                )
            ]
        )
    return value


REGISTRY = registry_from(os.environ)
"""Base URL of the template registry (`EMAIL_TEMPLATES_URL`)."""

_TEXT = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_HTML = SandboxedEnvironment(
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=True
)


@dataclass(frozen=True, slots=True)
class Template:
    """A registry template, compiled once per cache entry."""

    template_id: str
    version: int
    subject: jinja2.Template
    text: jinja2.Template
    html: jinja2.Template | None


@dataclass(frozen=True, slots=True)
class Unusable:
    """The registry's permanent answer for a template id (unknown, refused, broken)."""

    reason: str


def compile_template(template_id: str, document: Any) -> Template:
    """The registry's JSON as a Template; ValueError/TypeError/TemplateSyntaxError if it is
    not one."""
    if not isinstance(document, dict):
        raise TypeError(f"a JSON object, not {type(document).__name__}")
    html = document.get("html")
    return Template(
        template_id=template_id,
        version=int(document.get("version", 0)),
        subject=_TEXT.from_string(str(document["subject"])),
        text=_TEXT.from_string(str(document["text"])),
        html=_HTML.from_string(str(html)) if html else None,
    )


async def fetch(ctx: TransformContext, template_id: str) -> Template | Unusable:
    """The template from the registry. A retriable failure propagates (nothing is cached);
    a permanent one is returned as `Unusable`, to be cached like a template."""
    url = f"{REGISTRY}/templates/{quote(template_id, safe='')}"
    try:
        response = await ctx.http.get(url, headers={"Accept": "application/json"})
    except PoisonError as exc:  # 404 and other 4xx: ctx.http classified them
        return Unusable(f"template {template_id!r}: {exc}")
    if response.status_code != 200:
        return Unusable(f"template {template_id!r}: GET {url} answered {response.status_code}")
    try:
        return compile_template(template_id, response.json())
    except (ValueError, TypeError, KeyError, jinja2.TemplateError) as exc:
        return Unusable(f"template {template_id!r} is not usable: {type(exc).__name__}: {exc}")


@functools.cache
def email_class(request_type: Any) -> Any:
    """The `email.v1.Email` class of the descriptor pool the request was decoded with."""
    from google.protobuf import message_factory

    pool = request_type.file.pool
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(OUTPUT_TYPE))


def render(template: Template, variables: dict[str, str]) -> tuple[str, str, str]:
    """(subject, text, html); PoisonError naming the variable a template lacks."""
    try:
        subject = template.subject.render(variables).strip()
        text = template.text.render(variables)
        html = template.html.render(variables) if template.html is not None else ""
    except jinja2.UndefinedError as exc:
        raise PoisonError(
            STAGE,
            f"template {template.template_id!r} v{template.version}: missing variable "
            f"({exc.message})",
        ) from exc
    except jinja2.TemplateError as exc:  # a sandbox violation, a filter that failed
        raise PoisonError(
            STAGE, f"template {template.template_id!r} v{template.version}: {exc}"
        ) from exc
    return subject, text, html


@transform(NAME)
async def render_email(message: Any, ctx: TransformContext) -> Put:
    template_id = message.template_id
    if not message.email_id or not template_id or not message.recipient:
        raise PoisonError(STAGE, "an email request needs email_id, template_id and recipient")
    found = await ctx.cache.get(("email-template", template_id), lambda: fetch(ctx, template_id))
    if isinstance(found, Unusable):
        raise PoisonError(STAGE, found.reason)
    variables = dict(message.variables)
    variables.setdefault("recipient", message.recipient)
    subject, text, html = render(found, variables)
    email = email_class(message.DESCRIPTOR)(
        email_id=message.email_id,
        to=message.recipient,
        subject=subject,
        text=text,
        html=html,
        template_id=template_id,
        template_version=found.version,
    )
    return Put(message.email_id, email)
