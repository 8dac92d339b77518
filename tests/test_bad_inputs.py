"""Bad inputs a user can hit: each gives one clear message and exit status 2, and changes nothing on disk."""

import json
import re

import numpy as np
import pytest
import torch

from conftest import CONFIGS, REPO, cli_error, write_medmnist_npz
from kr_lightning.cli import main


def teacher_fit(run, root, *extra):
    return [
        "fit",
        "--config",
        str(CONFIGS / "tiny_teacher.yaml"),
        f"--trainer.default_root_dir={run}",
        f"--data.root={root}",
        *extra,
    ]


def student_fit(run, generator, teacher, *extra):
    return [
        "fit",
        "--config",
        str(CONFIGS / "tiny_student.yaml"),
        f"--trainer.default_root_dir={run}",
        f"--data.generator={generator}",
        f"--data.teacher_ckpt={teacher}",
        *extra,
    ]


def parse_error(capsys, args):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("kr_lightning: error:") == 1 and "usage:" not in err, err[-2000:]
    assert "--help` for the accepted options" in err
    return err


def test_missing_data_file(tmp_path, capsys):
    message = cli_error(capsys, teacher_fit(tmp_path / "run", tmp_path / "empty"))
    assert "breastmnist.npz" in message and "KR_DATA_ROOT" in message and "--data.download=true" in message
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_truncated_npz(tmp_path, capsys):
    path = write_medmnist_npz(tmp_path / "data")
    path.write_bytes(path.read_bytes()[:300])
    assert "is not a readable npz" in cli_error(capsys, teacher_fit(tmp_path / "run", tmp_path / "data"))


def test_npz_with_wrong_keys(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "breastmnist.npz", x_train=np.zeros((4, 28, 28), np.uint8))
    assert "missing keys" in cli_error(capsys, teacher_fit(tmp_path / "run", tmp_path / "data"))


def test_npz_with_wrong_image_dtype(tmp_path, capsys):
    path = write_medmnist_npz(tmp_path / "data")
    arrays = dict(np.load(path))
    arrays["train_images"] = arrays["train_images"].astype(np.float32)
    np.savez(path, **arrays)
    message = cli_error(capsys, teacher_fit(tmp_path / "run", tmp_path / "data"))
    assert "train_images must be uint8 (N, H, W) or (N, H, W, 3); got float32" in message


def test_npz_with_multilabel_shape(tmp_path, capsys):
    path = write_medmnist_npz(tmp_path / "data")
    arrays = dict(np.load(path))
    arrays["val_labels"] = np.zeros((16, 3), np.uint8)
    np.savez(path, **arrays)
    assert "val_labels must have shape (N,) or (N, 1)" in cli_error(
        capsys, teacher_fit(tmp_path / "r", tmp_path / "data")
    )


def test_labels_outside_the_classes(tmp_path, capsys):
    write_medmnist_npz(tmp_path / "data", num_classes=4)
    assert "labels must lie in [0, 2)" in cli_error(capsys, teacher_fit(tmp_path / "run", tmp_path / "data"))


def test_unknown_medmnist_flag(tmp_path, capsys):
    message = cli_error(capsys, teacher_fit(tmp_path / "run", tmp_path, "--data.flag=breastmnst"))
    assert "unknown dataset 'breastmnst'" in message and "breastmnist" in message


def test_empty_class(tmp_path, capsys):
    path = write_medmnist_npz(tmp_path / "data")
    arrays = dict(np.load(path))
    arrays["train_labels"][:] = 0
    np.savez(path, **arrays)
    assert "no image of class 1" in cli_error(capsys, teacher_fit(tmp_path / "run", tmp_path / "data"))


def test_unknown_config_key(tmp_path, tiny_root, capsys):
    err = parse_error(capsys, teacher_fit(tmp_path / "run", tiny_root, "--model.learning_rate=0.1"))
    assert "learning_rate" in err


def test_wrong_value_type(tmp_path, tiny_root, capsys):
    err = parse_error(capsys, teacher_fit(tmp_path / "run", tiny_root, "--trainer.max_epochs=two"))
    assert "max_epochs" in err


def test_unknown_sampler(tmp_path, tiny_generator_run, tiny_digits_teacher, capsys):
    args = student_fit(tmp_path, tiny_generator_run / "export", tiny_digits_teacher, "--data.sampler=euler")
    assert "sampler" in parse_error(capsys, args)


def test_sweep_value_out_of_range(tmp_path, tiny_generator_run, tiny_digits_teacher, capsys):
    args = student_fit(tmp_path, tiny_generator_run / "export", tiny_digits_teacher, "--model.alpha=1.5")
    assert "0 <= alpha <= 1" in cli_error(capsys, args)


