"""SyntheticPlan: what a GKD student's synthetic sets are made of, computed once by its data module.

The student, the privacy audit's reference students and the memorisation audit all need the same sets: the same
generator file, sampling knobs, images per class and noise seed. ``GKDDataModule.plan()`` resolves them (explicit
values, then ``selection.json``, then the generator's defaults); :meth:`SyntheticPlan.data_overrides` hands them to
another GKD data module as config values, so nothing is re-derived elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SyntheticPlan:
    """The resolved recipe of a student's synthetic sets.

    Attributes:
        generator: Generator checkpoint or export folder.
        steps: Sampler steps.
        guidance: Guidance scale.
        sampler: Sampler kind.
        counts: Images per class of one set (summed over ranks).
        seed: Noise seed of the sets (set ``i`` of rank ``r`` is a pure function of it).
    """

    generator: str
    steps: int
    guidance: float
    sampler: str
    counts: tuple[int, ...]
    seed: int

    @property
    def size(self) -> int:
        """Images per set."""
        return sum(self.counts)

    def data_overrides(self) -> dict[str, Any]:
        """``data.init_args`` values that make another GKD data module draw exactly these sets."""
        return {
            "generator": self.generator,
            "selection": None,
            "steps": self.steps,
            "guidance": self.guidance,
            "sampler": self.sampler,
            "counts": list(self.counts),
            "seed": self.seed,
        }
