"""The status page's parts without a broker: the recent-activity ring, the workers'
combined `/status.json`, and a page rendered from hostile names and messages."""

from __future__ import annotations

import re

from connectors.core.dead_letters import DeadLetter
from connectors.core.records import Record
from connectors.observability.health import combine, page
from connectors.observability.health.recent import Recent


def letter(offset: int, message: str = "bad") -> DeadLetter:
    record = Record(topic="t", partition=0, offset=offset, key=b"k", value=b"v", timestamp_ms=0)
    return DeadLetter(record, "decode", "PoisonError", message)


def test_recent_keeps_the_last_letters_newest_first_and_a_windowed_rate() -> None:
    now = [100.0]
    recent = Recent(keep=3, window_s=10.0, clock=lambda: now[0], wall=lambda: 5.0)
    recent.dead_lettered([letter(n) for n in range(5)])
    now[0] = 105.0
    recent.processed(50)
    found = recent.snapshot()
    assert [d["offset"] for d in found["dead_letters"]] == [4, 3, 2]
    assert found["dead_letters"][0]["error"] == "PoisonError: bad"
    assert (found["records"], found["records_per_s"]) == (50, 10.0)  # 50 in the 5 s since start
    now[0] = 200.0  # long idle: the rate falls to 0, the total stays
    assert recent.snapshot()["records_per_s"] == 0.0 and recent.snapshot()["records"] == 50


def test_workers_status_sums_figures_and_merges_letters() -> None:
    def body(records: int, at: list[float]) -> dict[str, object]:
        letters = [{"offset": int(a), "at": a} for a in at]
        pipeline = {"topics": [{"topic": "t", "type": "bytes"}]}
        return {
            "pipeline": pipeline,
            "records": records,
            "records_per_s": 1.5,
            "dead_letters": letters,
        }

    answers = [
        combine.Answer(0, 10, 200, body(7, [1.0, 3.0])),
        combine.Answer(1, 11, None, {}, "refused"),
        combine.Answer(2, 12, 200, body(5, [2.0])),
    ]
    found = combine.status(answers, "c", "g", keep=2)
    assert (found["records"], found["records_per_s"]) == (12, 3.0)
    assert [d["offset"] for d in found["dead_letters"]] == [3, 2]
    assert found["pipeline"]["topics"] == [{"topic": "t", "type": "bytes"}]


def test_the_page_escapes_what_comes_from_outside() -> None:
    hostile = "<script>alert(1)</script>"
    health = {
        "status": "unhealthy",
        "partitions": [{"topic": hostile, "partition": 0, "reason": "stuck", "lag": 3}],
        "error": hostile,
    }
    status = {
        "connector": hostile,
        "pipeline": {
            "topics": [{"topic": hostile, "type": "a.B"}],
            "transforms": [],
            "writer": "kv",
        },
        "dead_letters": [{"at": 0.0, "stage": "decode", "error": hostile, "offset": 1}],
    }
    text = page.render(health, status).decode()
    scripts = re.findall(r"<script>(.*?)</script>", text, re.S)
    assert len(scripts) == 1 and "alert" not in scripts[0]
    assert text.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4
    assert not re.search(r"\b(src|href)=", text)  # no external assets: it works offline
