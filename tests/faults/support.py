"""What every fault scenario needs: a known data set, connector processes, the writes they
made, the sink's content, and the verdict (produced, delivered, missing, duplicates)."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from harness.kafka import consumer_group_offsets, create_topic, run_sync
from harness.kcat import KEY_DELIMITER, RECORD_DELIMITER, end_offsets, produce
from tests.conftest import ROOT, connector_command, connector_env
from tests.waiting import wait_for

PARTITIONS = 12
LONG = 200_000  # records of the long scenarios
SESSION_TIMEOUT_MS = 10_000  # the group notices a killed member after this
PLUGINS = "tests.faults.plugins"
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


# ------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class Dataset:
    """`count` records with unique keys on `topic`: record i has key `k<i>` and a small
    value carrying i and 32 random bits (seeded by the topic name). `make_dataset` puts
    record i on partition i % 12 at offset i // 12; `LiveProducer` lets kcat's partitioner
    place them."""

    topic: str
    count: int
    partitions: int
    ends: dict[int, int]

    @staticmethod
    def key(i: int) -> bytes:
        return b"k%07d" % i

    @staticmethod
    def value(i: int, noise: int) -> bytes:
        return b"v%07d-%08x" % (i, noise)

    def expected(self) -> dict[bytes, bytes]:
        rng = random.Random(self.topic)
        return {self.key(i): self.value(i, rng.getrandbits(32)) for i in range(self.count)}


def make_dataset(bootstrap: str, topic: str, count: int, partitions: int = PARTITIONS) -> Dataset:
    """Create `topic` and produce records 0..count-1 into it with kcat."""
    create_topic(bootstrap, topic, partitions, replication_factor=3, timeout=60.0)
    rng = random.Random(topic)
    rows = [
        (i % partitions, Dataset.key(i), Dataset.value(i, rng.getrandbits(32)))
        for i in range(count)
    ]
    ends = produce(bootstrap, topic, rows, timeout=300.0)
    assert sum(ends.values()) == count, ends
    return Dataset(topic, count, partitions, dict(ends))


class LiveProducer:
    """Live traffic through a fault: one kcat (acks=all, idempotent, librdkafka's own
    retries) fed records `first`..`count`-1 at `rate` records/s from a thread, optionally
    holding at record `hold_at` until :meth:`release`, so that the rest flows only after
    the fault is over. Records before `first` are expected to be in the topic already
    (`make_dataset`), so that :meth:`finish` describes the whole set."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        count: int,
        *,
        rate: float,
        logs: Path,
        hold_at: int | None = None,
        first: int = 0,
        partitions: int = PARTITIONS,
    ) -> None:
        self.bootstrap = bootstrap
        self.first = first
        self.topic = topic
        self.count = count
        self.rate = rate
        self.hold_at = hold_at
        self.partitions = partitions
        self.log_path = logs / "kcat.stderr"
        self.sent = 0
        self.held_at: float | None = None
        self.released_at: float | None = None
        self._release = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> LiveProducer:
        create_topic(
            self.bootstrap, self.topic, self.partitions, replication_factor=3, exist_ok=True
        )
        cmd = [
            "kcat", "-P", "-F", "/dev/null", "-b", self.bootstrap, "-t", self.topic,
            "-D", RECORD_DELIMITER.decode(), "-K", KEY_DELIMITER.decode(),
            "-X", "acks=all", "-X", "enable.idempotence=true", "-X", "linger.ms=5",
            "-X", "message.timeout.ms=300000",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT
            )
        self._thread = threading.Thread(target=self._feed, name="live-producer", daemon=True)
        self._thread.start()
        return self

    def _feed(self) -> None:
        assert self._process is not None and self._process.stdin is not None
        rng = random.Random(self.topic)
        for _ in range(self.first):
            rng.getrandbits(32)  # records before `first` were produced by make_dataset
        began = time.monotonic()
        step = max(1, int(self.rate / 20))  # a chunk every 50 ms
        pause_s = 0.0
        try:
            for first in range(self.first, self.count, step):
                if self.hold_at is not None and first >= self.hold_at and self.held_at is None:
                    self.held_at = time.time()
                    held = time.monotonic()
                    self._release.wait(600)
                    pause_s += time.monotonic() - held
                chunk = b"".join(
                    Dataset.key(i) + KEY_DELIMITER + Dataset.value(i, rng.getrandbits(32))
                    + RECORD_DELIMITER
                    for i in range(first, min(first + step, self.count))
                )  # fmt: skip
                self._process.stdin.write(chunk)
                self._process.stdin.flush()
                self.sent = min(first + step, self.count)
                ahead = began + pause_s + (self.sent - self.first) / self.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)  # the traffic's pace, not synchronisation
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self._error = exc
        finally:
            try:
                self._process.stdin.close()
            except OSError as exc:  # kcat died: finish() reports its exit
                self._error = self._error or exc

    def release(self) -> None:
        self.released_at = time.time()
        self._release.set()

    def finish(self, timeout: float) -> Dataset:
        """Wait until kcat delivered everything; the topic must hold exactly `count`."""
        assert self._thread is not None and self._process is not None
        self._release.set()
        self._thread.join(timeout)
        if self._error is not None:
            raise AssertionError(f"feeding kcat failed: {self._error!r}")
        try:
            code = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"kcat still running after {timeout} s") from None
        log = self.log_path.read_text(errors="replace")
        assert code == 0 and "Delivery failed" not in log, f"kcat exited {code}:\n{log[-3000:]}"
        ends = end_offsets(self.bootstrap, self.topic, range(self.partitions))
        assert sum(ends.values()) == self.count, f"topic holds {ends}, sent {self.count}"
        return Dataset(self.topic, self.count, self.partitions, dict(ends))

    def cleanup(self) -> None:
        self._release.set()
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(30)


