"""The status page at `/` of a running connector, loaded in headless Chromium.

The connector runs in-process against the real broker with a gated writer, so the lag
the page shows is fixed while Chromium looks; one record is poison, so the page has a
dead letter to show. Chromium runs the page's script (`--virtual-time-budget`) before the
DOM is dumped, so what is checked is the refreshed page, not only the server's rendering.
The screenshot is kept under `.local/artifacts/status-page.png`.
"""

from __future__ import annotations

import html
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from connectors.config.observability import HealthSettings
from harness.kafka import KafkaBroker, create_topic
from harness.kcat import produce
from harness.ports import free_port
from tests.conftest import ROOT, connector_command, connector_env
from tests.integration.test_health import GatedWriter, RunningConnector, http_get, pipeline_env
from tests.waiting import wait_for

ARTIFACT = ROOT / ".local" / "artifacts" / "status-page.png"
PNG = b"\x89PNG\r\n\x1a\n"


def chromium(*args: str, tmp: Path) -> str:
    """Headless Chromium's stdout for `args`; as root it needs --no-sandbox."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "Debian's chromium is not installed (scripts/setup installs it)"
    done = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={tmp / 'chromium'}",
            "--virtual-time-budget=5000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def rows(dom: str, table: str) -> list[list[str]]:
    """The cells of each row of `<tbody id=table>`, as text."""
    found = re.search(rf'<tbody id="{table}">(.*?)</tbody>', dom, re.S)
    assert found, f"no table {table} in the page"
    return [
        [
            html.unescape(re.sub(r"<[^>]+>", "", cell))
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        for row in re.findall(r"<tr>(.*?)</tr>", found.group(1), re.S)
    ]


def test_the_status_page_shows_pipeline_partitions_and_dead_letters(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic = name = f"page-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=2)
    env = pipeline_env(
        kafka,
        name,
        topic,
        tmp_path,
        TRANSFORM_MODULES="tests.fixtures.refuse",
        TRANSFORMS="refuse_poison",
    )
    writer = GatedWriter(open_=True)
    settings = HealthSettings(stuck_after_s=60, sample_interval_s=0.5, timeout_s=5.0)
    with RunningConnector(env, writer, health=settings) as connector:
        wait_for(lambda: len(connector.assignment()) == 2, timeout=60, what="both partitions")
        values = [b"v0", b"v1", b"poison", b"v3", b"v4"]
        produce(kafka.bootstrap, topic, [(0, f"a{n}".encode(), v) for n, v in enumerate(values)])
        produce(kafka.bootstrap, topic, [(1, f"b{n}".encode(), b"v") for n in range(5)])

        def caught_up() -> dict[str, Any] | None:
            _, body = connector.get("/healthz")
            lags = [(p["committed"], p["lag"]) for p in body["partitions"]]
            return body if lags == [(5, 0), (5, 0)] else None

        wait_for(caught_up, timeout=60, what="both partitions committed")
        # Work held at the gate: partition 1 is 5 behind while the page is looked at.
        writer.shut()
        produce(kafka.bootstrap, topic, [(1, f"c{n}".encode(), b"v") for n in range(5)])
        wait_for(lambda: writer.waiting, timeout=30, what="a batch at the gate")

        status, figures = connector.get("/status.json")
        assert status == 200 and figures["records"] == 10, figures
        [letter] = figures["dead_letters"]
        assert (letter["partition"], letter["offset"], letter["stage"]) == (
            0,
            2,
            "transform:refuse_poison",
        )

        url = f"http://127.0.0.1:{connector.port}/"
        status, served = http_get(url)
        assert status == 200 and 'id="partitions"' in served

        dom = chromium("--dump-dom", url, tmp=tmp_path)
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        ARTIFACT.unlink(missing_ok=True)
        chromium(f"--screenshot={ARTIFACT}", "--window-size=1100,800", url, tmp=tmp_path)

    assert 'data-refreshed="yes"' in dom, "the page's script did not refresh it"
    flow = re.search(r'<div class="flow" id="pipeline">(.*?)</div></div>', dom, re.S)
    assert flow, dom[:2000]
    for shown in (topic, "bytes", "refuse_poison (sync)", "kv"):
        assert shown in dom, f"{shown!r} missing from the page"
    partitions = rows(dom, "partitions")
    assert [(r[0], r[1], r[5]) for r in partitions] == [(topic, "0", "0"), (topic, "1", "5")]
    assert [r[2] for r in partitions] == ["idle", "progressing"]
    [dead] = rows(dom, "letters")
    assert (
        dead[1:5] == ["transform:refuse_poison", topic, "0", "2"]
        and "this record is poison" in dead[5]
    )
    image = ARTIFACT.read_bytes()
    assert image.startswith(PNG) and len(image) > 10_000, len(image)


def test_with_workers_the_parent_serves_the_page_of_every_worker(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic = name = f"pages-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=4)
    values = [b"poison" if (p, o) == (3, 1) else b"v" for p in range(4) for o in range(3)]
    produce(kafka.bootstrap, topic, [(n // 3, f"k{n}".encode(), v) for n, v in enumerate(values)])
    port = free_port()
    env = connector_env(
        **pipeline_env(kafka, name, topic, tmp_path),
        TRANSFORM_MODULES="tests.fixtures.refuse", TRANSFORMS="refuse_poison",
        WORKERS="2", METRICS_PORT=str(port), METRICS_HOST="127.0.0.1", PYTHONPATH=str(ROOT),
    )  # fmt: skip
    log = (tmp_path / "run.log").open("w")
    process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
        connector_command("run"), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log
    )
    try:

        def all_idle() -> dict[str, Any] | None:
            try:
                _, body = http_get(f"http://127.0.0.1:{port}/healthz")
            except OSError:
                return None
            parts = body.get("partitions") or []
            done = len(parts) == 4 and all(p["reason"] == "idle" for p in parts)
            return body if done and len(body.get("workers", [])) == 2 else None

        wait_for(all_idle, timeout=120, what="both workers caught up")
        status, figures = http_get(f"http://127.0.0.1:{port}/status.json")
        assert status == 200 and figures["records"] == 12, figures
        assert [t["type"] for t in figures["pipeline"]["topics"]] == ["bytes"]
        [letter] = figures["dead_letters"]
        assert (letter["partition"], letter["offset"]) == (3, 1), letter
        status, page = http_get(f"http://127.0.0.1:{port}/")
        assert status == 200, page
        assert len(rows(page, "partitions")) == 4
        assert rows(page, "letters")[0][1:5] == ["transform:refuse_poison", topic, "3", "1"]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
