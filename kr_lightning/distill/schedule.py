"""Which synthetic set an epoch trains on: a pure function of the epoch and the schedule's settings.

* ``regenerate_every = R`` (no pool): period ``p = epoch // R`` trains on set ``p`` (``R = 0``: set 0 forever).
* Pool mode (``pool_sets = k > 1``): the pool holds ``k`` sets. Period ``p`` trains on pool slot ``p mod k`` during
  cycle ``c = p // k``. At the start of every cycle after the first, a seeded random ``pool_refresh`` fraction of
  the slots is regenerated; the others keep the set they last held. Set indices are unique per (slot, cycle), so
  each distinct set is generated (or read from the cache) once, and a resumed run sees exactly the same sets.

Generation cost over ``E`` periods: ``k`` sets in the first cycle, then ``round(pool_refresh * k)`` per cycle,
against ``E`` sets for full regeneration.
"""

from __future__ import annotations

import numpy as np

from kr_lightning.errors import ConfigError
from kr_lightning.seeding import POOL, derive_seed


def check_schedule(regenerate_every: int, pool_sets: int, pool_refresh: float) -> None:
    """Refuse a negative period, an empty pool or a refresh fraction outside ``[0, 1]``."""
    if regenerate_every < 0:
        raise ConfigError(f"regenerate_every must be >= 0 (0 = static set); got {regenerate_every}")
    if pool_sets < 1 or not 0.0 <= pool_refresh <= 1.0:
        raise ConfigError(f"need pool_sets >= 1 and 0 <= pool_refresh <= 1; got {pool_sets}, {pool_refresh}")


def refreshed_slots(cycle: int, pool_sets: int, pool_refresh: float, seed: int) -> set[int]:
    """Pool slots regenerated at the start of ``cycle`` (every slot in cycle 0)."""
    if cycle == 0:
        return set(range(pool_sets))
    count = int(round(pool_refresh * pool_sets))
    order = np.random.default_rng(derive_seed(seed, cycle, stream=POOL)).permutation(pool_sets)
    return {int(s) for s in order[:count]}


def set_index(
    epoch: int, *, regenerate_every: int, pool_sets: int = 1, pool_refresh: float = 1.0, seed: int = 0
) -> int:
    """Index of the synthetic set used at ``epoch`` (its generation key, together with the seed and rank)."""
    if regenerate_every == 0:
        return 0
    period = epoch // regenerate_every
    if pool_sets <= 1:
        return period
    cycle, slot = divmod(period, pool_sets)
    for c in range(cycle, -1, -1):
        if slot in refreshed_slots(c, pool_sets, pool_refresh, seed):
            return c * pool_sets + slot
    raise AssertionError("cycle 0 refreshes every slot")


def sets_generated(epochs: int, **schedule: int | float) -> int:
    """How many distinct sets ``epochs`` epochs generate under ``schedule`` (the cost model of the benchmarks)."""
    return len({set_index(e, **schedule) for e in range(epochs)})
