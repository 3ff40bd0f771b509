"""`connector` with other garbage collector settings than the runtime's (for `bench.ab`'s
`@gc=...`): `BENCH_GC=default` leaves the collector as CPython sets it; `BENCH_GC=Y/M/O`
freezes start-up as the runtime does but with thresholds (Y, M, O)."""

import gc
import importlib
import os
import sys

cli = importlib.import_module("connectors.cli.main")
wanted = os.environ.get("BENCH_GC", "default")


def tune() -> None:
    if wanted == "default":
        return
    young, middle, old = (int(part) for part in wanted.split("/"))
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, middle, old)


cli.tune_after_start_up = tune
sys.exit(cli.main())
