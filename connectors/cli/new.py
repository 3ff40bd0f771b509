"""`connector new`: a connector repository from the cookiecutter template shipped with the runtime.

A team's only code is a transform; everything around it (the `.proto` and its descriptor
set, `.env.example`, Dockerfile, Kubernetes manifests, alert rules, CI) comes from
`templates/connector/`, so that every connector is deployed, scraped and paged on the same
way. The template is installed beside the `connectors` package (see `template_dir`), so this
works from a wheel or the runtime image as well as from a checkout; `cookiecutter
templates/connector` in a checkout gives the same result.

Answers are validated by the template's own pre-generation hook, so plain `cookiecutter`
refuses the same bad names as `connector new`. What may go wrong here: an answer the hook
rejects or a `key=value` that is not one (`ConfigError`, exit 2); a target directory that
already exists or a template missing from the installation (`FatalError`, exit 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path
from typing import Any

from connectors.core.errors import ConfigError, FatalError, Problem

DISTRIBUTION = "kafka-connectors"
ANSWERS = ("connector_name", "topics", "writer", "transform_name", "protobuf_message")
"""The questions the template asks; anything else in the template is derived from these."""


def template_dir() -> Path:
    """`templates/connector` beside the `connectors` package.

    In a checkout (or an editable install) that is the repository's folder; in a wheel the
    template is installed as package data at the same relative place in site-packages.
    """
    return Path(__file__).resolve().parents[2] / "templates" / "connector"


def parse_answers(items: Sequence[str]) -> dict[str, str]:
    """`key=value` arguments (cookiecutter's extra context) → answers; raise ConfigError."""
    answers: dict[str, str] = {}
    problems: list[Problem] = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(Problem("new", "key=value arguments", item))
        elif key not in ANSWERS:
            problems.append(Problem(key, f"one of the template's questions: {', '.join(ANSWERS)}"))
        else:
            answers[key] = value.strip()
    if problems:
        raise ConfigError(problems)
    return answers


def _runtime_version() -> str | None:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return None


def runtime_spec() -> str | None:
    """Where the generated repository's CI gets the runtime: the source this runtime was
    installed from (PEP 610's direct_url.json: a git URL at its commit, or a local path),
    so a runtime that no package index serves is still found; None (the template's default,
    a version on the index) for a runtime installed from an index."""
    try:
        raw = distribution(DISTRIBUTION).read_text("direct_url.json")
    except PackageNotFoundError:
        return None
    if not raw:
        return None
    try:
        origin = json.loads(raw)
        url = str(origin["url"])
    except (ValueError, KeyError, TypeError):
        return None
    vcs = origin.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("vcs") == "git":
        commit = vcs.get("commit_id") or vcs.get("requested_revision")
        return f"{DISTRIBUTION} @ git+{url}" + (f"@{commit}" if commit else "")
    return f"{DISTRIBUTION} @ {url}"


@contextlib.contextmanager
def _quiet_cookiecutter() -> Iterator[None]:
    """Cookiecutter logs a traceback when a hook refuses the answers; the hook already said
    why on stderr, and the error is reported once by the caller."""
    logger = logging.getLogger("cookiecutter")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def generate(
    answers: Mapping[str, str],
    output_dir: Path,
    *,
    no_input: bool,
    template: Path | None = None,
    config_file: Path | None = None,
) -> Path:
    """Render the template into `output_dir`; return the new repository's path.

    `config_file` is a cookiecutter user config (tests point it at a temporary replay
    folder); None uses cookiecutter's defaults, as its own CLI does.
    """
    try:
        from cookiecutter.exceptions import (  # type: ignore[import-untyped]
            CookiecutterException,
            FailedHookException,
            OutputDirExistsException,
        )
        from cookiecutter.main import cookiecutter  # type: ignore[import-untyped]
    except ImportError as exc:
        raise FatalError(
            f"`connector new` needs cookiecutter: pip install '{DISTRIBUTION}[new]' ({exc})"
        ) from exc

    source = template or template_dir()
    if not (source / "cookiecutter.json").is_file():
        raise FatalError(
            f"no connector template at {source}: reinstall {DISTRIBUTION} "
            "(the template ships inside the package)"
        )
    context: dict[str, Any] = dict(answers)
    runtime_version = _runtime_version()
    if runtime_version is not None:
        context["__runtime_version"] = runtime_version
    spec = runtime_spec()
    if spec is not None:
        context["__runtime_spec"] = spec
    try:
        with _quiet_cookiecutter():
            created = cookiecutter(
                str(source),
                no_input=no_input,
                extra_context=context,
                output_dir=str(output_dir),
                config_file=None if config_file is None else str(config_file),
            )
    except FailedHookException as exc:
        raise ConfigError(
            [Problem("new", "answers the template accepts (the lines above say which)")]
        ) from exc
    except OutputDirExistsException as exc:
        raise FatalError(f"{exc}: choose another name or --output-dir") from exc
    except ValueError as exc:  # a choice answer outside its choices
        raise ConfigError([Problem("new", str(exc))]) from exc
    except CookiecutterException as exc:
        raise FatalError(f"the template failed: {exc}") from exc
    return Path(created)


def handler(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    answers = parse_answers(args.answers)
    created = generate(answers, Path(args.output_dir), no_input=args.no_input)
    print(created)
    print(
        f"next: cd {created} && make demo KAFKA_BOOTSTRAP_SERVERS=<host:port>  "
        "(README.md: run locally, deploy, on call)",
        file=sys.stderr,
    )
    return 0


def add_parser(subparsers: Any) -> None:
    """Register `new` on the `connector` command's subparsers."""
    new = subparsers.add_parser(
        "new",
        help="create a connector repository from the template",
        description=(
            "Create a connector repository: a transform to fill in, its .proto, tests, "
            "Dockerfile, Kubernetes manifests, alert rules and CI. Prints the new path."
        ),
    )
    new.add_argument(
        "--no-input",
        action="store_true",
        help="ask nothing: use key=value answers and the template's defaults",
    )
    new.add_argument(
        "--output-dir",
        default=".",
        help="where to create the repository (default: the current directory)",
    )
    new.add_argument(
        "answers",
        nargs="*",
        metavar="key=value",
        help=f"answers given up front: {', '.join(ANSWERS)}",
    )
    new.set_defaults(handler=handler)
