"""How ``select`` ranks candidates: val CAS, class fidelity or Fréchet distance, each with explicit tie-breaks.

A candidate's result holds ``val_acc`` / ``val_auc`` (CAS of the quick students on the real val split) and, when a
teacher is given, ``quality`` (see :mod:`kr_lightning.quality`). On a small val split CAS ties often (78 images:
one image is 0.013), so every criterion breaks ties with the others; the earlier candidate wins a full tie.
"""

from __future__ import annotations

from typing import Any, Literal

from kr_lightning.errors import ConfigError

Criterion = Literal["cas", "fidelity", "fd"]
CRITERIA: tuple[str, ...] = ("cas", "fidelity", "fd")


def _quality(result: dict[str, Any], key: str) -> float:
    quality = result.get("quality")
    if quality is None:
        return 0.0
    value = quality["matched"][key] if key == "fd" else quality[key]
    return -value if key == "fd" else value


def rank_key(result: dict[str, Any], criterion: Criterion) -> tuple[float, ...]:
    """Sort key (higher is better) of one candidate under ``criterion``.

    * ``cas``: val accuracy, then class fidelity, then val AUC.
    * ``fidelity``: class fidelity, then val accuracy, then val AUC.
    * ``fd``: the lower size-matched Fréchet distance, then val accuracy, then val AUC.
    """
    acc, auc = round(result["val_acc"], 6), round(result["val_auc"], 6)
    if criterion == "cas":
        return (acc, round(_quality(result, "fidelity"), 6), auc)
    if criterion == "fidelity":
        return (round(_quality(result, "fidelity"), 6), acc, auc)
    if criterion == "fd":
        return (round(_quality(result, "fd"), 6), acc, auc)
    raise ConfigError(f"criterion must be one of {CRITERIA}; got {criterion!r}")


def best_of(results: list[dict[str, Any]], criterion: Criterion = "cas") -> dict[str, Any]:
    """The best candidate under ``criterion`` (the first one on a full tie)."""
    if criterion != "cas" and any(r.get("quality") is None for r in results):
        raise ConfigError(f"criterion {criterion!r} needs the quality metrics: give select a teacher_ckpt")
    return max(results, key=lambda r: rank_key(r, criterion))
