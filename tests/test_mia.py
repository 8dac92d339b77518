import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS
from kr_lightning.cli import main
from kr_lightning.privacy.design import keep_matrix
from kr_lightning.privacy.metrics import auc, tpr_at_fpr
from kr_lightning.privacy.scoring import attack_scores


def simulated(member_shift, n=600, m=8, seed=0):
    """Two-class logits whose confidence rises by ``member_shift`` on training examples."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    keep = keep_matrix(m, n, rng)
    target_in = rng.random(n) < 0.5

    def logits(is_in):
        margin = 1.0 + member_shift * is_in + rng.normal(0, 0.5, is_in.shape)
        z = np.zeros(is_in.shape + (1, 2))
        z[..., 0, 1] = np.where(labels == 1, margin, -margin)
        return z

    refs = np.stack([logits(keep[i]) for i in range(m)])
    return logits(target_in), refs, keep, labels, target_in


@pytest.mark.parametrize("member_shift", [4.0])
def test_every_attack_catches_an_overfit_target(member_shift):
    target, refs, keep, labels, member = simulated(member_shift)
    scores = attack_scores(target, refs, keep, labels, ~member, rmia_refs=[1, 2], rmia_a=0.3)
    for name, s in scores.items():
        assert auc(s, member) > 0.95, name
        assert tpr_at_fpr(s, member, 0.01) > 0.15, name  # far above the 1 % of a blind guess


def test_attacks_are_at_chance_on_a_target_that_never_saw_the_members():
    target, refs, keep, labels, member = simulated(4.0)
    _, _, _, _, unseen = simulated(0.0, seed=1)
    clean, *_ = simulated(0.0, seed=2)  # same distribution for every example: no membership signal
    scores = attack_scores(clean, refs, keep, labels, ~unseen, rmia_refs=[1], rmia_a=0.3)
    for name, s in scores.items():
        assert abs(auc(s, unseen) - 0.5) < 0.07, name


@pytest.fixture(scope="module")
def tiny_student_run(tmp_path_factory, tiny_generator_run, tiny_digits_teacher):
    run = tmp_path_factory.mktemp("student") / "run"
    main(
        [
            "fit",
            "--config",
            str(CONFIGS / "tiny_student.yaml"),
            f"--trainer.default_root_dir={run}",
            f"--data.generator={tiny_generator_run / 'export'}",
            f"--data.teacher_ckpt={tiny_digits_teacher}",
            "--trainer.max_epochs=1",
        ]
    )
    return run


def run_mia(tmp_path, teacher, student, generator_run, *extra):
    selection = tmp_path / "selection.json"
    winner = {"generator": str(generator_run / "export"), "steps": 2, "guidance": 2.0, "sampler": "ddim"}
    selection.write_text(json.dumps({"winner": winner}))
    main(
        [
            "mia",
            "--config",
            str(CONFIGS / "tiny_mia.yaml"),
            f"--teacher_run={teacher.parent.parent}",
            f"--student_run={student}",
            f"--cache_dir={tmp_path / 'synthetic'}",
            f"--out={tmp_path / 'mia'}",
            *extra,
        ]
    )
    return json.loads((tmp_path / "mia" / "mia.json").read_text())


def test_mia_end_to_end_resumes_and_checks_m(
    tmp_path, tiny_digits_teacher, tiny_student_run, tiny_generator_run, monkeypatch, capsys
):
    deployed = [tiny_digits_teacher, tiny_student_run / "checkpoints" / "best.ckpt"]
    before = [p.read_bytes() for p in deployed]
    result = run_mia(tmp_path, tiny_digits_teacher, tiny_student_run, tiny_generator_run)
    assert [p.read_bytes() for p in deployed] == before  # reference runs write their checkpoints in their own folder
    recorded = result["deployed"]  # which exact files were audited (the report leaves the audit out once they change)
    assert [Path(recorded[k]["ckpt"]).resolve() for k in ("teacher", "student")] == [p.resolve() for p in deployed]
    assert [recorded[k]["sha256"] for k in ("teacher", "student")] == [hashlib.sha256(b).hexdigest() for b in before]
    assert "lower bound" in result["note"] and "canaries" in result["note"] and result["n_references"] == 4
    models = ("teacher", "student", "student, pooled over 4 reference targets", "teacher, canaries, pooled over 4")
    for model in [m for m in result["models"] if m.startswith(models)]:
        attacks = result["models"][model]["attacks"]
        assert {
            "loss",
            "mentr_classwise",
            "lira_online_fixed_var",
            "lira_offline_fixed_var",
            "rmia_offline_1ref",
        } <= set(attacks)
        for summary in attacks.values():
            assert 0 <= summary["auc"] <= 1 and len(summary["tpr_at_fpr_0.01_ci"]) == 2
    assert len([m for m in result["models"] if m.startswith(models)]) == 6  # canaries pooled for teacher, student
    pool = result["pool"]  # digits: 1,078 train + 539 test images (val selects: not in the pool), 6 canaries
    assert pool["n"] == 1078 + 539 and pool["canaries"] == 6 and pool["inclusion"] == 0.5
    assert pool["members_of_deployed"] + pool["nonmembers_of_deployed"] + 6 == pool["n"]
    teacher = result["models"]["teacher"]["attacks"]["loss"]
    assert (teacher["n_members"], teacher["n_nonmembers"]) == (
        pool["members_of_deployed"],
        pool["nonmembers_of_deployed"],
    )
    assert pool["nonmembers_of_deployed"] >= 539 - 6
    canaries = result["models"]["teacher, canaries, pooled over 4 reference targets"]["attacks"]["loss"]
    assert canaries["n_members"] == canaries["n_nonmembers"] == 6 * 2  # each canary IN for 2 of the 4 targets
    best = 0.05 ** (1 / 12)  # Clopper-Pearson at 12 of 12: no 12-vs-12 test bounds epsilon above ln(best / (1 - best))
    assert 0.0 <= canaries["epsilon_lower_bound"] <= np.log(best / (1 - best)) + 1e-9
    with np.load(tmp_path / "mia" / "keep.npz") as saved:
        keep, origin = saved["keep"], saved["origin"]
    np.testing.assert_array_equal(keep.sum(0), 2)
    assert (origin == "canary").sum() == 6 and "val" not in set(origin)
    with np.load(tmp_path / "mia" / "targets.npz") as saved:  # the deployed models' logits, for re-scoring
        assert saved["teacher"].shape[:2] == saved["student"].shape[:2] == (1617, 5)
    assert len(result["most_exposed"]["student"]) == 3
    assert 0.0 <= result["memorisation"]["pixels"]["share_closer_to_train"] <= 1.0
    assert (tmp_path / "mia" / "roc_teacher_lira_online_fixed_var.png").is_file()
    assert sorted(p.name for p in (tmp_path / "mia" / "refs").iterdir()) == [f"ref00{i}" for i in range(4)]

    def no_training(*args, **kwargs):
        raise AssertionError("a finished reference run was trained again")

    monkeypatch.setattr("kr_lightning.privacy.references.train_classifier", no_training)
    monkeypatch.setattr("kr_lightning.privacy.audit.view_logits", no_training)  # targets re-scored from targets.npz
    plotted = {}
    monkeypatch.setattr(
        "kr_lightning.privacy.audit.roc_figure", lambda path, title, curves: plotted.update({title: curves})
    )
    again = run_mia(tmp_path, tiny_digits_teacher, tiny_student_run, tiny_generator_run, "--rmia_tie_break=true")
    for kind in ("teacher", "student"):  # each ROC curve holds exactly the scores of its table row
        curves = plotted[f"{kind}: loss"]
        rows = {"deployed": kind, "pooled LOO": f"{kind}, pooled over 4 reference targets"}
        rows["canaries (pooled LOO)"] = f"{kind}, canaries, pooled over 4 reference targets"
        for label, (_, is_member) in curves.items():
            row = again["models"][rows[label]]["attacks"]["loss"]
            assert (int(is_member.sum()), int((~is_member).sum())) == (row["n_members"], row["n_nonmembers"]), label
    assert again["rmia"]["rmia_tie_break"] and again["models"].keys() == result["models"].keys()
    assert again["models"]["teacher"]["attacks"]["loss"] == result["models"]["teacher"]["attacks"]["loss"]
    with pytest.raises(SystemExit):
        run_mia(tmp_path, tiny_digits_teacher, tiny_student_run, tiny_generator_run, "--n_references=6")
    assert re.search("holds an audit with 4 reference models.*does not match", capsys.readouterr().err)
    with pytest.raises(SystemExit):
        run_mia(tmp_path, tiny_digits_teacher, tiny_student_run, tiny_generator_run, "--n_canaries=7")
    assert re.search("holds an audit with 4 reference models.*does not match", capsys.readouterr().err)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("--n_canaries=5000", "exceeds the 1617 images of the pool"),
        ("--rmia_refs=[2]", "RMIA with 2 references needs >= 3 OUT"),
        ("--inclusion=0.9", "IN for 4 and OUT for 0"),
    ],
)
def test_mia_refuses_designs_it_cannot_score(
    tmp_path, tiny_digits_teacher, tiny_student_run, tiny_generator_run, capsys, extra, message
):
    with pytest.raises(SystemExit) as exit_info:
        run_mia(tmp_path, tiny_digits_teacher, tiny_student_run, tiny_generator_run, extra)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "mia" / "keep.npz").exists()
