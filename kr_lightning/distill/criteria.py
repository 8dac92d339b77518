"""How ``select`` ranks candidates: val CAS, class fidelity or Fréchet distance, each with explicit tie-breaks.

A candidate's result holds ``val_acc`` / ``val_auc`` (CAS of the quick students on the real val split) and, when a
teacher is given, ``quality`` (see :mod:`kr_lightning.quality`). On a small val split CAS ties often (78 images:
one image is 0.013), so every criterion breaks ties with the others; the earlier candidate wins a full tie.

Class fidelity read alone rewards a generator that draws few, stereotyped images the teacher finds easy
(``GENERATOR.md``: "always pair it with coverage"): on BreastMNIST seed 2 it picked the epoch-19 checkpoint
(fidelity 0.860) whose precision 0.50, coverage 0.21 and val CAS 0.654 were the worst of ten. ``fidelity_coverage``
ranks by fidelity only the candidates whose coverage reaches ``coverage_floor`` x the best candidate's.
"""

from __future__ import annotations

from typing import Any, Literal

from kr_lightning.errors import ConfigError

Criterion = Literal["cas", "fidelity", "fidelity_coverage", "fd"]
CRITERIA: tuple[str, ...] = ("cas", "fidelity", "fidelity_coverage", "fd")


def _quality(result: dict[str, Any], key: str) -> float:
    quality = result.get("quality")
    if quality is None:
        return 0.0
    value = quality["matched"][key] if key == "fd" else quality[key]
    return -value if key == "fd" else value


def rank_key(result: dict[str, Any], criterion: Criterion) -> tuple[float, ...]:
    """Sort key (higher is better) of one candidate under ``criterion``.

    * ``cas``: val accuracy, then class fidelity, then val AUC.
    * ``fidelity`` and ``fidelity_coverage``: class fidelity, then val accuracy, then val AUC.
    * ``fd``: the lower size-matched Fréchet distance, then val accuracy, then val AUC.
    """
    acc, auc = round(result["val_acc"], 6), round(result["val_auc"], 6)
    if criterion == "cas":
        return (acc, round(_quality(result, "fidelity"), 6), auc)
    if criterion in ("fidelity", "fidelity_coverage"):
        return (round(_quality(result, "fidelity"), 6), acc, auc)
    if criterion == "fd":
        return (round(_quality(result, "fd"), 6), acc, auc)
    raise ConfigError(f"criterion must be one of {CRITERIA}; got {criterion!r}")


def eligible(results: list[dict[str, Any]], criterion: Criterion, coverage_floor: float) -> list[dict[str, Any]]:
    """The candidates ``criterion`` ranks: all of them, or those with enough coverage.

    For ``fidelity_coverage``: the candidates whose coverage (the share of real train images with a synthetic image
    among their nearest neighbours, over all ``quality_samples`` images) is at least ``coverage_floor`` x the best
    candidate's.
    """
    if criterion != "fidelity_coverage":
        return results
    if not 0.0 <= coverage_floor <= 1.0:
        raise ConfigError(f"coverage_floor must lie in [0, 1] (a fraction of the best coverage); got {coverage_floor}")
    best = max(r["quality"]["coverage"] for r in results)
    return [r for r in results if r["quality"]["coverage"] >= coverage_floor * best]


def best_of(results: list[dict[str, Any]], criterion: Criterion = "cas", coverage_floor: float = 0.9) -> dict[str, Any]:
    """The best candidate under ``criterion`` (the first one on a full tie)."""
    if criterion not in CRITERIA:
        raise ConfigError(f"criterion must be one of {CRITERIA}; got {criterion!r}")
    if criterion != "cas" and any(r.get("quality") is None for r in results):
        raise ConfigError(f"criterion {criterion!r} needs the quality metrics: give select a teacher_ckpt")
    return max(eligible(results, criterion, coverage_floor), key=lambda r: rank_key(r, criterion))
