"""Sample zone-settings events, the same for tests, the demo and benchmarks.

Deterministic for a given seed. Each zone lives on one partition (as a producer keying by
zone would place it), versions grow per zone, and a few events delete their zone, so the
expected key-value content after `pf_edge` can be computed independently of the runtime.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from transforms.proto.edge import ZoneSettingsChanged

SETTING_VALUES = {
    "cache_level": ["basic", "simplified", "aggressive"],
    "ssl": ["off", "flexible", "full", "strict"],
    "min_tls_version": ["1.0", "1.2", "1.3"],
    "always_use_https": ["on", "off"],
    "security_level": ["low", "medium", "high", "under_attack"],
    "browser_ttl": ["0", "1800", "14400", "86400"],
    "http3": ["on", "off"],
    "dashboard_theme": ["light", "dark"],
    "email_obfuscation": ["on", "off"],
}
FEATURES = ["waf", "bot_management", "argo", "http3", "image_resizing", "rate_limiting"]


@dataclass(frozen=True, slots=True)
class SampleEvent:
    partition: int
    key: bytes
    message: Any

    @property
    def value(self) -> bytes:
        return bytes(self.message.SerializeToString(deterministic=True))


def zone_events(
    count: int, *, partitions: int = 3, zones: int = 500, seed: int = 7, delete_every: int = 97
) -> Iterator[SampleEvent]:
    rng = random.Random(seed)  # noqa: S311 - sample data, not security
    versions = [0] * zones
    for n in range(count):
        zone = rng.randrange(zones)
        versions[zone] += 1
        zone_id = f"z{zone:05d}"
        names = rng.sample(sorted(SETTING_VALUES), k=rng.randint(2, 6))
        message = ZoneSettingsChanged(
            zone_id=zone_id,
            zone_name=f"site-{zone}.example.com",
            account_id=1000 + zone // 10,
            settings={name: rng.choice(SETTING_VALUES[name]) for name in names},
            features=rng.sample(FEATURES, k=rng.randint(0, 3)),
            updated_at_ms=1_700_000_000_000 + n * 1000,
            version=versions[zone],
            deleted=(n % delete_every == delete_every - 1),
        )
        yield SampleEvent(zone % partitions, zone_id.encode(), message)


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.samples --bootstrap B --topic T [--count N]`: produce with kcat."""
    import argparse

    from harness.kafka import create_topic
    from harness.kcat import produce

    parser = argparse.ArgumentParser(description="Produce sample zone-settings events.")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args(argv)
    create_topic(args.bootstrap, args.topic, partitions=args.partitions)
    events = zone_events(args.count, partitions=args.partitions)
    ends = produce(args.bootstrap, args.topic, ((e.partition, e.key, e.value) for e in events))
    print(f"produced {args.count} events to {args.topic}; end offsets {dict(sorted(ends.items()))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
