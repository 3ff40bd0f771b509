"""Benchmarks of the connector runtime against raw clients and Kafka Connect (issue 7),
and the bounded-memory measurement of issue 4. Entry point: ``python -m bench``."""
