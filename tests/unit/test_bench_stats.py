"""The benchmark's statistics helpers (tools/bench.py): pure functions, no server."""

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from bench import median, paired_ratios, percentile, select_cases, verdict


def test_percentile_interpolates_between_closest_ranks():
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 5.0
    assert percentile(values, 25) == 2.0
    assert percentile([1.0, 2.0], 99) == 1.99


def test_no_samples_give_nan_not_a_number_that_looks_real():
    assert math.isnan(percentile([], 50))
    assert math.isnan(median([]))
    assert verdict(float("nan"), 0.8) == "n/a"


def test_ratios_pair_rounds_and_skip_a_zero_baseline():
    assert paired_ratios([8.0, 9.0, 5.0], [10.0, 0.0, 10.0]) == [0.8, 0.5]


def test_verdict_direction():
    assert verdict(0.85, 0.85) == "met"
    assert verdict(0.84, 0.85) == "missed"
    assert verdict(0.9, 1.0, higher_is_better=False) == "met"
    assert verdict(1.1, 1.0, higher_is_better=False) == "missed"


def test_only_filter_matches_names_parts_and_aliases():
    assert [c.name for c in select_cases("send1")] == ["send1_sync_on", "send1_sync_off"]
    assert [c.name for c in select_cases("get100,pop100")] == ["get100", "pop100"]
    assert "read_ack100" in [c.name for c in select_cases("issue4")]
    assert select_cases("layers") == []
    assert len(select_cases(None)) == len(select_cases(""))
