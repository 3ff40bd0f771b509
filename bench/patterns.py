"""`python -m bench.patterns`: what the patterns of a protobuf transform cost, per record.

Each pattern is timed on the same 20,000 decoded `ZoneSettingsChanged` events
(`harness.samples`, 100,000 zones), the variants of one question interleaved over several
rounds; the best round is shown (the least disturbed by whatever else runs). The figures
in docs/fast-transforms.md come from this script.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from harness.samples import zone_events
from transforms.pf_edge import EDGE_SETTINGS
from transforms.proto.edge import EdgeZoneConfig, ZoneSettingsChanged

Pattern = Callable[[Any], Any]


def _kwargs_map(m: Any) -> Any:
    s = m.settings
    return EdgeZoneConfig(settings={k: s[k] for k in s if k in EDGE_SETTINGS})


def _assigned_map(m: Any) -> Any:
    config = EdgeZoneConfig()
    s, kept = m.settings, config.settings
    for k in s:
        if k in EDGE_SETTINGS:
            kept[k] = s[k]
    return config


def _update_map(m: Any) -> Any:
    config = EdgeZoneConfig()
    s = m.settings
    config.settings.update({k: s[k] for k in s if k in EDGE_SETTINGS})
    return config


def _items_loop(m: Any) -> Any:
    return [v for k, v in m.settings.items() if k in EDGE_SETTINGS]


def _index_loop(m: Any) -> Any:
    s = m.settings
    return [s[k] for k in s if k in EDGE_SETTINGS]


def _intersection(m: Any) -> Any:
    s = m.settings
    return [s[k] for k in EDGE_SETTINGS.intersection(s)]


def _kwargs_scalars(m: Any) -> Any:
    return EdgeZoneConfig(zone_id=m.zone_id, version=m.version, updated_at_ms=m.updated_at_ms)


def _assigned_scalars(m: Any) -> Any:
    config = EdgeZoneConfig()
    config.zone_id = m.zone_id
    config.version = m.version
    config.updated_at_ms = m.updated_at_ms
    return config


def _features_kwargs(m: Any) -> Any:
    return EdgeZoneConfig(features=sorted(set(m.features)))


def _features_extend(m: Any) -> Any:
    config = EdgeZoneConfig()
    features = m.features
    if features:
        config.features.extend(sorted(set(features)))
    return config


def _serialize(m: Any) -> Any:
    return m.SerializeToString()


def _serialize_deterministic(m: Any) -> Any:
    return m.SerializeToString(deterministic=True)


def _parse(m: Any) -> Any:
    return ZoneSettingsChanged.FromString(m.SerializeToString())


def _serialize_only(m: Any) -> Any:
    return m.SerializeToString()


QUESTIONS: dict[str, dict[str, Pattern]] = {
    "a map field: constructor keyword vs item assignment vs update()": {
        "EdgeZoneConfig(settings={...})": _kwargs_map,
        "config.settings[k] = v, one by one": _assigned_map,
        "config.settings.update({...})": _update_map,
    },
    "reading a map: items() vs indexing vs set intersection": {
        "for k, v in m.settings.items()": _items_loop,
        "for k in m.settings: m.settings[k]": _index_loop,
        "EDGE_SETTINGS.intersection(m.settings)": _intersection,
    },
    "scalar fields: constructor keywords vs attribute assignment": {
        "EdgeZoneConfig(zone_id=..., version=..., ...)": _kwargs_scalars,
        "config.zone_id = ...; config.version = ...": _assigned_scalars,
    },
    "a repeated field: constructor keyword vs extend() when not empty": {
        "EdgeZoneConfig(features=sorted(set(...)))": _features_kwargs,
        "if features: config.features.extend(...)": _features_extend,
    },
    "encoding (what the runtime does to a returned message)": {
        "SerializeToString()": _serialize,
        "SerializeToString(deterministic=True)": _serialize_deterministic,
    },
    "decoding, for scale (serialize + parse)": {
        "serialize only": _serialize_only,
        "serialize + FromString": _parse,
    },
}


def timed(pattern: Pattern, inputs: list[Any]) -> float:
    started = time.perf_counter()
    for message in inputs:
        pattern(message)
    return (time.perf_counter() - started) / len(inputs) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.patterns", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    events = [
        ZoneSettingsChanged.FromString(e.value) for e in zone_events(args.events, zones=100_000)
    ]
    configs = [_assigned_map(m) for m in events]
    for m, config in zip(events, configs, strict=True):
        config.zone_id, config.version, config.updated_at_ms = m.zone_id, m.version, 1
        config.features.extend(sorted(set(m.features)))
    print("| question | pattern | µs per record (best of rounds) |\n|---|---|---:|")
    for question, patterns in QUESTIONS.items():
        inputs = configs if question.startswith("encoding") else events
        best = {name: float("inf") for name in patterns}
        for _ in range(args.rounds):
            for name, pattern in patterns.items():
                best[name] = min(best[name], timed(pattern, inputs))
        for name, us in best.items():
            print(f"| {question} | `{name}` | {us:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
