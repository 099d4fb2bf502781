"""benchmarks.mapcache_scale --before: an earlier run's figures printed beside this run's."""

from __future__ import annotations

import pytest

from benchmarks.mapcache_scale import COMPARED, comparison_rows, print_comparison


def test_rows_pair_the_figures_of_both_runs_and_mark_what_one_lacks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = {"load_s": 26.6, "ping_loss": 5869, "unit": {"worker_seed_s": 18.4, "gone": 1}}
    now = {"load_s": 9.9, "ping_loss": 0, "unit": {"worker_seed_s": 0.13, "worker_rss_mb": 16.0}}
    rows = comparison_rows(before, now)
    assert [key for key, _old, _new in rows[: len(COMPARED)]] == list(COMPARED)
    by_key = {key: (old, new) for key, old, new in rows}
    assert by_key["load_s"] == (26.6, 9.9) and by_key["ping_loss"] == (5869, 0)
    assert by_key["loop_stall_max_ms"] == (None, None)
    assert by_key["unit.worker_seed_s"] == (18.4, 0.13)
    assert by_key["unit.gone"] == (1, None) and by_key["unit.worker_rss_mb"] == (None, 16.0)
    print_comparison(before, now)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["figure", "before", "now"]
    assert any(line.split() == ["load_s", "26.600", "9.900"] for line in lines)
    assert any(line.split() == ["unit.gone", "1", "-"] for line in lines)