# ------------------------------------------------------------------ connector processes


def fault_env(
    bootstrap: str, data: Dataset, group: str, records: Path, **extra: str
) -> dict[str, str]:
    """A pass-through connector (bytes in, bytes out) writing through `recorded`."""
    settings = {
        "CONNECTOR_NAME": group,
        "TOPICS": data.topic,
        "TOPIC_SCHEMAS": f"{data.topic}=bytes",
        "TRANSFORM_MODULES": PLUGINS,
        "WRITER": "recorded",
        "RECORD_WRITER": "kv",
        "RECORD_DIR": str(records),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "LOG_FORMAT": "text",  # parsed below; JSON lines are understood too
        "KV_SYNC": "false",
        "BATCH_MAX_MESSAGES": "500",
        "BATCH_MAX_WAIT_MS": "200",
        "RETRY_INITIAL_MS": "200",
        "RETRY_MAX_MS": "2000",
        "PYTHONPATH": str(ROOT),
    }
    return connector_env(**{**settings, **extra})


class Connector:
    """One `connector run` subprocess; its stderr goes to a file, so nothing blocks."""

    def __init__(self, label: str, env: Mapping[str, str], logs: Path, *args: str) -> None:
        self.label = label
        self.env = {**env, "RECORD_LABEL": label}
        self.args = args or ("run",)
        self.log_path = logs / f"{label}.stderr"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ended_at: float | None = None

    def start(self) -> Connector:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                connector_command(*self.args), env=self.env, cwd=ROOT,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.started_at = time.time()
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> float:
        """SIGKILL; returns the wall time it was sent."""
        assert self.process is not None
        at = time.time()
        self.process.kill()
        self.process.wait(30)
        self.ended_at = at
        return at

    def terminate(self) -> float:
        """SIGTERM; returns the wall time it was sent."""
        assert self.process is not None
        at = time.time()
        self.process.send_signal(signal.SIGTERM)
        return at

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.label} did not exit within {timeout} s:\n{self.log_tail()}"
            ) from None
        self.ended_at = self.ended_at or time.time()
        return code

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def messages(self) -> list[tuple[float | None, str]]:
        """(wall time, message) of each log line, JSON (`LOG_FORMAT=json`) or text."""
        found: list[tuple[float | None, str]] = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                try:
                    entry = json.loads(line)
                except ValueError:
                    entry = None
                if isinstance(entry, dict) and "message" in entry:
                    ts = entry.get("ts")
                    at = dt.datetime.fromisoformat(ts).timestamp() if isinstance(ts, str) else None
                    found.append((at, str(entry["message"])))
                    continue
            match = _LOG_TIME.match(line)
            if match:
                stamp = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
                found.append((stamp.timestamp(), line))
            else:
                found.append((None, line))
        return found

    def count(self, needle: str) -> int:
        """Log messages containing `needle`."""
        return sum(1 for _, m in self.messages() if needle in m)

    def assigned(self) -> set[int]:
        """Partitions of its last `assigned [...]` log line."""
        lines = [m for _, m in self.messages() if "assigned [" in m]
        return {int(p) for p in re.findall(r"\[(\d+)\]'", lines[-1])} if lines else set()

    def log_times(self, needle: str) -> list[float]:
        """Wall times of the log lines containing `needle`."""
        return [at for at, m in self.messages() if at is not None and needle in m]

    def log_tail(self, lines: int = 40) -> str:
        return f"--- {self.label} ---\n" + "\n".join(self.log().splitlines()[-lines:])

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


