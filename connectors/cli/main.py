"""`connector`: check a configuration, run a pipeline, read a key-value store back.

Exit codes: 0 done (also after SIGTERM), 1 fatal error at run time, 2 invalid configuration
(nothing was connected).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from connectors.cli import check, config_table, kv, produce, supervisor, topics, workers
from connectors.cli import dlq as replay
from connectors.cli import new as scaffold
from connectors.cli import status as group_status
from connectors.config.observability import HealthSettings
from connectors.config.pipeline import Pipeline, resolve
from connectors.core.errors import ConfigError, ConnectorError, FatalError
from connectors.observability import alerts, health, logs, metrics, progress_bar, tracing
from connectors.runtime.gc_tuning import tune_after_start_up
from connectors.runtime.runner import Runner
from connectors.runtime.shutdown import Watchdog
from connectors.runtime.stopping import run_until_stopped

EXIT_OK, EXIT_FATAL, EXIT_CONFIG = 0, 1, 2


def _fail_config(error: ConfigError) -> int:
    for problem in error.problems:
        print(f"config error: {problem}", file=sys.stderr)
    return EXIT_CONFIG


def cmd_run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    pipeline = resolve(environ)
    link = workers.current()
    if link is None and pipeline.runtime.workers > 1:
        return supervisor.supervise(pipeline, environ, until_caught_up=args.until_caught_up)
    log_settings, health_settings = pipeline.logging, pipeline.health
    logs.setup(pipeline.runtime.log_level, pipeline.name, log_settings)
    metrics.BUILD.info(metrics.build_info(pipeline.name, __package__ or "connectors"))
    tracing.configure(pipeline.tracing, pipeline.name)

    # A progress bar on a terminal, the plain catch-up lines otherwise.
    report = progress_bar.reporter(sys.stderr)

    # SIGTERM and SIGINT are taken by a thread, so they stop the connector within
    # SHUTDOWN_GRACE_S even while a transform holds the event loop.
    watchdog = Watchdog(pipeline.shutdown.grace_s)

    async def main() -> None:
        runner = Runner(
            pipeline,
            until_caught_up=args.until_caught_up and link is None,
            report=report,
            progress=logs.Progress(pipeline.name, log_settings.progress_interval_s),
        )
        server = _serve(pipeline, runner, health_settings, link)
        watchdog.install(runner.stop, asyncio.get_running_loop(), runner.activity)
        tune_after_start_up()
        try:
            if link is None:
                await run_until_stopped(runner, pipeline.shutdown.grace_s)
            else:
                await link.run(runner, pipeline.shutdown.grace_s, args.until_caught_up)
        finally:
            if server is not None:
                server.stop()

    try:
        asyncio.run(main())
    finally:
        try:
            tracing.shutdown()
        finally:
            watchdog.close()
    return EXIT_OK


def _serve(
    pipeline: Pipeline, runner: Runner, settings: HealthSettings, link: workers.Link | None
) -> health.HealthServer | None:
    """`/metrics` and the health probes on METRICS_PORT, from a thread of their own; a
    worker's on a loopback port of its own, which it tells its parent."""
    if not pipeline.runtime.metrics_port:
        return None
    server = health.HealthServer(
        health.RunnerStatus.of(runner, settings.timeout_s),
        port=pipeline.runtime.metrics_port if link is None else 0,
        host=pipeline.runtime.metrics_host if link is None else "127.0.0.1",
        settings=settings,
    )
    server.start()
    if link is not None:
        link.serving(server.port)
    return server


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="connector",
        description="Run a Kafka connector configured by environment variables.",
    )
    sub = top.add_subparsers(dest="command", required=True)
    check.add_parser(sub)
    run = sub.add_parser("run", help="run the pipeline")
    run.add_argument(
        "--until-caught-up",
        action="store_true",
        help="stop once every assigned partition reached the end offset it had at start",
    )
    run.set_defaults(handler=cmd_run)
    alerts.add_parser(sub)

    kv.add_parser(sub)
    produce.add_parser(sub)
    replay.add_parser(sub)
    scaffold.add_parser(sub)
    topics.add_parser(sub)
    group_status.add_parser(sub)
    config_table.add_parser(sub)
    return top


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = parser().parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    try:
        code: int = args.handler(args, env)
    except ConfigError as exc:
        return _fail_config(exc)
    except FatalError as exc:
        print(f"fatal: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except ConnectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    return code


def console() -> None:
    """The `connector` command. Leaves with `os._exit` once everything is closed and
    flushed: a native client library's threads (obstore's, librdkafka's) must not be able
    to turn a clean exit code into an abort during interpreter teardown."""
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or EXIT_FATAL
    os._exit(code)
