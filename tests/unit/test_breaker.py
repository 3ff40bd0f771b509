"""The dead-letter breaker counts runs of healthy records instead of each record; it must
judge exactly as a window of per-record outcomes would."""

from __future__ import annotations

import random
from collections import deque

from connectors.runtime.poison import Breaker


class WindowOfOutcomes:
    """The reference: the last `window` outcomes, one by one."""

    def __init__(self, max_ratio: float, window: int) -> None:
        self.max_ratio = max_ratio
        self.outcomes: deque[bool] = deque(maxlen=window)
        self.min = max(10, window // 10)

    def record(self, poison: bool) -> None:
        self.outcomes.append(poison)

    @property
    def tripped(self) -> bool:
        if len(self.outcomes) < self.min:
            return False
        return sum(self.outcomes) / len(self.outcomes) > self.max_ratio


def test_runs_of_healthy_records_judge_like_a_window_of_outcomes() -> None:
    rng = random.Random(3)
    for window, ratio in ((10, 0.3), (100, 0.05), (1000, 0.004)):
        breaker, reference = Breaker(ratio, window), WindowOfOutcomes(ratio, window)
        trips = 0
        for _ in range(3000):
            healthy = rng.choice((0,) * 12 + (1, 3, 20, 150, 2500))
            breaker.record_ok(healthy)
            for _ in range(healthy):
                reference.record(False)
            breaker.record(True)
            reference.record(True)
            assert breaker.tripped == reference.tripped
            assert abs(breaker.ratio - sum(reference.outcomes) / len(reference.outcomes)) < 1e-9
            trips += breaker.tripped
        assert 0 < trips < 3000, trips  # both outcomes were exercised


def test_poison_leaves_the_window_after_window_healthy_records() -> None:
    breaker = Breaker(0.1, 100)
    breaker.record_ok(50)
    for _ in range(20):
        breaker.record(True)
    assert breaker.tripped
    breaker.record_ok(99)
    assert breaker.ratio == 1 / 100
    breaker.record_ok(1)
    assert breaker.ratio == 0.0
    assert not breaker.tripped