def stop_all(connectors: Iterable[Connector], timeout: float = 90.0) -> None:
    """SIGTERM every connector at once; each must leave cleanly (exit 0)."""
    chosen = list(connectors)
    for connector in chosen:
        if connector.running():
            connector.terminate()
    for connector in chosen:
        code = connector.wait(timeout)
        assert code == 0, f"{connector.label} exited {code}:\n{connector.log_tail()}"


# ------------------------------------------------------------------------ the writes


@dataclass
class WriteBatchNote:
    at: float  # wall clock (time.time()) when the write returned
    label: str
    partitions: Counter[int]
    last_offsets: dict[int, int] = field(default_factory=dict)


@dataclass
class Writes:
    """Everything the `recorded` writers noted in one folder, read incrementally."""

    folder: Path
    seen: set[tuple[str, int, int]] = field(default_factory=set)
    total: int = 0
    batches: list[WriteBatchNote] = field(default_factory=list)
    _offsets: dict[Path, int] = field(default_factory=dict)

    def refresh(self) -> Writes:
        for path in sorted(self.folder.glob("*.log")):
            label = path.name.rsplit("-", 1)[0]
            with path.open("rb") as handle:
                handle.seek(self._offsets.get(path, 0))
                chunk = handle.read()
            end = chunk.rfind(b"\n") + 1
            self._offsets[path] = self._offsets.get(path, 0) + end
            note: WriteBatchNote | None = None
            for line in chunk[:end].decode().splitlines():
                if line.startswith("@ "):
                    _, at, _ = line.split()
                    note = WriteBatchNote(float(at), label, Counter())
                    self.batches.append(note)
                    continue
                topic, partition, offset = line.split()
                self.seen.add((topic, int(partition), int(offset)))
                self.total += 1
                if note is not None:
                    note.partitions[int(partition)] += 1
                    note.last_offsets[int(partition)] = max(
                        int(offset), note.last_offsets.get(int(partition), -1)
                    )
        self.batches.sort(key=lambda b: b.at)
        return self

    @property
    def unique(self) -> int:
        return len(self.seen)

    @property
    def duplicates(self) -> int:
        return self.total - self.unique

    def first_after(
        self,
        wall: float,
        *,
        label: str | None = None,
        label_in: Iterable[str] | None = None,
        partitions: Iterable[int] | None = None,
    ) -> float | None:
        """Wall time of the first write after `wall` (by `label` or one of `label_in`,
        touching `partitions`)."""
        wanted = set(partitions) if partitions is not None else None
        labels = {label} if label is not None else set(label_in or ())
        for note in self.batches:
            if note.at <= wall or (labels and note.label not in labels):
                continue
            if wanted is not None and not wanted & note.partitions.keys():
                continue
            return note.at
        return None

    def wait_first_after(
        self,
        wall: float,
        *,
        timeout: float,
        what: str,
        label: str | None = None,
        label_in: Iterable[str] | None = None,
        partitions: Iterable[int] | None = None,
    ) -> float:
        """:meth:`first_after`, waiting (up to `timeout`) until there is one."""
        labels = list(label_in) if label_in is not None else None
        wanted = list(partitions) if partitions is not None else None
        found: list[float] = []

        def seen() -> bool:
            at = self.refresh().first_after(wall, label=label, label_in=labels, partitions=wanted)
            if at is not None:
                found.append(at)
            return at is not None

        wait_for(seen, timeout=timeout, what=what, interval=0.05)
        return found[-1]

    def wait_first_write_of_each(
        self,
        partitions: Iterable[int],
        since: float,
        labels: Iterable[str],
        *,
        timeout: float,
        what: str,
    ) -> float:
        """:meth:`first_write_of_each`, waiting (up to `timeout`) until there is one."""
        wanted, chosen = list(partitions), list(labels)
        found: list[float] = []

        def seen() -> bool:
            at = self.refresh().first_write_of_each(wanted, since, chosen)
            if at is not None:
                found.append(at)
            return at is not None

        wait_for(seen, timeout=timeout, what=what, interval=0.05)
        return found[-1]

    def first_beyond(self, offsets: Mapping[int, int], since: float) -> dict[int, float]:
        """Per partition of `offsets`, when a record at or past that offset was first
        written after `since` (partitions never written so are left out)."""
        found: dict[int, float] = {}
        for note in self.batches:
            if note.at <= since:
                continue
            for partition, last in note.last_offsets.items():
                if partition in offsets and last >= offsets[partition]:
                    found.setdefault(partition, note.at)
        return found

    def first_write_of_each(
        self, partitions: Iterable[int], since: float, labels: Iterable[str]
    ) -> float | None:
        """When the last of `partitions` was first written after `since` by one of
        `labels` (None until all were)."""
        chosen = set(labels)
        firsts: dict[int, float] = {}
        for note in self.batches:
            if note.at > since and note.label in chosen:
                for partition in note.partitions:
                    firsts.setdefault(partition, note.at)
        wanted = set(partitions)
        if not wanted <= firsts.keys():
            return None
        return max(firsts[p] for p in wanted)


