"""The ideal-queue simulations against what queueing theory says of M/D/1 in closed form."""

from __future__ import annotations

import pytest

from xscore.bench import queueing


@pytest.mark.parametrize("load", [0.5, 0.7, 0.9])
def test_first_come_first_served_waits_as_pollaczek_khinchine_says(load):
    spread = queueing.first_come_first_served(load, arrivals=100_000)
    # Mean wait of M/D/1 is load / (2 (1 - load)) service times; time in the system adds one.
    assert spread.mean == pytest.approx(1.0 + load / (2.0 * (1.0 - load)), rel=0.05)
    # A share 1 - load of arrivals finds the server idle and leaves after exactly one service time.
    assert spread.p50 >= 1.0 and spread.p99 > spread.p50


@pytest.mark.parametrize("load", [0.5, 0.7, 0.9])
def test_processor_sharing_stays_as_long_as_theory_says(load):
    spread = queueing.processor_sharing(load, arrivals=100_000)
    # Under processor sharing the mean time in the system is the service time over (1 - load).
    assert spread.mean == pytest.approx(1.0 / (1.0 - load), rel=0.05)
    assert spread.p50 > 1.0


def test_the_spread_grows_with_the_load_and_is_seeded():
    light, heavy = queueing.first_come_first_served(0.3, arrivals=50_000), queueing.first_come_first_served(
        0.8, arrivals=50_000)
    assert heavy.mean > light.mean and heavy.p99 > light.p99
    assert queueing.processor_sharing(0.7, arrivals=20_000, seed=3) == queueing.processor_sharing(
        0.7, arrivals=20_000, seed=3)
    with pytest.raises(ValueError, match="between 0 and 1"):
        queueing.first_come_first_served(1.0)
