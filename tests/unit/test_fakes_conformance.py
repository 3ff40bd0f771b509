"""The in-memory writer passes the same writer conformance kit as the real writers, so
runner tests written against it rely on the contract every writer keeps."""

from __future__ import annotations

from connectors import PoisonError, RetriableError, WriteBatch, Writer
from connectors.testing.conformance import Target, WriterContract
from connectors.testing.fakes import MemoryTarget, MemoryWriter


class TestMemoryWriterContract(WriterContract):
    failures = {"unreachable": RetriableError, "rejected": PoisonError}

    async def new_target(self) -> Target:
        return MemoryTarget()

    async def failing_write(self, scenario: str) -> tuple[Writer, WriteBatch | None]:
        if scenario == "unreachable":
            return MemoryWriter([RetriableError("memory target unreachable")]), None
        refuse = b"p1-k2"
        return MemoryWriter(reject=lambda e: "refused" if e.key == refuse else None), None


def test_the_kit_fails_a_writer_that_lets_a_replay_bring_old_values_back() -> None:
    """The kit is not vacuous over the in-memory target: without positions it fails."""

    class Forgetful(MemoryTarget):
        def apply(self, entry):  # type: ignore[no-untyped-def]
            self.positions.clear()
            super().apply(entry)

    class Contract(TestMemoryWriterContract):
        async def new_target(self) -> Target:
            return Forgetful()

    try:
        Contract().test_replay_of_an_older_batch_keeps_newer_values()
    except AssertionError as exc:
        assert "after replaying older offsets" in str(exc)
    else:
        raise AssertionError("the kit accepted a writer that lets old values back")
