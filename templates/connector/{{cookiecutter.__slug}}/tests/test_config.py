"""`.env.example` is a configuration the runtime accepts, as `connector check` sees it.

`connector check` validates everything a deployment can get wrong (variables, the transform
name, the topic → type bindings against the descriptor set) without connecting anywhere, so
a broken `.env.example`, a renamed message or a lost entry point fails here, not at 3 a.m.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def test_connector_check_accepts_the_example_environment() -> None:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env.update(env_example())
    installed = {ep.name for ep in entry_points(group="connectors.transforms")}
    if "{{ cookiecutter.transform_name }}" not in installed:  # not installed: from src/, as `make run`
        env["PYTHONPATH"] = str(ROOT / "src")
        env["TRANSFORM_MODULES"] = "{{ cookiecutter.__package }}.transform"

    done = subprocess.run(
        [sys.executable, "-m", "connectors.cli", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "{{ cookiecutter.__first_topic }} -> {{ cookiecutter.protobuf_message }}" in done.stdout
    assert "{{ cookiecutter.transform_name }}" in done.stdout
