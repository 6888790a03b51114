"""The throughput bench's comparison of relay and direct batches run one after another on a chain
that slows down as it grows."""

from __future__ import annotations

import pytest

from bench.throughput import bracketed_ratios


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
