"""``python -m kr_lightning quality`` on a generator run and on an npz, and its bad inputs."""

import json

import numpy as np

from conftest import cli_error
from kr_lightning.cli import main
from kr_lightning.data.datamodule import ImageDataModule

DATA = ["--data=kr_lightning.data.ImageDataModule", "--data.flag=digits"]


def test_quality_of_a_generator_writes_every_metric_beside_the_reference(
    tmp_path, tiny_generator_run, tiny_digits_teacher, capsys
):
    args = ["quality", *DATA, f"--teacher_ckpt={tiny_digits_teacher}", "--n=200", f"--out={tmp_path}"]
    main([*args, f"--generator={tiny_generator_run / 'export'}", "--steps=2"])
    table = capsys.readouterr().out
    assert "fidelity" in table and "hf_energy" in table and "real val" in table and "coverage_per_class" in table
    (path,) = tmp_path.glob("*.json")
    result = json.loads(path.read_text())
    assert result["knobs"]["steps"] == 2 and result["synthetic"]["n"] == 200
    assert len(result["synthetic"]["fidelity_per_class"]) == 10
    for key in ("fidelity", "hf_energy", "fd", "precision", "recall", "density", "coverage"):
        assert key in result["synthetic"] and key in result["reference"]
    main([*args, f"--generator={tiny_generator_run / 'export'}", "--steps=2", "--guidance_interval=[0.5, 100]"])
    (path,) = tmp_path.glob("*-i0.5-100-*.json")
    assert json.loads(path.read_text())["knobs"]["guidance_interval"] == [0.5, 100.0]


def test_quality_of_the_real_train_split_as_an_npz(tmp_path, tiny_digits_teacher, capsys):
    data = ImageDataModule(flag="digits")
    data.setup("fit")
    train = data.split("train")
    npz = tmp_path / "train.npz"
    np.savez(npz, train_images=train.images, train_labels=train.labels.reshape(-1, 1).astype(np.uint8))
    main(["quality", *DATA, f"--teacher_ckpt={tiny_digits_teacher}", f"--npz={npz}", f"--out={tmp_path}"])
    result = json.loads(next(tmp_path.glob("train-*.json")).read_text())["synthetic"]
    assert result["n"] == len(train) and abs(result["fd"]) < 1e-6 and result["coverage"] == 1.0


def test_quality_needs_exactly_one_source(tmp_path, tiny_digits_teacher, capsys):
    err = cli_error(capsys, ["quality", *DATA, f"--teacher_ckpt={tiny_digits_teacher}"])
    assert "exactly one of --generator" in err
