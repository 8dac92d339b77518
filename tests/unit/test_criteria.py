"""How select ranks candidates (pure functions over candidate results)."""

import pytest

from kr_lightning.distill.criteria import best_of, eligible
from kr_lightning.errors import ConfigError


def result(name, acc, fidelity, coverage, fd=5.0):
    quality = {"fidelity": fidelity, "coverage": coverage, "matched": {"fd": fd}}
    return {"generator": name, "val_acc": acc, "val_auc": 0.8, "quality": quality}


# BreastMNIST seed 2's own generator, three of its ten checkpoints (val CAS, fidelity, coverage of 1,000 samples)
SEED2 = [
    result("epoch19", 0.654, 0.860, 0.212),
    result("epoch99", 0.782, 0.761, 0.553),
    result("epoch159", 0.769, 0.789, 0.636),
]


def test_fidelity_alone_picks_a_low_coverage_checkpoint_that_the_coverage_floor_leaves_out():
    assert best_of(SEED2, "fidelity")["generator"] == "epoch19"
    assert [r["generator"] for r in eligible(SEED2, "fidelity_coverage", 0.9)] == ["epoch159"]  # 0.553 < 0.9 x 0.636
    assert best_of(SEED2, "fidelity_coverage", 0.9)["generator"] == "epoch159"
    assert best_of(SEED2, "fidelity_coverage", 0.85)["generator"] == "epoch159"  # epoch 99 eligible, less faithful
    assert best_of(SEED2, "fidelity_coverage", 0.0)["generator"] == "epoch19"  # no floor: fidelity alone


def test_the_floor_is_relative_ties_go_to_cas_then_to_the_earlier_candidate():
    low = [result("a", 0.70, 0.90, 0.10), result("b", 0.75, 0.90, 0.095), result("c", 0.75, 0.90, 0.099)]
    assert best_of(low, "fidelity_coverage", 0.9)["generator"] == "b"  # all within 0.9 x 0.10; CAS breaks the tie
    assert best_of(low, "fidelity_coverage", 0.96)["generator"] == "c"  # b falls below 0.096
    assert best_of([result("x", 0.7, 0.8, 0.5), result("y", 0.7, 0.8, 0.5)], "fidelity_coverage")["generator"] == "x"


def test_bad_criterion_floor_or_missing_quality_is_a_config_error():
    with pytest.raises(ConfigError, match="coverage_floor must lie in"):
        best_of(SEED2, "fidelity_coverage", 1.5)
    with pytest.raises(ConfigError, match="criterion must be one of"):
        best_of(SEED2, "coverage")
    with pytest.raises(ConfigError, match="needs the quality metrics"):
        best_of([{**SEED2[0], "quality": None}], "fidelity_coverage")
