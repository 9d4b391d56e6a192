"""The program's token emission schedule (``emissions.rs``), reproduced to the base unit.

Five super epochs of 300 epochs each release 5%, 4%, 3%, 2% and 1% of the 10 billion INT supply;
each super epoch's total is split evenly across its epochs and the indivisible remainder ("dust")
goes one base unit at a time to its earliest epochs. After the fifth super epoch nothing is emitted.
"""

from __future__ import annotations

from gpufleet.economics.errors import InvalidEpoch
from gpufleet.economics.units import INT

EPOCHS_PER_SUPER_EPOCH = 300
#: Base units (9 decimals) released per super epoch.
EMISSIONS_BY_SUPER_EPOCH: tuple[int, ...] = (
    500_000_000 * INT,
    400_000_000 * INT,
    300_000_000 * INT,
    200_000_000 * INT,
    100_000_000 * INT,
)


def expected_reward_emissions(
    epoch: int,
    schedule: tuple[int, ...] = EMISSIONS_BY_SUPER_EPOCH,
    epochs_per_super_epoch: int = EPOCHS_PER_SUPER_EPOCH,
) -> int:
    """Token rewards the program accepts for ``epoch`` (1-based), dust to the earliest epochs."""
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise InvalidEpoch(f"epochs count from 1, got {epoch!r}")
    super_epoch, index = divmod(epoch - 1, epochs_per_super_epoch)
    if super_epoch >= len(schedule):
        return 0
    total = schedule[super_epoch]
    base, dust = divmod(total, epochs_per_super_epoch)
    return base + 1 if index < dust else base


def total_scheduled_emissions(schedule: tuple[int, ...] = EMISSIONS_BY_SUPER_EPOCH) -> int:
    """Everything the schedule will ever release (15% of supply by default)."""
    return sum(schedule)
