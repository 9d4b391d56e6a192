"""The emission schedule reproduces emissions.rs to the base unit."""

from __future__ import annotations

import pytest

from gpufleet.economics.emissions import (
    EMISSIONS_BY_SUPER_EPOCH,
    EPOCHS_PER_SUPER_EPOCH,
    expected_reward_emissions,
    total_scheduled_emissions,
)
from gpufleet.economics.errors import InvalidEpoch
from gpufleet.economics.units import INT


def test_dust_goes_to_the_earliest_epochs() -> None:
    # 500M INT / 300 epochs = 1,666,666.666666666 INT + 200 base units of dust
    assert expected_reward_emissions(1) == 1_666_666_666_666_667
    assert expected_reward_emissions(200) == 1_666_666_666_666_667
    assert expected_reward_emissions(201) == 1_666_666_666_666_666
    assert expected_reward_emissions(300) == 1_666_666_666_666_666
    assert expected_reward_emissions(301) == 400_000_000 * INT // 300 + 1


def test_each_super_epoch_sums_to_its_schedule_and_then_stops() -> None:
    for i, total in enumerate(EMISSIONS_BY_SUPER_EPOCH):
        start = i * EPOCHS_PER_SUPER_EPOCH + 1
        assert sum(expected_reward_emissions(n) for n in range(start, start + 300)) == total
    assert expected_reward_emissions(1501) == 0
    assert total_scheduled_emissions() == 1_500_000_000 * INT  # 15% of 10 billion


def test_epoch_zero_is_invalid() -> None:
    with pytest.raises(InvalidEpoch):
        expected_reward_emissions(0)
