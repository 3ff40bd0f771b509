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

    async def fail_partway(self, target: Target) -> tuple[Writer, WriteBatch | None]:
        assert isinstance(target, MemoryTarget)
        return MemoryWriter(target=target, fail_partway=5), None


def test_the_kit_fails_a_writer_that_reports_more_stored_than_it_stored() -> None:
    """The partial-success check is not vacuous: a writer claiming what it did not store
    fails it."""

    class Boastful(MemoryWriter):
        async def write(self, batch: WriteBatch) -> None:
            if self._fail_partway is not None:
                self._fail_partway = None
                raise RetriableError("failed partway", stored=range(5))
            await super().write(batch)

    class Contract(TestMemoryWriterContract):
        keeps_history = True  # so that every stored entry must be found

        async def fail_partway(self, target: Target) -> tuple[Writer, WriteBatch | None]:
            assert isinstance(target, MemoryTarget)
            return Boastful(target=target, fail_partway=5), None

    try:
        Contract().test_a_write_that_fails_partway_reports_what_it_stored()
    except AssertionError as exc:
        assert "reported stored are not in the target" in str(exc)
    else:
        raise AssertionError("the kit accepted a writer that reports what it did not store")


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
