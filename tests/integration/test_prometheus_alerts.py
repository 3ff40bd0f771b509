"""A real Prometheus (Debian's) scrapes a running connector and evaluates the shipped
rules, with windows shortened: a blocked writer makes ConnectorPartitionStuck fire, and
releasing it clears the alert. The scraped series also show a run as it happened."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.config.observability import HealthSettings
from connectors.observability import alerts
from harness.kafka import KafkaBroker, create_topic
from harness.kcat import produce
from harness.ports import free_port
from tests.integration.test_health import GatedWriter, RunningConnector, http_get, pipeline_env
from tests.waiting import wait_for

# Rules as shipped, but judged over seconds instead of minutes.
FAST = alerts.Windows(stuck="6s", stuck_for="1s", lag_growing="30s", no_commit="60s", rate="30s")


class Prometheus:
    """`prometheus` on a free loopback port, scraping `target` every second."""

    def __init__(self, directory: Path, target: str, rules: str) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus not found: apt-get install prometheus (scripts/setup does)"
        self.port = free_port()
        (directory / "rules.yml").write_text(rules)
        (directory / "prometheus.yml").write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(directory / "rules.yml")],
                    "scrape_configs": [
                        {"job_name": "connector", "static_configs": [{"targets": [target]}]}
                    ],
                }
            )
        )
        self._log = (directory / "prometheus.log").open("wb")
        self._process = subprocess.Popen(
            [
                binary,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._log_path = directory / "prometheus.log"

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = http_get(f"http://127.0.0.1:{self.port}{path}{query}")
        assert status == 200, body
        return json.loads(body) if isinstance(body, str) else body

    def ready(self) -> bool:
        assert self._process.poll() is None, self._log_path.read_text()[-4000:]
        try:
            status, _ = http_get(f"http://127.0.0.1:{self.port}/-/ready")
        except OSError:
            return False
        return status == 200

    def value(self, expr: str) -> float | None:
        result = self.api("/api/v1/query", query=expr)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def alerts(self, name: str, connector: str) -> list[dict[str, Any]]:
        found = self.api("/api/v1/alerts")["data"]["alerts"]
        return [
            a
            for a in found
            if a["labels"]["alertname"] == name and a["labels"].get("connector") == connector
        ]

    def close(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=30)
        self._log.close()


@pytest.fixture
def started_prometheus(tmp_path: Path) -> Iterator[list[Prometheus]]:
    """Holds the Prometheus a test starts (its target is known only then) and stops it."""
    started: list[Prometheus] = []
    try:
        yield started
    finally:
        for server in started:
            server.close()


def test_stuck_alert_fires_in_prometheus_while_the_writer_is_blocked_and_clears_after(
    kafka: KafkaBroker,
    unique: str,
    tmp_path: Path,
    started_prometheus: list[Prometheus],
) -> None:
    topic, name = f"alerting-{unique}", f"alerting-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    produce(kafka.bootstrap, topic, [(0, f"k{n}".encode(), b"v") for n in range(10)])
    writer = GatedWriter(open_=True)
    settings = HealthSettings(stuck_after_s=3, sample_interval_s=0.5, timeout_s=5)
    selector = f'{{connector="{name}"}}'
    with RunningConnector(
        pipeline_env(kafka, name, topic, tmp_path), writer, health=settings
    ) as connector:
        prometheus = Prometheus(
            tmp_path, f"127.0.0.1:{connector.port}", alerts.render(alerts.rules(name, FAST))
        )
        started_prometheus.append(prometheus)
        wait_for(prometheus.ready, timeout=60, what="prometheus ready")

        # A run, as scraped: everything committed, lag 0, stage histograms counted.
        wait_for(
            lambda: prometheus.value(f"connector_committed_offset{selector}") == 10,
            timeout=60,
            what="committed offset 10 scraped",
        )
        assert prometheus.value(f"connector_consumer_lag{selector}") == 0
        for stage in ("poll", "decode", "transform", "write", "commit"):
            count = prometheus.value(
                f'connector_stage_seconds_count{{connector="{name}",stage="{stage}"}}'
            )
            assert count is not None and count >= 1, stage
        assert prometheus.value(f"connector_records_in_total{selector}") == 10

        # The writer blocks; ten more records wait behind an unmoving committed offset.
        writer.shut()
        produce(kafka.bootstrap, topic, [(0, f"k{n}".encode(), b"v") for n in range(10, 20)])
        firing = wait_for(
            lambda: [
                a
                for a in prometheus.alerts("ConnectorPartitionStuck", name)
                if a["state"] == "firing"
            ],
            timeout=90,
            what="ConnectorPartitionStuck firing",
        )
        labels = firing[0]["labels"]
        assert (labels["topic"], labels["partition"], labels["severity"]) == (topic, "0", "page")
        assert float(firing[0]["value"]) == 10  # records behind, the whole window
        assert writer.waiting == 1
        status, body = connector.get("/healthz")
        assert status == 503 and body["partitions"][0]["reason"] == "stuck"

        # Released: the connector commits, catches up, and the alert goes away.
        writer.open()
        wait_for(
            lambda: not prometheus.alerts("ConnectorPartitionStuck", name),
            timeout=90,
            what="ConnectorPartitionStuck cleared",
        )
        wait_for(
            lambda: prometheus.value(f"connector_committed_offset{selector}") == 20,
            timeout=60,
            what="committed offset 20 scraped",
        )
        assert prometheus.value(f"connector_consumer_lag{selector}") == 0
        assert prometheus.value(f"connector_records_in_total{selector}") == 20
        assert not prometheus.alerts("ConnectorWriterFailing", name)
