"""The test kit: writer conformance, in-memory fakes, and `run_transform` (a transform over
messages without a broker)."""

from connectors.testing.transforms import Outcome, arun_transform, run_transform

__all__ = ["Outcome", "arun_transform", "run_transform"]
