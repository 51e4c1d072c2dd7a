"""Tests of izray.status: the status line's window, the rate against the limit, the ETA."""

from __future__ import annotations

from types import SimpleNamespace

from izray.status import StatusLine, failed_candidates, rate_limit


def test_the_window_counts_only_what_happened_since_the_last_line():
    s = StatusLine()
    s.start(100.0, calls=40, throttled=2, failed=1, queries=3)  # a resume's earlier work
    assert s.since_last(160.0, 100, 5, 1, None, {}) == \
        "60/min, 3 x 429 and 0 failed candidates since the last line"
    assert s.since_last(190.0, 130, 5, 3, None, {}) == \
        "60/min, 0 x 429 and 2 failed candidates since the last line"


def test_the_limit_and_the_backed_off_rate_are_shown():
    assert rate_limit(None, {"allowed_rpm": 50}) == ""  # no limit configured
    assert rate_limit(600, {}) == " (limit 600/min)"  # the limiter has not answered yet
    assert rate_limit(600, {"allowed_rpm": 599.8}) == " (limit 600/min)"
    assert rate_limit(600, {"allowed_rpm": 433.5}) == " (limit 600/min, allowed 434)"


def test_lines_are_due_every_period_and_the_first_at_once():
    s = StatusLine(every_s=30.0)
    assert s.due(5.0) and not s.due(34.0) and s.due(35.0)


def test_eta_uses_this_sessions_rate_and_ignores_finished_tasks():
    a = SimpleNamespace(queries=4, budget=12, finished=False)
    b = SimpleNamespace(queries=0, budget=12, finished=False)
    s = StatusLine()
    s.start(1000.0, 0, 0, 0, queries=4)  # 4 queries were done before this session
    assert s.eta(1000.0, [a, b]) == ""  # nothing landed yet in this session
    a.queries, b.queries = 8, 2
    assert s.eta(1120.0, [a, b]) == ", ~5 min left"  # 3/min, 14 left
    a.finished = True
    assert s.eta(1120.0, [a, b]) == ", ~3 min left"


def test_failed_candidates_are_queries_with_an_error():
    runs = [SimpleNamespace(records=[{"query": 1}, {"query": 2, "error": "HTTP 500"},
                                     {"query": None, "cached": True}]),
            SimpleNamespace(records=[{"query": 1, "error": "timeout"}])]
    assert failed_candidates(runs) == 2
