"""Settings and the resolved pipeline as `connector check` prints them: one block per
component, one `NAME=value` per line.

Values are shown as an operator writes them, not as Python prints them: `unset` (never
`None`), `true`/`false`, lists comma-separated, numbers without a trailing `.0`. A secret is
only `set` or `unset`, and a password in a URL is masked. A value the environment did not
set is marked `(default)`, so an operator sees at once which variables the deployment sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from connectors.config.settings import Settings, env_name, is_secret, mask_url

if TYPE_CHECKING:
    from connectors.config.pipeline import Pipeline

__all__ = ["blocks", "describe", "setting_lines", "value_text"]

INDENT = "  "


def value_text(value: Any, *, secret: bool = False) -> str:
    """One value as an operator would write it in the environment."""
    if secret:
        present = value.get_secret_value() if isinstance(value, SecretStr) else value
        return "set" if present else "unset"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list | frozenset | set):
        return ",".join(value_text(item) for item in value) or "unset"
    text = str(value)
    return mask_url(text) if text else "''"


def setting_lines(
    settings: BaseSettings,
    *,
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    overrides: Mapping[str, str] | None = None,
) -> list[str]:
    """`NAME=value` per variable of `settings`, in the model's order; `only`/`skip` pick
    fields by name; `overrides` (by variable) replace a value's text (derived values, the
    effective group id). A value the environment did not set is marked `(default)`."""
    model = type(settings)
    chosen = set(only) if only is not None else set(model.model_fields)
    chosen -= set(skip)
    derived = dict(settings.shown_values()) if isinstance(settings, Settings) else {}
    derived.update(overrides or {})
    lines = []
    for field in model.model_fields:
        if field not in chosen:
            continue
        variable = env_name(model, field)
        value = getattr(settings, field)
        secret = is_secret(model, field)
        text = derived.get(variable) or value_text(value, secret=secret)
        defaulted = field not in settings.model_fields_set
        if defaulted and not secret and not text.startswith("unset"):
            text = f"{text} (default)"
        lines.append(f"{variable}={text}")
    return lines


def describe(settings: BaseSettings) -> str:
    """Any settings model as `connector check` shows it (a plugin's own `describe`)."""
    return "\n".join(_settings_block(settings))


def _settings_block(settings: BaseSettings) -> list[str]:
    """A settings model's lines: its own `describe` when a plugin overrides it."""
    text = settings.describe() if isinstance(settings, Settings) else ""
    return text.splitlines() if text else setting_lines(settings)


def _block(title: str, head: str, lines: Iterable[str] = ()) -> list[str]:
    """`title: head`, then one indented line each."""
    label = f"{title}:"
    first = f"{label:<10} {head}" if head else label
    return [first, *(INDENT + line for line in lines)]


def blocks(pipeline: Pipeline) -> str:
    """The resolved pipeline, one block per component, for `connector check`."""
    runtime, kafka = pipeline.runtime, pipeline.kafka
    out: list[str] = []
    out += _block("connector", pipeline.name, setting_lines(runtime, skip=_ELSEWHERE))
    out += _block("topics", "", [f"{t} -> {s.type_name}" for t, s in pipeline.schemas.items()])
    group = {"KAFKA_GROUP_ID": f"unset -> group {pipeline.group_id}"} if not kafka.group_id else {}
    if pipeline.reader_settings is kafka:
        out += _block("reader", pipeline.reader.name, setting_lines(kafka, overrides=group))
    else:
        out += _block("reader", pipeline.reader.name, _settings_block(pipeline.reader_settings))
        out += _block("kafka", "", setting_lines(kafka, overrides=group))
    steps = zip(pipeline.chain.names, pipeline.chain.kinds, strict=True)
    chain = " -> ".join(f"{name} ({kind})" for name, kind in steps) or "(pass-through)"
    transform = setting_lines(pipeline.transform) if pipeline.chain.steps else []
    out += _block("transforms", chain, transform)
    out += _block("writer", pipeline.writer.name, _settings_block(pipeline.writer_settings))
    out += _block("dead letters", *_dead_letters(pipeline))
    out += _block("retry", "", [*setting_lines(pipeline.retry), *setting_lines(pipeline.shutdown)])
    out += _block(
        "observability",
        "",
        [
            *setting_lines(runtime, only=("metrics_port", "metrics_host", "log_level")),
            *setting_lines(pipeline.logging),
            *setting_lines(pipeline.health),
            *setting_lines(pipeline.tracing),
        ],
    )
    return "\n".join(out)


#: RuntimeSettings fields shown in another block than `connector`.
_ELSEWHERE = ("on_error", "metrics_port", "metrics_host", "log_level")


def _dead_letters(pipeline: Pipeline) -> tuple[str, list[str]]:
    dlq = pipeline.dead_letter
    runtime = setting_lines(pipeline.runtime, only=("on_error",))
    if pipeline.runtime.on_error != "dlq":
        return "none: stop at the first poison record", runtime
    topic = {"DLQ_TOPIC": f"unset -> {pipeline.dlq_topic}"} if not dlq.topic else {}
    head = (
        f"to {pipeline.dlq_topic} (stop if more than {dlq.max_ratio:.0%} of the last "
        f"{dlq.window} records)"
    )
    return head, [*runtime, *setting_lines(dlq, overrides=topic)]
