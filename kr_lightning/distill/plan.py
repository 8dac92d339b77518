"""SyntheticPlan: what a GKD student's synthetic sets are made of, computed once by its data module.

The student, the privacy audit's reference students and the memorisation audit all need the same sets: the same
generator file, sampling knobs, images per class and noise seed. ``GKDDataModule.plan()`` resolves them (explicit
values, then ``selection.json``, then the generator's defaults); :meth:`SyntheticPlan.data_overrides` hands them to
another GKD data module as config values, so nothing is re-derived elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kr_lightning.errors import ConfigError
from kr_lightning.models.sampling import GuidanceInterval, check_interval
from kr_lightning.runs import read_json

KNOBS = ("steps", "guidance", "sampler", "guidance_interval")


def selection_winner(selection: str | None) -> dict[str, Any] | None:
    """The winner (generator and sampling knobs) of a ``selection.json`` written by ``select``; ``None``: none."""
    if selection is None:
        return None
    winner = read_json(selection).get("winner")
    if not isinstance(winner, dict):
        raise ConfigError(f"{selection} has no 'winner'; rerun `python -m kr_lightning select`")
    return winner


def resolve_knobs(
    explicit: Mapping[str, Any], winner: Mapping[str, Any] | None, defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """Sampling knobs: explicit values win, then the selection's winner, then the generator's defaults.

    ``guidance_interval`` has no generator default: unset everywhere, every step is guided.
    """
    knobs = {}
    for key in KNOBS:
        value = explicit.get(key)
        if value is None and winner is not None:
            value = winner.get(key)
        knobs[key] = defaults.get(key) if value is None else value
    if knobs["guidance_interval"] is not None:
        knobs["guidance_interval"] = check_interval(knobs["guidance_interval"])
    return knobs


@dataclass(frozen=True)
class SyntheticPlan:
    """The resolved recipe of a student's synthetic sets.

    Attributes:
        generator: Generator checkpoint or export folder.
        steps: Sampler steps.
        guidance: Guidance scale.
        sampler: Sampler kind.
        guidance_interval: Noise levels ``(lo, hi]`` where guidance applies (``None``: every step).
        counts: Images per class of one set (summed over ranks).
        seed: Noise seed of the sets (set ``i`` of rank ``r`` is a pure function of it).
    """

    generator: str
    steps: int
    guidance: float
    sampler: str
    counts: tuple[int, ...]
    seed: int
    guidance_interval: GuidanceInterval | None = None

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
            "guidance_interval": None if self.guidance_interval is None else list(self.guidance_interval),
            "counts": list(self.counts),
            "seed": self.seed,
        }