def wait_progress(
    writes: Writes,
    at_least: int,
    processes: Iterable[Connector],
    *,
    timeout: float,
    what: str,
) -> None:
    """Until `at_least` distinct records were written; fail early if every process exited."""
    chosen = list(processes)

    def reached() -> bool:
        if writes.refresh().unique >= at_least:
            return True
        if chosen and not any(p.running() for p in chosen):
            logs = "\n".join(p.log_tail() for p in chosen)
            raise AssertionError(f"every connector exited before {what}:\n{logs}")
        return False

    wait_for(reached, timeout=timeout, what=what, interval=0.05)


# ---------------------------------------------------------------------- group offsets


async def _committed_async(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        found = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: int(meta.offset) for tp, meta in found.items() if tp.topic == topic}


def committed_quick(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Committed offsets through an admin client: cheap enough to poll."""
    try:
        return run_sync(lambda: _committed_async(bootstrap, group, topic), 15.0)
    except Exception:  # noqa: BLE001 - brokers in the middle of a fault: "not yet"
        return {}


def wait_all_committed(
    bootstrap: str, group: str, data: Dataset, processes: Iterable[Connector], timeout: float
) -> float:
    """Until the group committed every partition's end offset; returns when (wall time)."""
    chosen = list(processes)

    def done() -> bool:
        if committed_quick(bootstrap, group, data.topic) == data.ends:
            return True
        if chosen and not any(p.running() for p in chosen):
            logs = "\n".join(p.log_tail() for p in chosen)
            raise AssertionError(f"every connector exited before committing everything:\n{logs}")
        return False

    wait_for(done, timeout=timeout, what=f"group {group} to commit {data.ends}", interval=0.5)
    return time.time()


def committed_by_tool(bootstrap: str, group: str, topic: str) -> dict[int, int | None]:
    """Committed offsets as Kafka's own ConsumerGroupCommand reports them."""
    table = consumer_group_offsets(bootstrap, group, timeout=180.0)
    return {p: c for (t, p), (c, _end) in table.items() if t == topic}


# --------------------------------------------------------------------------- the sink


def read_lmdb(path: Path) -> dict[bytes, bytes]:
    from writers.kv.lmdb_store import LmdbView
    from writers.kv.settings import KVSettings

    view = LmdbView(KVSettings(url=f"lmdb:{path}"))  # type: ignore[call-arg]
    try:
        return dict(view.items())
    finally:
        view.close()


def read_redis(url: str) -> dict[bytes, bytes]:
    from writers.kv.redis_store import RedisView
    from writers.kv.settings import KVSettings

    view = RedisView(KVSettings(url=url))  # type: ignore[call-arg]
    try:
        return dict(view.items())
    finally:
        view.close()


# -------------------------------------------------------------------------- verdicts


@dataclass
class Result:
    scenario: str
    writer: str
    produced: int
    delivered: int
    missing: int
    unexpected: int
    duplicates: int
    recovery: str
    committed_ok: bool
    notes: str = ""


def verdict(
    scenario: str,
    writer: str,
    expected: Mapping[bytes, bytes],
    sink: Mapping[bytes, bytes],
    writes: Writes,
    committed: Mapping[int, int | None],
    ends: Mapping[int, int],
    recovery: str,
    notes: str = "",
) -> Result:
    delivered = sum(1 for k, v in expected.items() if sink.get(k) == v)
    unexpected = sum(1 for k in sink if k not in expected)
    return Result(
        scenario=scenario,
        writer=writer,
        produced=len(expected),
        delivered=delivered,
        missing=len(expected) - delivered,
        unexpected=unexpected,
        duplicates=writes.refresh().duplicates,
        recovery=recovery,
        committed_ok=dict(committed) == dict(ends),
        notes=notes,
    )


def assert_result(
    result: Result, committed: Mapping[int, int | None], ends: Mapping[int, int]
) -> None:
    assert result.missing == 0, f"{result.missing} of {result.produced} records missing"
    assert result.unexpected == 0, f"{result.unexpected} keys in the sink were never produced"
    assert result.committed_ok, f"committed {dict(committed)} != end offsets {dict(ends)}"


def seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"max {max(values):.1f} s, mean {sum(values) / len(values):.1f} s"
