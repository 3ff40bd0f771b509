"""A real S3-compatible server for tests: S3Proxy from Maven Central, on loopback.

S3Proxy (`org.gaul:s3proxy`) speaks the S3 REST API with SigV4 authentication in front of
a jclouds blob store; here the `filesystem-nio2` store, so a bucket is a folder and every
object a file under :attr:`S3ProxyServer.data_dir`. That gives tests two independent views
of what a writer stored: the S3 API, and the files themselves.

The jars are fetched once by Maven into ``~/.cache/connectors/s3proxy-<version>/libs``
with the same lock as the Kafka jars, then run with the machine's Java (17 or newer).

Command line::

    python -m harness.s3 fetch          # prints the libs folder
"""

from __future__ import annotations

import contextlib
import http.client
import re
import secrets
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from harness.kafka import _cache_root, copy_dependencies, fetch_once, maven_pom
from harness.ports import free_port
from harness.process import ServerProcess, tail

__all__ = ["DEFAULT_VERSION", "AnswerHold", "S3ProxyError", "S3ProxyServer", "fetch_s3proxy"]

DEFAULT_VERSION = "3.0.0"
MAIN_CLASS = "org.gaul.s3proxy.Main"
REGION = "us-east-1"


class S3ProxyError(RuntimeError):
    """S3Proxy could not be fetched or did not answer; the message carries its log."""


def _version_dir(version: str) -> Path:
    return _cache_root() / f"s3proxy-{version}"


def _pom(version: str) -> str:
    return maven_pom("s3proxy-jars", [("org.gaul", "s3proxy", version)])


def fetch_s3proxy(version: str = DEFAULT_VERSION, *, timeout: float = 900.0) -> Path:
    """The folder holding S3Proxy's jar and its runtime dependencies, fetched on first use.

    As for Kafka, the marker is written only once the folder is complete, so an
    interrupted fetch is redone and a finished one never touches the network again.
    """

    def fill(work: Path) -> str:
        failure = copy_dependencies(_pom(version), work, work / "libs", timeout)
        if failure is None and not (work / "libs" / f"s3proxy-{version}.jar").exists():
            failure = f"no s3proxy-{version}.jar among the fetched jars"
        if failure is not None:
            raise S3ProxyError(f"fetching S3Proxy {version}: {failure}")
        return f"s3proxy {version}"

    return fetch_once(_version_dir(version), fill)


_REQUEST_LINE = re.compile(rb"((?:GET|PUT|POST|HEAD|DELETE) /\S*) HTTP/1\.1\r\n")

_LOGBACK = """<configuration>
  <appender name="out" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d %level %logger: %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="out"/></root>
</configuration>
"""


class S3ProxyServer(ServerProcess):
    """One S3Proxy on a loopback port, SigV4 with a random key pair, path-style only.

    :meth:`env` gives the variables a connector needs to write to it.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        port: int | None = None,
        version: str = DEFAULT_VERSION,
        start_timeout: float = 90.0,
    ) -> None:
        super().__init__(
            None if directory is None else Path(directory),
            prefix="s3proxy-",
            start_timeout=start_timeout,
        )
        self.port = port or free_port()
        self.version = version
        self.access_key = "AK" + secrets.token_hex(8).upper()
        self.secret_key = secrets.token_urlsafe(30)
        self.region = REGION

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "s3proxy.log"

    def env(self, bucket: str) -> dict[str, str]:
        """What a connector's environment needs to write into `bucket` on this server."""
        return {
            "S3_BUCKET": bucket,
            "S3_ENDPOINT_URL": self.endpoint,
            "S3_REGION": self.region,
            "S3_ADDRESSING_STYLE": "path",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def create_bucket(self, name: str) -> None:
        """With the filesystem store a bucket is a folder; S3Proxy lists it at once."""
        (self.data_dir / name).mkdir(parents=True, exist_ok=True)

    def files(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """Every object under `prefix` as stored on disk, by key: a view of what was
        written that shares no code with any S3 client."""
        root = self.data_dir / bucket
        found: dict[str, bytes] = {}
        for path in sorted(root.rglob("*")):
            if not path.is_file():
                continue
            key = path.relative_to(root).as_posix()
            if key.startswith(prefix) and not path.name.startswith("."):
                found[key] = path.read_bytes()
        return found

    def _write_config(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.directory / "logback.xml").write_text(_LOGBACK, encoding="utf-8")
        config = self.directory / "s3proxy.conf"
        config.write_text(
            "\n".join(
                [
                    f"s3proxy.endpoint={self.endpoint}",
                    "s3proxy.authorization=aws-v2-or-v4",
                    f"s3proxy.identity={self.access_key}",
                    f"s3proxy.credential={self.secret_key}",
                    "jclouds.provider=filesystem-nio2",
                    f"jclouds.filesystem.basedir={self.data_dir}",
                ]
            )
            + "\n",
            encoding="utf-8",
        )
        return config

    def start(self) -> S3ProxyServer:
        """Start S3Proxy and return once it answers HTTP on its port."""
        if self.is_running():
            return self
        libs = fetch_s3proxy(self.version)
        config = self._write_config()
        cmd = [
            "java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            f"-Dlogback.configurationFile={self.directory / 'logback.xml'}",
            "-cp", f"{libs}/*", MAIN_CLASS, "--properties", str(config),
        ]  # fmt: skip
        self._launch(cmd, output=self.log_path)
        return self

    def _answers(self) -> bool:
        """Any HTTP answer counts: an unsigned request gets 403, which proves the S3
        front end is up."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2.0)
        try:
            conn.request("GET", "/")
            return conn.getresponse().status > 0
        except OSError:
            return False
        finally:
            conn.close()

    def _wait_until_answering(self) -> None:
        self._poll(self._answers, S3ProxyError, f"on {self.endpoint}")

    def diagnostics(self) -> str:
        return tail(self.log_path, 60)


class AnswerHold:
    """A TCP relay in front of a server that, once :meth:`hold` is called, stops passing
    the server's answers back while still forwarding every request.

    It opens the one window a crash test of an idempotent writer must hit: the server
    has stored the data, the writer has not heard so, and nothing was committed. It also
    notes each HTTP request line it forwards (:attr:`requests`, e.g. ``"POST /b/k?uploads"``),
    so a test can see which S3 operations a client used.
    """

    def __init__(self, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self.upstream = (host, upstream_port)
        self._listener = socket.create_server((host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._holding = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.withheld_bytes = 0
        self.requests: list[str] = []
        threading.Thread(target=self._accept, name="answer-hold", daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hold(self) -> None:
        self._holding.set()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        tail = b""
        try:
            while chunk := source.recv(65536):
                if not answers:
                    tail = self._note_requests(tail, chunk)
                if answers and self._holding.is_set():
                    with self._lock:
                        self.withheld_bytes += len(chunk)
                    continue
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            if not (answers and self._holding.is_set()):
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)

    def _note_requests(self, tail: bytes, chunk: bytes) -> bytes:
        """Request lines in the stream, also those split between two reads."""
        text = tail + chunk
        for found in _REQUEST_LINE.finditer(text):
            if found.end() > len(tail):
                with self._lock:
                    self.requests.append(found.group(1).decode("ascii", "replace"))
        return text[-512:]

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["fetch"]:
        print("usage: python -m harness.s3 fetch", file=sys.stderr)
        return 2
    try:
        print(fetch_s3proxy())
    except S3ProxyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