def test_negative_multiplier(tmp_path, tiny_generator_run, tiny_digits_teacher, capsys):
    args = student_fit(
        tmp_path, tiny_generator_run / "export", tiny_digits_teacher, "--data.multiplier=-1", "--data.counts=null"
    )
    assert "multiplier must be > 0" in cli_error(capsys, args)


def test_missing_teacher_checkpoint(tmp_path, tiny_generator_run, capsys):
    message = cli_error(capsys, student_fit(tmp_path, tiny_generator_run / "export", tmp_path / "nope.ckpt"))
    assert "classifier checkpoint not found" in message and "nope.ckpt" in message


def test_missing_generator(tmp_path, tiny_digits_teacher, capsys):
    assert "generator not found" in cli_error(capsys, student_fit(tmp_path, tmp_path / "gen", tiny_digits_teacher))


def test_teacher_checkpoint_given_as_generator(tmp_path, tiny_digits_teacher, capsys):
    message = cli_error(capsys, student_fit(tmp_path, tiny_digits_teacher, tiny_digits_teacher))
    assert "not a DiffusionGenerator checkpoint" in message and "Teacher" in message


def test_teacher_of_another_dataset(tmp_path, tiny_root, tiny_generator_run, capsys):
    main(teacher_fit(tmp_path / "teacher", tiny_root, "--trainer.max_epochs=1"))
    message = cli_error(
        capsys,
        student_fit(tmp_path / "s", tiny_generator_run / "export", tmp_path / "teacher" / "checkpoints" / "best.ckpt"),
    )
    assert re.search(r"teacher .* does not fit dataset 'digits': classes 2 \(data: 10\)", message)


def test_generator_of_another_dataset(tmp_path, tiny_root, tiny_generator_run, capsys):
    main(teacher_fit(tmp_path / "teacher", tiny_root, "--trainer.max_epochs=1"))
    args = [
        "fit",
        "--config",
        str(CONFIGS / "tiny_student.yaml"),
        f"--trainer.default_root_dir={tmp_path / 's'}",
        f"--data.generator={tiny_generator_run / 'export'}",
        f"--data.teacher_ckpt={tmp_path / 'teacher' / 'checkpoints' / 'best.ckpt'}",
        "--data.flag=breastmnist",
        "--data.max_shift=0",
        f"--data.root={tiny_root}",
        "--data.counts=null",
    ]
    message = cli_error(capsys, args)
    assert re.search(r"generator .* does not fit dataset 'breastmnist': classes 10 \(data: 2\), image size 8", message)


def test_checkpoint_of_other_data(tmp_path, tiny_root, capsys):
    write_medmnist_npz(tmp_path / "derma", "dermamnist", channels=3, num_classes=7)
    main(teacher_fit(tmp_path / "derma_run", tmp_path / "derma", "--data.flag=dermamnist", "--trainer.max_epochs=1"))
    args = [
        "test",
        "--config",
        str(CONFIGS / "tiny_teacher.yaml"),
        f"--trainer.default_root_dir={tmp_path / 't'}",
        f"--data.root={tiny_root}",
        f"--ckpt_path={tmp_path / 'derma_run' / 'checkpoints' / 'best.ckpt'}",
    ]
    message = cli_error(capsys, args)
    assert "does not fit this run's data: num_classes 7 (this run: 2), in_channels 3 (this run: 1)" in message


def test_checkpoint_of_the_wrong_stage(tmp_path, tiny_root, tiny_generator_run, capsys):
    args = [
        "test",
        "--config",
        str(CONFIGS / "tiny_teacher.yaml"),
        f"--trainer.default_root_dir={tmp_path}",
        f"--data.root={tiny_root}",
        f"--ckpt_path={tiny_generator_run / 'checkpoints' / 'last.ckpt'}",
    ]
    assert "saved by a DiffusionGenerator stage but this config runs a Teacher" in cli_error(capsys, args)


