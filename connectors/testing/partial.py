"""The partial-success and replay checks of the writer conformance kit
(`connectors.testing.conformance`, whose `WriterContract` mixes them in)."""

from __future__ import annotations

from typing import Any

from connectors.core.errors import RetriableError
from connectors.core.records import WriteBatch
from connectors.testing.kit import _fail, _one_content_per_identity, _run, _write, dedupe


class PartialSuccessChecks:
    """The partial-success and replay checks, mixed into `WriterContract`."""

    def test_writing_only_the_rest_completes_the_batch(self: Any) -> None:
        async def check() -> None:
            if not self.partial_success:
                return
            target = await self.new_target()
            batch = self.standard_batch()
            head = {
                i
                for i, e in enumerate(batch.entries)
                if e.source.offset < 2 + 2 * e.source.partition
            }
            parts = [
                tuple(e for i, e in enumerate(batch.entries) if (i in head) == first)
                for first in (True, False)
            ]
            await _write(target.writer(), *(WriteBatch(batch.batch, part) for part in parts))
            delivered = list(await target.read())
            _one_content_per_identity(delivered)
            observed, expected = self._observed(delivered), self._expected(batch)
            if observed != expected:
                _fail(f"written in two parts, stored {observed!r}, expected {expected!r}")

        _run(check)

    def test_a_write_that_fails_partway_reports_what_it_stored(self: Any) -> None:
        async def check() -> None:
            target = await self.new_target()
            arranged = await self.fail_partway(target) if self.partial_success else None
            if arranged is None:
                return
            writer, batch = arranged
            batch = batch or self.standard_batch()
            await writer.start()
            try:
                try:
                    await writer.write(batch)
                except RetriableError as exc:
                    stored = exc.stored
                else:
                    _fail("the write arranged to fail partway succeeded")
                if not stored or len(stored) >= len(batch.entries):
                    _fail(f"a write that failed partway reported {sorted(stored)} stored")
                held = {(d.key, d.value) for d in await target.read()}
                missing = [
                    i
                    for i in sorted(stored)
                    if self.keeps_history
                    and (batch.entries[i].key, batch.entries[i].value) not in held
                ]
                if missing:
                    _fail(f"entries {missing} reported stored are not in the target")
                rest = tuple(e for i, e in enumerate(batch.entries) if i not in stored)
                await writer.write(WriteBatch(batch.batch, rest))
            finally:
                await writer.close()
            delivered = list(await target.read())
            if self.replay_redelivers and len(dedupe(delivered)) != len(delivered):
                _fail(f"something stored was sent again: {delivered!r}")
            observed, expected = self._observed(delivered), self._expected(batch)
            if observed != expected:
                _fail(f"after resending the rest, stored {observed!r}, expected {expected!r}")
            await _write(target.writer(), batch)  # the whole batch again, after a crash
            again = list(await target.read())
            _one_content_per_identity(again)
            if self.replay_redelivers and dedupe(again) != dedupe(delivered):
                _fail(f"a replay brought new identities:\nbefore {delivered!r}\nafter  {again!r}")
            if not self.replay_redelivers and again != delivered:
                _fail(f"replay changed the target:\nbefore {delivered!r}\nafter  {again!r}")

        _run(check)
