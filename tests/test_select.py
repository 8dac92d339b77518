import functools
import json

import pytest
import torch

from conftest import CONFIGS
from kr_lightning.cli import main
from kr_lightning.data.datamodule import ImageDataModule
from kr_lightning.distill.selection import describe_net
from kr_lightning.models.networks import SmallCNN
from kr_lightning.quality.command import generated_images
from kr_lightning.quality.scorer import QualityScorer


def run_select(generator_run, out, *extra):
    main(
        [
            "select",
            "--config",
            str(CONFIGS / "tiny_select.yaml"),
            f"--generator_run={generator_run}",
            f"--out={out}",
            *extra,
        ]
    )
    return json.loads((out / "selection.json").read_text())


def test_select_scores_every_checkpoint_then_the_knob_grid(tmp_path, tiny_generator_run):
    result = run_select(tiny_generator_run, tmp_path / "select")
    assert [c["epoch"] for c in result["checkpoints"]] == [0, 1]
    assert sorted(k["guidance"] for k in result["knobs"]) == [1.0, 3.0]
    for row in result["checkpoints"] + result["knobs"]:
        assert 0.0 <= row["val_acc"] <= 1.0 and 0.0 <= row["val_auc"] <= 1.0
    winner = result["winner"]
    assert winner["generator"] in {c["generator"] for c in result["checkpoints"]}
    best = max(result["checkpoints"] + result["knobs"], key=lambda r: (r["val_acc"], r["val_auc"]))
    assert winner["val_acc"] == best["val_acc"]
    assert (tmp_path / "select" / "selection.png").is_file()


def test_select_never_reads_the_test_split(tmp_path, tiny_generator_run, monkeypatch):
    requested = []
    original = ImageDataModule.split

    def spy(self, name):
        requested.append(name)
        return original(self, name)

    def forbidden(self):
        raise AssertionError("selection touched the test split")

    monkeypatch.setattr(ImageDataModule, "split", spy)
    monkeypatch.setattr(ImageDataModule, "test_dataloader", forbidden)
    monkeypatch.setattr(ImageDataModule, "predict_dataloader", forbidden)
    run_select(tiny_generator_run, tmp_path / "select")
    assert "val" in requested and "test" not in requested


def test_select_resumes_from_finished_candidates(tmp_path, tiny_generator_run, capsys):
    out = tmp_path / "select"
    first = run_select(tiny_generator_run, out)
    capsys.readouterr()
    second = run_select(tiny_generator_run, out)
    assert "val acc" not in capsys.readouterr().out  # nothing was scored again
    assert first == second


def test_bf16_selection_scores_its_own_candidates(tmp_path, tiny_generator_run, capsys, monkeypatch):
    monkeypatch.setattr("kr_lightning.models.speedups.bf16_unsupported", lambda device: None)
    out = tmp_path / "select"
    run_select(tiny_generator_run, out)
    exact = set((out / "candidates").glob("*.json"))
    capsys.readouterr()
    result = run_select(tiny_generator_run, out, "--gen_precision=bf16-mixed")
    assert "val acc" in capsys.readouterr().out  # float32 results were not reused for bf16 images
    assert len(set((out / "candidates").glob("*.json")) - exact) == len(exact)
    assert result["recipe"]["gen_precision"] == "bf16-mixed"


def test_soft_selection_needs_a_teacher(tmp_path, tiny_generator_run, capsys):
    with pytest.raises(SystemExit):
        run_select(tiny_generator_run, tmp_path, "--labels=soft")
    assert "labels: soft needs teacher_ckpt" in capsys.readouterr().err


def test_student_reads_the_selection(tmp_path, tiny_generator_run, tiny_digits_teacher):
    run_select(tiny_generator_run, tmp_path / "select")
    run = tmp_path / "student"
    main(
        [
            "fit",
            "--config",
            str(CONFIGS / "tiny_student.yaml"),
            f"--trainer.default_root_dir={run}",
            f"--data.selection={tmp_path / 'select' / 'selection.json'}",
            f"--data.teacher_ckpt={tiny_digits_teacher}",
            "--data.steps=null",
            "--trainer.max_epochs=1",
        ]
    )
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_net_description_is_the_same_in_every_process():
    """The resume tag hashes the backbone; jsonargparse's partial wraps it in per-process functions."""

    def wrapper(instantiator, cls, *args, **kwargs):
        return instantiator(cls, *args, **kwargs)

    first = functools.partial(wrapper, lambda c, **k: c(**k), SmallCNN, width=32, dropout=0.2)
    second = functools.partial(wrapper, lambda c, **k: c(**k), SmallCNN, dropout=0.2, width=32)
    assert describe_net(first) == describe_net(second) == "kr_lightning.models.networks.SmallCNN(dropout=0.2, width=32)"
    assert describe_net(SmallCNN) == "kr_lightning.models.networks.SmallCNN()"
    assert describe_net(functools.partial(SmallCNN, width=16)) != describe_net(first)


