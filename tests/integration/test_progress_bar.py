"""`connector run --until-caught-up` on a terminal draws a progress bar (records, rate, ETA);
off a terminal it writes the plain lines that scripts and log stores read. The terminal is
a real pseudo-terminal (`pty`), the broker the real one."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
from pathlib import Path

from harness.kafka import KafkaBroker
from harness.kcat import produce
from harness.samples import zone_events
from tests.conftest import ROOT, connector_command, run_connector
from tests.integration.test_runner_kafka import committed, edge_env

COUNT = 3000
_COLOURS = re.compile(r"\x1b\[[0-9;]*m")
_MOVES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def _on_a_terminal(env: dict[str, str], timeout: float = 120.0) -> tuple[int, str]:
    """Run the connector with stdout and stderr on a pty; its exit code and what it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    process = subprocess.Popen(
        connector_command("run", "--until-caught-up"),
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    drawn = bytearray()
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every end of the terminal closed, the process is done
                break
            if not chunk:
                break
            drawn.extend(chunk)
        code = process.wait(timeout=timeout)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    return code, drawn.decode("utf-8", "replace")


def test_a_terminal_gets_a_bar_with_records_and_rate(
    kafka: KafkaBroker, topic: str, unique: str, tmp_path: Path
) -> None:
    events = list(zone_events(COUNT, partitions=3))
    ends = produce(kafka.bootstrap, topic, [(e.partition, e.key, e.value) for e in events])
    group = f"bar-{unique}"
    env = edge_env(kafka, topic, group, tmp_path / "kv", LOG_FORMAT="text", TERM="xterm")
    code, drawn = _on_a_terminal(env)
    text = _MOVES.sub("\n", _COLOURS.sub("", drawn))
    assert code == 0, text
    assert "━" in drawn, "a bar was drawn"
    assert re.search(rf"caught up .*{COUNT}/{COUNT} records", text), text
    assert re.search(r"[\d,]+ records/s", text), text
    assert "ETA" in text
    assert f"caught up: {COUNT}/{COUNT} records" in text  # the final line, kept
    assert committed(kafka, group, topic) == ends


def test_off_a_terminal_the_plain_lines_stay(
    kafka: KafkaBroker, topic: str, unique: str, tmp_path: Path
) -> None:
    events = list(zone_events(300, partitions=3))
    produce(kafka.bootstrap, topic, [(e.partition, e.key, e.value) for e in events])
    env = edge_env(kafka, topic, f"lines-{unique}", tmp_path / "kv", LOG_FORMAT="text")
    done = run_connector("run", "--until-caught-up", env=env)
    assert done.returncode == 0, done.stderr
    assert "caught up: 300/300 records" in done.stderr
    assert "━" not in done.stderr and "\x1b[" not in done.stderr
