"""Progress lines for drivers without a terminal (Prefect logs, CI): the ETA."""

from __future__ import annotations


def test_eta_text_reads_the_pace_so_far() -> None:
    from lerenet.training.throughput import eta_text

    assert eta_text(10.0, 0, 100) == ""  # no pace yet
    assert eta_text(10.0, 10, 130) == ", 2 min 10 s left"
    assert eta_text(10.0, 10, 0) == ", done"