def test_select_scores_quality_and_selects_by_fidelity(tmp_path, tiny_generator_run, tiny_digits_teacher, capsys):
    teacher = f"--teacher_ckpt={tiny_digits_teacher}"
    result = run_select(
        tiny_generator_run, tmp_path / "select", teacher, "--quality_samples=200", "--criterion=fidelity"
    )
    rows = result["checkpoints"] + result["knobs"]
    for row in rows:
        quality = row["quality"]
        assert quality["n"] == 200 and quality["matched"]["n"] == 180  # the digits val split's size
        assert 0.0 <= quality["fidelity"] <= 1.0 and quality["fd"] >= 0.0
    assert result["quality_reference"]["n"] == 180 and result["criterion"] == "fidelity"
    best_ckpt = max(result["checkpoints"], key=lambda r: r["quality"]["fidelity"])
    finalists = result["knobs"] + [r for r in result["checkpoints"] if r["generator"] == best_ckpt["generator"]]
    assert result["winner"]["quality"]["fidelity"] == max(r["quality"]["fidelity"] for r in finalists)
    # another sample count: the quality metrics are recomputed, the CAS results reused
    capsys.readouterr()
    again = run_select(tiny_generator_run, tmp_path / "select", teacher, "--quality_samples=190")
    assert "class fidelity" in capsys.readouterr().out and (tmp_path / "select" / "selection.png").is_file()
    assert [r["quality"]["n"] for r in again["checkpoints"]] == [190, 190]
    assert [r["val_acc"] for r in again["checkpoints"]] == [r["val_acc"] for r in result["checkpoints"]]
    # the coverage-guarded criterion, re-ranked from the same candidate files; floor 1: the best coverage wins
    guarded = run_select(
        tiny_generator_run,
        tmp_path / "select",
        teacher,
        "--quality_samples=190",
        "--criterion=fidelity_coverage",
        "--coverage_floor=1.0",
    )
    assert guarded["criterion"] == "fidelity_coverage" and guarded["coverage_floor"] == 1.0
    best_ckpt = max(guarded["checkpoints"], key=lambda r: r["quality"]["coverage"])
    finalists = guarded["knobs"] + [r for r in guarded["checkpoints"] if r["generator"] == best_ckpt["generator"]]
    assert guarded["winner"]["quality"]["coverage"] == max(r["quality"]["coverage"] for r in finalists)


def test_quality_criteria_need_a_teacher(tmp_path, tiny_generator_run, capsys):
    with pytest.raises(SystemExit):
        run_select(tiny_generator_run, tmp_path, "--criterion=fd")
    assert "needs the quality metrics" in capsys.readouterr().err


def test_select_tries_guidance_intervals_and_old_candidate_names_stay(tmp_path, tiny_generator_run):
    import hashlib

    from kr_lightning.distill.candidates import Candidate

    result = run_select(tiny_generator_run, tmp_path / "select", "--interval_grid=[null, [0.5, 100.0]]")
    intervals = sorted(str(k["guidance_interval"]) for k in result["knobs"])
    assert intervals == ["None", "None", "[0.5, 100.0]", "[0.5, 100.0]"]
    assert "guidance_interval" in result["winner"]
    every = Candidate("g.ckpt", 10, 2.0, "dpmsolver++")
    fields = {"generator": "g.ckpt", "steps": 10, "guidance": 2.0, "sampler": "dpmsolver++"}
    digest = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
    assert every.key == f"g-dpmsolver++-s10-g2-{digest}"  # results scored before the option are reused
    assert Candidate("g.ckpt", 10, 2.0, "dpmsolver++", (0.5, 3.0)).key.startswith("g-dpmsolver++-s10-g2-i0.5-3-")


def test_quality_scorer_runs_on_the_accelerator(tmp_path, tiny_generator_run, tiny_digits_teacher, monkeypatch):
    """The quality samples and the teacher run where the quick students do (on a GPU: not on the CPU)."""
    seen = []

    class Stop(Exception):
        pass

    def record(cls, data, teacher_ckpt, *, seed, device):
        seen.append(device)
        raise Stop

    monkeypatch.setattr(QualityScorer, "from_data", classmethod(record))
    with pytest.raises(Stop):
        run_select(
            tiny_generator_run, tmp_path / "select", f"--teacher_ckpt={tiny_digits_teacher}", "--accelerator=gpu"
        )
    assert seen == [torch.device("cuda")]


def test_quality_samples_use_the_scorers_device_and_the_students_precision(
    tmp_path, tiny_generator_run, tiny_digits_teacher, monkeypatch
):
    monkeypatch.setattr("kr_lightning.models.speedups.bf16_unsupported", lambda device: None)
    seen = []

    def record(*args, **kwargs):  # what the generator of each candidate's quality samples is asked to run on
        seen.append({"device": kwargs["device"], "bf16": kwargs["bf16"]})
        return generated_images(*args, **kwargs)

    monkeypatch.setattr("kr_lightning.distill.candidates.generated_images", record)
    teacher = f"--teacher_ckpt={tiny_digits_teacher}"
    result = run_select(
        tiny_generator_run, tmp_path / "select", teacher, "--quality_samples=180", "--gen_precision=bf16-mixed"
    )
    assert len(seen) == len(result["checkpoints"]) + len(result["knobs"]) == 4
    assert all(k == {"device": torch.device("cpu"), "bf16": True} for k in seen)
