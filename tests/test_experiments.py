"""Config drift: every recipe x every data fragment x every profile resolves against the code.

Each combination is parsed as a user would run it (``--print_config``) and must name the fragment's dataset and the
run folder the pipeline uses (``kr_lightning.layout.stage_dir``); a few are built in full to check that the model
gets the dataset's classes, channels and image size.
"""

from pathlib import Path

import pytest
import yaml

from conftest import REPO
from kr_lightning.cli import main
from kr_lightning.data import DATASETS, dataset_info
from kr_lightning.layout import stage_dir
from kr_lightning.stages import build_stage

EXPERIMENTS = REPO / "experiments"
PROFILES = sorted(p.name for p in (EXPERIMENTS / "recipes").iterdir() if p.is_dir())
FRAGMENTS = sorted((EXPERIMENTS / "data").glob("*.yaml"))
FIT_STAGES = ("generator", "teacher", "student", "fewstep")
VARIANTS = ("hard_static", "hard_regen", "soft_static")


def printed(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--print_config"])
    assert exit_info.value.code in (0, None), argv
    return yaml.safe_load(capsys.readouterr().out)


def test_layout_covers_every_dataset_and_profile():
    assert {"quick", "cpu", "gpu"} <= set(PROFILES)
    assert sorted(p.stem for p in FRAGMENTS) == sorted(DATASETS)
    assert len([d for d in DATASETS if dataset_info(d).source == "medmnist"]) == 11
    for profile in PROFILES:
        names = {p.name for p in (EXPERIMENTS / "recipes" / profile).glob("*.yaml")} - {
            "teacher_dp.yaml",
            "fewstep.yaml",
        }
        assert names == {"generator.yaml", "teacher.yaml", "select.yaml", "student.yaml", "mia.yaml", "quality.yaml"}, (
            profile
        )
        assert {p.stem for p in (EXPERIMENTS / "recipes" / profile / "variants").glob("*.yaml")} == set(VARIANTS)


def test_recipes_name_no_dataset():
    for recipe in (EXPERIMENTS / "recipes").rglob("*.yaml"):
        text = "\n".join(line.split("#")[0] for line in recipe.read_text().splitlines())  # comments may cite one
        assert not [d for d in DATASETS if d in text], recipe


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("fragment", FRAGMENTS, ids=lambda p: p.stem)
def test_every_recipe_resolves_on_every_dataset(profile, fragment, capsys):
    flag = fragment.stem
    recipes = EXPERIMENTS / "recipes" / profile
    for stage in [s for s in FIT_STAGES if (recipes / f"{s}.yaml").is_file()]:  # fewstep: the CPU profile only
        argv = ["fit", "--config", str(recipes / f"{stage}.yaml"), "--config", str(fragment), "--seed_everything=3"]
        config = printed(argv, capsys)
        assert config["data"]["init_args"]["flag"] == flag
        assert Path(config["trainer"]["default_root_dir"]) == stage_dir("runs", flag, 3, stage)
    for tool in ("select", "mia", "quality"):
        config = printed(
            [tool, "--config", str(recipes / f"{tool}.yaml"), "--config", str(fragment), "--seed=3"], capsys
        )
        assert config["data"]["init_args"]["flag"] == flag
        assert Path(config["out"]) == stage_dir("runs", flag, 3, tool)
        if tool != "mia":
            assert Path(config["teacher_ckpt"]) == stage_dir("runs", flag, 3, "teacher") / "checkpoints" / "best.ckpt"


@pytest.mark.parametrize("recipe", sorted((EXPERIMENTS / "recipes").glob("*/teacher_dp.yaml")), ids=str)
def test_dp_teacher_recipes_name_their_epsilon(recipe, capsys):
    """A DP-SGD teacher recipe trains on Poisson batches and writes to teacher_dp_eps<epsilon>."""
    argv = ["fit", "--config", str(recipe), "--config", str(EXPERIMENTS / "data" / "breastmnist.yaml")]
    config = printed([*argv, "--model.init_args.epsilon=1.0", "--seed_everything=2"], capsys)
    assert config["data"]["init_args"]["sampling"] == "poisson"
    assert config["model"]["class_path"] == "kr_lightning.models.DPTeacher"
    assert Path(config["trainer"]["default_root_dir"]) == stage_dir("runs", "breastmnist", 2, "teacher_dp_eps1.0")


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("flag", ["digits", "dermamnist", "cifar100"])
def test_models_get_the_datasets_classes_channels_and_size(profile, flag, tmp_path):
    info = dataset_info(flag)
    dataset = yaml.safe_load((EXPERIMENTS / "data" / f"{flag}.yaml").read_text())["data"]["init_args"]
    for stage in ("generator", "teacher"):
        built = build_stage(EXPERIMENTS / "recipes" / profile / f"{stage}.yaml", dataset, seed=0, quiet=True)
        hparams = built.model.hparams
        assert (hparams.num_classes, hparams.in_channels, hparams.image_size) == (
            info.num_classes,
            info.in_channels,
            info.image_size,
        ), (profile, stage)


def test_wandb_logger_config_composes(capsys):
    argv = ["fit", "--config", str(EXPERIMENTS / "recipes/quick/teacher.yaml")]
    argv += ["--config", str(EXPERIMENTS / "data/digits.yaml"), "--config", str(EXPERIMENTS / "loggers/wandb.yaml")]
    loggers = printed(argv, capsys)["trainer"]["logger"]
    assert any(lg["class_path"].endswith("WandbLogger") and lg["init_args"]["offline"] for lg in loggers)


@pytest.mark.parametrize("profile", PROFILES)
def test_variant_overlays_compose_with_their_student(profile, capsys):
    recipes = EXPERIMENTS / "recipes" / profile
    data = ["--config", str(EXPERIMENTS / "data/breastmnist.yaml")]
    student = printed(["fit", "--config", str(recipes / "student.yaml"), *data], capsys)["data"]["init_args"]
    for variant in VARIANTS:
        overlay = recipes / "variants" / f"{variant}.yaml"
        argv = ["fit", "--config", str(recipes / "student.yaml"), "--config", str(overlay)]
        config = printed([*argv, *data], capsys)
        for key in ("noise", "mixup", "max_shift", "hflip", "vflip", "multiplier", "batch_size"):  # like with like
            assert config["data"]["init_args"][key] == student[key], (variant, key)
        assert Path(config["trainer"]["default_root_dir"]) == stage_dir("runs", "breastmnist", 0, f"student_{variant}")
        values = yaml.safe_load(overlay.read_text())
        for key, value in values.get("data", {}).get("init_args", {}).items():
            assert config["data"]["init_args"][key] == value
        hard = values.get("model", {}).get("init_args", {}).get("alpha") == 1.0
        assert hard == (config["data"]["init_args"]["teacher_ckpt"] is None)


OVERLAY_FILES = sorted([*(EXPERIMENTS / "overlays").glob("*/*.yaml"), *(EXPERIMENTS / "overlays").glob("*/*/*.yaml")])


@pytest.mark.parametrize("overlay", OVERLAY_FILES, ids=str)
def test_every_overlay_composes_with_every_profile(overlay, capsys):
    """``pipeline --overlays=FOLDER`` layers each file on its stage's recipe (before the dataset): it must parse.

    A file in a subfolder applies to the dataset the subfolder is named after, so it is composed with that dataset.
    """
    stage = overlay.stem
    dataset = overlay.parent.name if overlay.parent.parent.name != "overlays" else "breastmnist"
    command = "fit" if stage in (*FIT_STAGES, "teacher_dp") else stage
    seed = "--seed_everything=3" if command == "fit" else "--seed=3"
    expected = yaml.safe_load(overlay.read_text())
    profiles = [p for p in PROFILES if (EXPERIMENTS / "recipes" / p / f"{stage}.yaml").is_file()]
    assert profiles, f"{overlay} overlays a stage no profile has"
    for profile in profiles:
        recipe = EXPERIMENTS / "recipes" / profile / f"{stage}.yaml"
        argv = [command, "--config", str(recipe), "--config", str(overlay)]
        config = printed([*argv, "--config", str(EXPERIMENTS / "data" / f"{dataset}.yaml"), seed], capsys)
        for key, value in expected.items():
            if not isinstance(value, dict):
                assert config[key] == value, (profile, key)


@pytest.mark.parametrize("overlay", sorted((EXPERIMENTS / "ablations" / "gkd").glob("*.yaml")), ids=lambda p: p.stem)
def test_gkd_ablation_overlays_set_their_knob_in_their_own_folder(overlay, capsys):
    """Each GKD knob overlay (the command in its header) parses, sets its knob and writes to its own run folder."""
    argv = ["fit", "--config", str(EXPERIMENTS / "recipes/cpu/student.yaml"), "--config", str(overlay)]
    config = printed([*argv, "--config", str(EXPERIMENTS / "data/breastmnist.yaml")], capsys)
    assert Path(config["trainer"]["default_root_dir"]) == Path("runs/breastmnist/seed0/ablations/gkd") / overlay.stem
    for group in ("model", "data"):
        for key, value in yaml.safe_load(overlay.read_text()).get(group, {}).get("init_args", {}).items():
            assert config[group]["init_args"][key] == value, (group, key)


def test_fewstep_recipe_and_its_student_overlays_point_at_one_run(capsys):
    """The few-step recipe distils the seed's generator into its own folder; the overlays sample that export."""
    data = ["--config", str(EXPERIMENTS / "data/breastmnist.yaml"), "--seed_everything=2"]
    config = printed(["fit", "--config", str(EXPERIMENTS / "recipes/cpu/fewstep.yaml"), *data], capsys)
    seed_dir = Path("runs/breastmnist/seed2")
    assert Path(config["trainer"]["default_root_dir"]) == seed_dir / "fewstep"
    model, paths = config["model"]["init_args"], config["data"]["init_args"]
    assert model["teacher"] == paths["teacher"] and model["student_steps"] == paths["student_steps"] == 5
    for overlay in sorted((EXPERIMENTS / "ablations" / "fewstep").glob("*.yaml")):
        argv = ["fit", "--config", str(EXPERIMENTS / "recipes/cpu/student.yaml"), "--config", str(overlay), *data]
        init = printed(argv, capsys)["data"]["init_args"]
        assert Path(init["generator"]) == seed_dir / "fewstep" / "export", overlay
        assert (init["steps"], init["guidance"], init["sampler"], init["regenerate_every"]) == (5, 1.0, "ddim", 1)


@pytest.mark.parametrize("profile", PROFILES)
def test_classifier_recipes_keep_the_acc_loss_epoch_and_log_the_best_val_acc(profile):
    """Every classifier recipe keeps ``best.ckpt`` by val/acc_loss (TieBreak) and still logs val/acc_best."""
    recipes = [EXPERIMENTS / "recipes" / profile / f"{s}.yaml" for s in ("teacher", "student", "teacher_dp")]
    for recipe in (r for r in recipes if r.is_file()):
        callbacks = yaml.safe_load(recipe.read_text())["trainer"]["callbacks"]
        by_class = {c["class_path"].rsplit(".", 1)[-1]: c.get("init_args", {}) for c in callbacks}
        assert "TieBreak" in by_class, recipe
        assert by_class["ModelCheckpoint"]["monitor"] == "val/acc_loss", recipe
        assert by_class["BestMetric"] == {"monitor": "val/acc", "mode": "max"}, recipe
