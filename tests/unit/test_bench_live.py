"""bench/live.py's page: the live-changes test's figures rendered as a table."""

from __future__ import annotations

from bench.live_changes import render


def test_each_change_is_a_row_with_failed_of_sent() -> None:
    page = render({
        "(1) haproxy.cfg changed": {"new connections": [2339, 0], "keep-alive": [871, 0]},
        "(6) rolled back": {"new connections": [12034, 3], "keep-alive": [5001, 1]},
    }, "2026-12-02 17:00 UTC", 31.4)
    assert "| (1) haproxy.cfg changed | 0 of 2,339 | 0 of 871 |" in page
    assert "| (6) rolled back | 3 of 12,034 | 1 of 5,001 |" in page
    assert ("Measured 2026-12-02 17:00 UTC in one run of `python bench/run.py --live-changes` "
            "(31.4 min)") in page
    elsewhere = render({}, "2026-12-02 18:00 UTC", 20.0, "the CI run `bash .ci/run`")
    assert "Measured 2026-12-02 18:00 UTC in the CI run `bash .ci/run` (20.0 min)" in elsewhere
