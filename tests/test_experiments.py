"""Config drift: every experiment YAML parses against the code (LightningCLI --print_config)."""

from pathlib import Path

import pytest
import yaml

from conftest import REPO
from kr_lightning.cli import main

VARIANTS = sorted((REPO / "experiments").glob("*/variants/*.yaml"))
LIGHTNING_CONFIGS = sorted(
    p
    for p in (REPO / "experiments").rglob("*.yaml")
    if p not in VARIANTS
    if "trainer" in (yaml.safe_load(p.read_text()) or {}) and "model" in (yaml.safe_load(p.read_text()) or {})
)


def test_there_are_experiment_configs():
    names = {str(p.relative_to(REPO / "experiments")) for p in LIGHTNING_CONFIGS}
    assert {"breastmnist/teacher.yaml", "digits/teacher.yaml", "gpu/teacher.yaml"} <= names


@pytest.mark.parametrize("path", LIGHTNING_CONFIGS, ids=lambda p: str(Path(p).relative_to(REPO / "experiments")))
def test_experiment_config_parses(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(path), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert isinstance(printed["seed_everything"], int)
    assert printed["trainer"]["default_root_dir"].startswith("runs/")


def test_wandb_logger_config_composes(capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "fit",
                "--config",
                str(REPO / "experiments/digits/teacher.yaml"),
                "--config",
                str(REPO / "experiments/loggers/wandb.yaml"),
                "--print_config",
            ]
        )
    printed = yaml.safe_load(capsys.readouterr().out)
    loggers = printed["trainer"]["logger"]
    assert any(lg["class_path"].endswith("WandbLogger") and lg["init_args"]["offline"] for lg in loggers)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda p: str(Path(p).relative_to(REPO / "experiments")))
def test_variant_overlays_compose_with_their_student(variant, capsys):
    base = variant.parent.parent / "student.yaml"
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(base), "--config", str(variant), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    overlay = yaml.safe_load(variant.read_text())
    if "trainer" in overlay:  # the GPU overlays leave the run folder to the pipeline
        assert printed["trainer"]["default_root_dir"] == overlay["trainer"]["default_root_dir"]
    for key, value in overlay.get("data", {}).get("init_args", {}).items():
        assert printed["data"]["init_args"][key] == value
    hard = overlay.get("model", {}).get("init_args", {}).get("alpha") == 1.0
    assert hard == (printed["data"]["init_args"]["teacher_ckpt"] is None)


SELECT_CONFIGS = sorted((REPO / "experiments").glob("*/select.yaml"))


@pytest.mark.parametrize("path", SELECT_CONFIGS, ids=lambda p: Path(p).parent.name)
def test_select_config_parses(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["select", "--config", str(path), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["out"].startswith("runs/") and printed["guidance_grid"]
