"""``python run.py bench cluster``, run small: its figures have their shape, and every note
went exactly once, across two daemons and through a kill and take-over."""

from __future__ import annotations

import io
import json

from tars_actors.ops import cli


def test_bench_cluster_reports_each_note_once_across_daemons_and_a_take_over() -> None:
    out = io.StringIO()
    cli.main(["bench", "cluster", "--messages", "5", "--rounds", "1", "--json"], stdout=out)
    result = json.loads(out.getvalue())

    assert result["benchmark"] == "cluster"
    notes = result["notes"]
    assert notes["messages"] == 5
    assert (notes["delivered_once"], notes["duplicates"], notes["lost"]) == (5, 0, 0)
    assert notes["by_sms"] == 0
    assert 0 < notes["p50_ms"] <= notes["p95_ms"] <= notes["p99_ms"] <= notes["max_ms"]
    # The note's way is split at the daemons' log lines, every hop found.
    assert len(notes["hops"]) == 5

    take_over = result["take_over"]
    [round_] = take_over["rounds"]
    assert (round_["round"], round_["sms"], round_["duplicates"], round_["lost"]) == (1, 1, 0, 0)
    assert round_["kill_to_sms_s"] > 0
    total = take_over["total"]
    assert (total["rounds"], total["sms"], total["duplicates"], total["lost"]) == (1, 1, 0, 0)
    assert total["kill_to_sms_p50_s"] == total["kill_to_sms_max_s"] == round_["kill_to_sms_s"]


def test_bench_cluster_runs_either_part_alone() -> None:
    out = io.StringIO()
    cli.main(["bench", "cluster", "--messages", "0", "--rounds", "0"], stdout=out)
    table = out.getvalue()
    assert "lease_seconds = 3" in table
    assert "note latency" not in table
    assert "take-over" not in table