def test_finished_run_is_not_overwritten(tmp_path, tiny_root, capsys):
    run = tmp_path / "run"
    main(teacher_fit(run, tiny_root, "--trainer.max_epochs=1"))
    before = (run / "checkpoints" / "best.ckpt").read_bytes()
    message = cli_error(capsys, teacher_fit(run, tiny_root, "--trainer.max_epochs=1"))
    assert "already holds a finished run" in message and "--overwrite=true" in message
    assert (run / "checkpoints" / "best.ckpt").read_bytes() == before
    main(teacher_fit(run, tiny_root, "--trainer.max_epochs=1", "--overwrite=true"))
    assert "finished" in json.loads((run / "run.json").read_text())


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, tiny_root, capsys, monkeypatch):
    from kr_lightning.models import Teacher

    original = Teacher.loss

    def poisoned(self, batch):
        loss = original(self, batch)
        return loss * float("nan") if self.current_epoch == 1 else loss

    monkeypatch.setattr(Teacher, "loss", poisoned)
    run = tmp_path / "run"
    message = cli_error(capsys, teacher_fit(run, tiny_root, "--trainer.max_epochs=3"))
    assert "training loss became nan at epoch 1" in message and "last good checkpoint" in message
    kept = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert kept["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in kept["state_dict"].values() if v.is_floating_point())


def test_corrupt_selection_file(tmp_path, tiny_digits_teacher, capsys):
    selection = tmp_path / "selection.json"
    selection.write_text("{not json")
    args = [
        "fit",
        "--config",
        str(CONFIGS / "tiny_student.yaml"),
        f"--trainer.default_root_dir={tmp_path / 's'}",
        f"--data.selection={selection}",
        f"--data.teacher_ckpt={tiny_digits_teacher}",
    ]
    assert "is not valid JSON" in cli_error(capsys, args)
    selection.write_text(json.dumps({"candidates": []}))
    assert "has no 'winner'" in cli_error(capsys, args)


def test_select_without_generator_checkpoints(tmp_path, capsys):
    args = [
        "select",
        "--config",
        str(CONFIGS / "tiny_select.yaml"),
        f"--generator_run={tmp_path}",
        f"--out={tmp_path / 'out'}",
    ]
    assert "no generator checkpoints" in cli_error(capsys, args)


# -- a stage is a recipe applied to one dataset ---------------------------------------------------------------------
RECIPE = REPO / "experiments" / "recipes" / "quick" / "teacher.yaml"
DATA = REPO / "experiments" / "data"


def layout_error(capsys, tmp_path, monkeypatch, *configs, extra=()):
    monkeypatch.chdir(tmp_path)  # the recipe's run folder would land here: nothing may be written
    argv = ["fit", *[a for c in configs for a in ("--config", str(c))], "--trainer.max_epochs=1", *extra]
    message = cli_error(capsys, argv)
    assert not any(tmp_path.iterdir()), sorted(tmp_path.rglob("*"))
    return message


def test_recipe_without_a_data_fragment(tmp_path, monkeypatch, capsys):
    message = layout_error(capsys, tmp_path, monkeypatch, RECIPE)
    assert "names no dataset" in message and "experiments/data/breastmnist.yaml" in message


def test_two_data_fragments(tmp_path, monkeypatch, capsys):
    message = layout_error(capsys, tmp_path, monkeypatch, RECIPE, DATA / "digits.yaml", DATA / "breastmnist.yaml")
    assert "2 data fragments" in message and "digits.yaml (digits)" in message


def test_fragment_of_an_unknown_dataset(tmp_path, monkeypatch, capsys):
    fragment = tmp_path.parent / "nope.yaml"
    fragment.write_text("data:\n  init_args: {flag: imagenet}\n")
    message = layout_error(capsys, tmp_path, monkeypatch, RECIPE, fragment)
    assert "unknown dataset 'imagenet'" in message and "cifar100" in message


@pytest.mark.parametrize(("flag", "flip"), [("digits", "hflip"), ("organcmnist", "hflip"), ("breastmnist", "vflip")])
def test_flip_that_changes_the_labels(flag, flip, tmp_path, monkeypatch, capsys):
    message = layout_error(capsys, tmp_path, monkeypatch, RECIPE, DATA / f"{flag}.yaml", extra=[f"--data.{flip}=true"])
    assert f"{flip}: true changes the labels of {flag}" in message


def test_run_folder_of_another_dataset(tmp_path, tiny_root, capsys):
    run = tmp_path / "run"
    main(teacher_fit(run, tiny_root, "--trainer.max_epochs=1"))
    before = sorted(p.name for p in run.rglob("*"))
    argv = ["fit", "--config", str(CONFIGS / "tiny_digits_teacher.yaml"), f"--trainer.default_root_dir={run}"]
    message = cli_error(capsys, [*argv, "--overwrite=true"])
    assert f"{run} holds a run of 'breastmnist', not 'digits'" in message
    assert sorted(p.name for p in run.rglob("*")) == before


def test_unresolvable_interpolation(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KR_NOT_SET", raising=False)
    overlay = tmp_path.parent / "unresolvable.yaml"
    overlay.write_text("trainer:\n  default_root_dir: ${seed_dir}/${oc.env:KR_NOT_SET}\n")
    message = layout_error(capsys, tmp_path, monkeypatch, RECIPE, overlay, DATA / "digits.yaml")
    assert "cannot resolve the config value" in message and "KR_NOT_SET" in message
