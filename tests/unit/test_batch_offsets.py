"""`Batch.next_offsets` and `Batch.first_offsets` walk runs of a partition, not records:
they must give what a plain walk over every record gives, for records in any order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connectors import Record
from connectors.core.records import Batch

positions = st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 3), st.integers(0, 10**6))


@given(st.lists(positions, max_size=60))
def test_offsets_are_those_of_a_walk_over_every_record(found: list[tuple[str, int, int]]) -> None:
    batch = Batch([Record(t, p, o, None, b"") for t, p, o in found])
    highest: dict[tuple[str, int], int] = {}
    first: dict[tuple[str, int], int] = {}
    for t, p, o in found:
        highest[(t, p)] = max(highest.get((t, p), -1), o + 1)
        first.setdefault((t, p), o)
    assert batch.next_offsets == highest
    assert batch.first_offsets == first
    other = Batch(list(batch.records))  # asked the other way round: one walk gives both
    assert other.first_offsets == first
    assert other.next_offsets == highest
    other.next_offsets.clear()  # each caller gets its own copy
    assert other.next_offsets == highest


@given(st.lists(positions, max_size=60))
def test_heads_are_the_first_record_of_each_run_of_one_partition(
    found: list[tuple[str, int, int]],
) -> None:
    records = [Record(t, p, o, None, b"") for t, p, o in found]
    expected = [
        r for i, r in enumerate(records) if i == 0 or records[i - 1][:2] != (r.topic, r.partition)
    ]
    assert list(Batch(records).heads) == expected
    walked = Batch(records)
    assert walked.next_offsets is not None  # the walk made for the offsets gives the heads too
    assert list(walked.heads) == expected


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.integers(0, 3),
            st.lists(st.integers(0, 10**6), min_size=0, max_size=8),
        ),
        max_size=8,
    )
)
def test_a_batch_of_runs_is_the_batch_of_its_records(
    runs: list[tuple[str, int, list[int]]],
) -> None:
    """A reader's batch (`Batch.of_runs`: one run per partition fetched, a partition possibly
    in several) walks per run; offsets and heads are those of the same records walked one
    by one, whatever their order."""
    fetched = [[Record(t, p, o, None, b"") for o in offsets] for t, p, offsets in runs]
    records = [r for run in fetched for r in run]
    of_runs, walked = Batch.of_runs(fetched, {"a": "id-a"}), Batch(records)
    assert list(of_runs.records) == records
    assert of_runs.topic_ids == {"a": "id-a"}
    assert of_runs.next_offsets == walked.next_offsets
    assert of_runs.first_offsets == walked.first_offsets
    kept = [run for run in fetched if run]
    if all(a[-1][:2] != b[0][:2] for a, b in zip(kept, kept[1:], strict=False)):
        # runs of one partition back to back are one run when walked record by record
        assert of_runs.heads == walked.heads
    assert len(of_runs.heads) == len(kept)
