"""The throughput bench's comparison of relay and direct batches run one after another on a chain
that slows down as it grows, and its verdict on the target."""

from __future__ import annotations

import psutil
import pytest

from bench.throughput import bracketed_ratios, render


def test_steady_drift_cancels_out() -> None:
    # Both sides lose 5 % per batch, and the relay really does 60 % of direct: batches run
    # direct, relay, direct, relay, direct.
    speed = [0.95**batch for batch in range(5)]
    direct = [100 * speed[0], 100 * speed[2], 100 * speed[4]]
    relay = [60 * speed[1], 60 * speed[3]]

    ratios = bracketed_ratios(relay, direct)

    assert ratios == pytest.approx([0.6, 0.6], rel=2e-3)
    # Compared with the batch before it only, the relay would be charged one batch of drift.
    assert [r / d for r, d in zip(relay, direct, strict=False)] == pytest.approx([0.57, 0.57])


def test_needs_a_direct_batch_on_both_sides() -> None:
    with pytest.raises(ValueError, match="before and after"):
        bracketed_ratios([50.0, 50.0], [100.0, 100.0])


def _row(workers: int, direct: float, relay: float, relay_cpu_ms: float) -> dict[str, object]:
    return {
        "workers": workers,
        "direct": direct,
        "relay": relay,
        "ratio": relay / direct,
        "ratios": (relay / direct, relay / direct),
        "direct_cpu": {"client": 15.0, "anvil": 5.0},
        "relay_cpu": {"client": 4.0, "relay": relay_cpu_ms - 14.0, "postgres": 5.0, "anvil": 5.0},
    }


def test_verdict_takes_the_best_row_and_says_how_busy_the_cores_were() -> None:
    cores = psutil.cpu_count()
    below = render([_row(1, 60.0, 39.0, 40.0), _row(2, 60.0, 45.0, 40.0)])
    assert "target relay/direct >= 0.8: NOT MET (best median 0.75, 2 worker(s))" in below
    assert f"with the cores {45.0 * 40.0 / 1000 / cores:.0%} busy at 45.0/s" in below
    met = render([_row(2, 60.0, 48.0, 40.0)])
    assert "target relay/direct >= 0.8: met (best median 0.80, 2 worker(s))" in met


def test_the_table_says_whether_the_kiosk_had_callbacks() -> None:
    polled = render([_row(2, 60.0, 48.0, 40.0)])
    assert "the KIOSK polls (no callback URL, so no callbacks)" in polled
    called = render([_row(2, 60.0, 48.0, 40.0) | {"callbacks": True}])
    assert "the relay delivered a callback to the KIOSK for every approval" in called
    assert "polls" not in called
