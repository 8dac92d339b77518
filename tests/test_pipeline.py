import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import CONFIGS, REPO
from kr_lightning.cli import main
from kr_lightning.errors import MissingInputError, Terminated
from kr_lightning.pipeline import plan, share_generator
from kr_lightning.records import records
from kr_lightning.report import generator_sharing


def parses(step, capsys):
    argv = step.argv + step.extra
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--print_config"])
    assert exit_info.value.code in (0, None), argv
    return yaml.safe_load(capsys.readouterr().out)


LAYOUT = {"run_root": "runs", "seed_dir": "${run_root}/${data.init_args.flag}/seed${seed_everything}"}


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_dry_run_plans_every_stage_from_the_shared_recipes(profile, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    datasets = ["pneumoniamnist", "retinamnist", "dermamnist"]
    runs = tmp_path / "runs"  # not the checkout's runs/, whose finished stages would be skipped
    main(["pipeline", f"--datasets=[{','.join(datasets)}]", f"--profile={profile}", f"--runs={runs}", "--dry_run=true"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("pipeline: [")]
    per_dataset = 14 if profile == "cpu" else 13  # the CPU profile's students draw from a few-step generator
    assert len(lines) == 3 * per_dataset
    for flag in datasets:
        mine = [line for line in lines if line.startswith(f"pipeline: [{flag} seed 0]")]
        assert len(mine) == per_dataset
        assert any("recipes/cpu/fewstep.yaml" in line for line in mine) == (profile == "cpu")
        for line in mine:
            assert f"--config experiments/recipes/{profile}/" in line
            assert line.count(f"--config experiments/data/{flag}.yaml") == 1
            assert f"--run_root={runs}" in line


def test_dry_run_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    out = ["--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    main(["pipeline", "--datasets=[dermamnist]", "--profile=cpu", *out, "--dry_run=true"])
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "results").exists()  # no report of runs that did not happen


def test_plan_commands_are_the_hand_run_commands(tmp_path, capsys):
    """Every planned step parses, names the dataset and writes where the pipeline looks for it."""
    steps = plan(
        "pneumoniamnist",
        1,
        profile="gpu",
        experiments=REPO / "experiments",
        runs=tmp_path,
        variants=["hard_static"],
        mia=True,
        trainer_args=["--trainer.devices=1"],
    )
    assert [s.name for s in steps][:3] == ["generator: fit", "teacher: fit", "teacher: test"]
    for step in steps:
        printed = parses(step, capsys)
        assert printed["data"]["init_args"]["flag"] == "pneumoniamnist", step.name
        folder = printed["trainer"]["default_root_dir"] if "trainer" in printed else printed["out"]
        assert step.done.is_relative_to(folder), step.name
        assert printed.get("seed_everything", printed.get("seed")) == 1


def test_dp_audits_attack_the_dp_teacher_without_the_real_data_accuracy_floor(tmp_path, capsys):
    """The CPU profile's floor (0.75) is above what a DP-SGD teacher reaches on BreastMNIST (0.731 at epsilon 1):
    its audit would retrain every DP-trained reference and then stop; DP audits run with no floor."""
    steps = plan(
        "breastmnist",
        0,
        profile="cpu",
        experiments=REPO / "experiments",
        runs=tmp_path,
        variants=[],
        mia=True,
        trainer_args=[],
        dp_epsilons=[1.0],
    )
    audit = parses(next(s for s in steps if s.name == "mia_dp_eps1.0"), capsys)
    assert audit["min_accuracy"] == 0.0 and audit["student"] is False
    assert audit["teacher_run"] == str(tmp_path / "breastmnist" / "seed0" / "teacher_dp_eps1.0")
    main_audit = parses(next(s for s in steps if s.name == "mia"), capsys)
    assert main_audit["min_accuracy"] == 0.75  # the real-data references keep the profile's floor


def tiny_experiments(folder):
    """A profile ``tiny`` made of the test configs, with the recipes' layout keys and no dataset in them."""
    recipes = folder / "recipes" / "tiny"
    (recipes / "variants").mkdir(parents=True)
    (folder / "data").mkdir()
    shutil.copy(REPO / "experiments" / "data" / "digits.yaml", folder / "data" / "digits.yaml")
    for stage, source in [
        ("generator", "tiny_generator"),
        ("teacher", "tiny_digits_teacher"),
        ("student", "tiny_student"),
    ]:
        config = yaml.safe_load((CONFIGS / f"{source}.yaml").read_text()) | LAYOUT
        config["trainer"]["default_root_dir"] = f"${{seed_dir}}/{stage}"
        config["data"]["init_args"].pop("flag")
        if stage == "student":
            config["data"]["init_args"] |= {
                "selection": "${seed_dir}/select/selection.json",
                "teacher_ckpt": "${seed_dir}/teacher/checkpoints/best.ckpt",
                "cache_dir": "${seed_dir}/synthetic",
            }
        (recipes / f"{stage}.yaml").write_text(yaml.safe_dump(config))
    dp = yaml.safe_load((recipes / "teacher.yaml").read_text())
    dp["trainer"]["default_root_dir"] = "${seed_dir}/teacher_dp_eps${model.init_args.epsilon}"
    dp["model"]["class_path"] = "kr_lightning.models.DPTeacher"
    dp["data"]["init_args"]["sampling"] = "poisson"
    (recipes / "teacher_dp.yaml").write_text(yaml.safe_dump(dp))
    (recipes / "variants" / "hard_static.yaml").write_text(
        "trainer: {default_root_dir: '${seed_dir}/student_hard_static'}\n"
        "model:\n  init_args: {alpha: 1.0}\ndata:\n  init_args: {teacher_ckpt: null, regenerate_every: 0}\n"
    )
    tools = {"run_root": "runs", "seed_dir": "${run_root}/${data.init_args.flag}/seed${seed}"}
    select = yaml.safe_load((CONFIGS / "tiny_select.yaml").read_text()) | tools
    select |= {
        "generator_run": "${seed_dir}/generator",
        "out": "${seed_dir}/select",
        "data": {"class_path": "kr_lightning.data.ImageDataModule"},
    }
    (recipes / "select.yaml").write_text(yaml.safe_dump(select))
    mia = yaml.safe_load((CONFIGS / "tiny_mia.yaml").read_text()) | tools
    mia |= {"out": "${seed_dir}/mia", "data": {"class_path": "kr_lightning.data.ImageDataModule"}}
    (recipes / "mia.yaml").write_text(yaml.safe_dump(mia))


@pytest.mark.long
def test_pipeline_runs_every_stage_then_skips_them(tmp_path, capsys):
    tiny_experiments(tmp_path / "experiments")
    args = [
        "pipeline",
        "--datasets=[digits]",
        "--profile=tiny",
        f"--experiments={tmp_path / 'experiments'}",
        f"--runs={tmp_path / 'runs'}",
        f"--results={tmp_path / 'results'}",
        "--name=quick",
        "--variants=[hard_static]",
        "--dp_epsilons=[8]",
    ]
    main(args)
    out = capsys.readouterr().out
    table = (tmp_path / "results" / "quick.md").read_text()
    for row in ("Teacher (real data)", "GKD student", "hard labels, static set", "DP-SGD teacher, epsilon 8.0"):
        assert row in table, row
    for row in ("Privacy audit `mia`", "Privacy audit `mia_dp_eps8.0`"):
        assert row in table, row
    utility = table.split("Privacy-utility")[1].split("\n\n")[1]  # one row per audited model
    for row in ("| Teacher (real data) | 0.", "| GKD student", "| DP-SGD teacher, epsilon 8.0 (real data) | 0."):
        assert row in utility, row
    assert (tmp_path / "results" / "quick_digits_privacy_utility.png").is_file()
    result = json.loads((tmp_path / "results" / "quick.json").read_text())
    assert set(result["tables"]["digits"][0]) >= {"acc", "auc", "gap", "sources"}
    assert "done (" not in out
    stages = ("generator", "teacher", "teacher_dp_eps8.0", "select", "student", "student_hard_static", "mia")
    for stage in (*stages, "mia_dp_eps8.0"):
        assert (tmp_path / "runs" / "digits" / "seed0" / stage).is_dir(), stage
    dp_audit = json.loads((tmp_path / "runs" / "digits" / "seed0" / "mia_dp_eps8.0" / "mia.json").read_text())
    assert dp_audit["note"].startswith("teacher only") and "student" not in dp_audit["models"]
    main(args)
    again = capsys.readouterr().out
    assert again.count(": done (") == 12  # every stage is skipped the second time
    # a second seed on seed 0's generator: it links generator / select, trains its own teacher and student
    main([*args[:6], "--variants=[]", "--mia=false", "--seeds=[0,1]", "--shared_generator=true"])
    out = capsys.readouterr().out
    seed1 = tmp_path / "runs" / "digits" / "seed1"
    assert (seed1 / "generator").readlink() == Path("../seed0/generator")
    assert (seed1 / "select").resolve() == (tmp_path / "runs" / "digits" / "seed0" / "select").resolve()
    assert "[digits seed 1] generator: fit" not in out and "[digits seed 1] student: test" in out
    assert (seed1 / "student" / "test" / "test_metrics.json").is_file()
    table = (tmp_path / "results" / "results.md").read_text()
    assert "Generators: 1 trained (`seed0/generator` for seed0, seed1)." in table
    # records: the files the table is built from, copied out of runs/; report over the copies gives the same table
    archive = tmp_path / "records"
    main(["records", f"--runs={tmp_path / 'runs'}", f"--out={archive}"])
    assert (archive / "digits" / "seed1" / "generator").readlink() == Path("../seed0/generator")
    copied = sorted(str(p.relative_to(archive)) for p in archive.rglob("*") if p.is_file())
    assert "digits/seed0/mia/mia.json" in copied and "digits/seed1/student/test/test_metrics.json" in copied
    assert not any(p.endswith((".ckpt", ".npz", ".png", ".safetensors")) for p in copied)
    manifest = json.loads((archive / "digits" / "records.json").read_text())
    assert len(manifest["files"]) == len(copied) - 1
    main(["report", f"--runs={archive}", f"--out={tmp_path / 'from_records'}"])
    again = (tmp_path / "from_records" / "results.md").read_text()

    def rows(text):
        return [line for line in text.splitlines() if line.startswith("|") or line.startswith("Generators")]

    assert rows(again) == rows(table) and "Privacy audit `mia`" in again  # audits kept without their checkpoints
    assert f"`{archive / 'digits' / 'seed1' / 'student' / 'test' / 'test_metrics.json'}`" in again


def test_records_refuse_an_empty_run_root_and_leave_out_stale_audits(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "records"
    with pytest.raises(MissingInputError, match="no dataset folders under .*runs"):
        records(runs=str(runs), out=str(out))
    seed0 = runs / "digits" / "seed0"
    (seed0 / "student").mkdir(parents=True)
    with pytest.raises(MissingInputError, match="no run records"):
        records(runs=str(runs), out=str(out))
    (seed0 / "student" / "test").mkdir()
    (seed0 / "student" / "test" / "test_metrics.json").write_text('{"metrics": {"test/acc": 0.9, "test/auc": 0.95}}')
    (seed0 / "mia").mkdir()
    gone = {"teacher": {"ckpt": str(tmp_path / "retrained.ckpt"), "sha256": "0" * 64}}
    (seed0 / "mia" / "mia.json").write_text(json.dumps({"deployed": gone}))
    records(runs=str(runs), out=str(out))
    assert "left out" in capsys.readouterr().out
    assert (out / "digits" / "seed0" / "student" / "test" / "test_metrics.json").is_file()
    assert not (out / "digits" / "seed0" / "mia").exists()


def test_records_copy_links_out_of_the_run_root_and_keep_links_between_its_seeds(tmp_path):
    """A shared generator stays a link (``report`` counts generators by it); a stage or seed folder linked in from
    another run root is copied, or the archive would hold a link that dangles in a clone."""
    runs, out, elsewhere = tmp_path / "runs", tmp_path / "records", tmp_path / "elsewhere"

    def stage(folder, acc):
        (folder / "test").mkdir(parents=True)
        (folder / "run.json").write_text("{}")
        (folder / "test" / "test_metrics.json").write_text(json.dumps({"metrics": {"test/acc": acc}}))

    stage(runs / "digits" / "seed0" / "generator", 0.1)
    stage(elsewhere / "seed1" / "teacher", 0.8)
    stage(elsewhere / "seed2" / "generator", 0.2)
    (runs / "digits" / "seed1").mkdir()
    (runs / "digits" / "seed1" / "generator").symlink_to(Path("..") / "seed0" / "generator")  # as the pipeline does
    (runs / "digits" / "seed1" / "teacher").symlink_to(elsewhere / "seed1" / "teacher")
    (runs / "digits" / "seed2").symlink_to(elsewhere / "seed2")
    (runs / "digits" / "seed3").mkdir()
    (runs / "digits" / "seed3" / "generator").symlink_to(runs / "digits" / "seed2" / "generator")
    # a seed's generator linked in from another root, shared by a later seed (pipeline --shared_generator=true over
    # a first seed whose stages were linked in): the first is copied, the later one stays a link to it
    stage(elsewhere / "seed4" / "generator", 0.4)
    for seed in ("seed4", "seed5"):
        (runs / "digits" / seed).mkdir()
    (runs / "digits" / "seed4" / "generator").symlink_to(elsewhere / "seed4" / "generator")
    (runs / "digits" / "seed5" / "generator").symlink_to(Path("..") / "seed4" / "generator")
    records(runs=str(runs), out=str(out))
    shutil.move(out, tmp_path / "moved")  # a clone elsewhere
    shutil.rmtree(elsewhere)
    archive = tmp_path / "moved" / "digits"
    assert os.readlink(archive / "seed1" / "generator") == str(Path("..") / "seed0" / "generator")
    assert os.readlink(archive / "seed3" / "generator") == str(Path("..") / "seed2" / "generator")
    assert os.readlink(archive / "seed5" / "generator") == str(Path("..") / "seed4" / "generator")
    for copied in ("seed1/teacher", "seed2", "seed2/generator", "seed4/generator"):
        assert not (archive / copied).is_symlink(), copied
    assert json.loads((archive / "seed1" / "teacher" / "test" / "test_metrics.json").read_text())["metrics"] == {
        "test/acc": 0.8
    }
    files = json.loads((archive / "records.json").read_text())["files"]
    copied_files = {"seed1/teacher/test/test_metrics.json", "seed2/generator/run.json", "seed4/generator/run.json"}
    assert copied_files <= set(files)
    assert not any(name.startswith(("seed1/generator", "seed3/", "seed5/")) for name in files)
    assert generator_sharing(tmp_path / "moved", "digits") == (
        "Generators: 3 trained (`seed0/generator` for seed0, seed1; `seed2/generator` for seed2, seed3;"
        " `seed4/generator` for seed4, seed5)."
    )


def test_shared_seeds_plan_no_generator_and_refuse_a_generator_of_their_own(tmp_path):
    kwargs = {"profile": "cpu", "experiments": REPO / "experiments", "runs": tmp_path, "variants": [], "mia": False}
    names = [s.name for s in plan("breastmnist", 1, trainer_args=[], shared=True, **kwargs)]
    assert names[0] == "teacher: fit" and not any(n.split(":")[0] in ("generator", "select", "fewstep") for n in names)
    (tmp_path / "breastmnist" / "seed1" / "generator").mkdir(parents=True)  # seed 1 trained a generator itself
    with pytest.raises(MissingInputError, match="seed1/generator exists and is not a link to seed 0"):
        share_generator(tmp_path, "breastmnist", 1, 0, dry_run=False)


def test_overlay_folders_layer_in_order_and_a_missing_one_is_named(tmp_path):
    overlays = [REPO / "experiments" / "overlays" / name for name in ("cpu_fixed_knobs", "smoke")]
    kwargs = {"profile": "cpu", "experiments": REPO / "experiments", "runs": tmp_path, "variants": [], "mia": False}
    select = next(s for s in plan("breastmnist", 0, trainer_args=[], overlays=overlays, **kwargs) if s.name == "select")
    configs = [select.argv[i + 1] for i, arg in enumerate(select.argv) if arg == "--config"]
    assert configs == [
        str(REPO / "experiments/recipes/cpu/select.yaml"),
        *(str(o / "select.yaml") for o in overlays),
        str(REPO / "experiments/data/breastmnist.yaml"),
    ]
    with pytest.raises(MissingInputError, match="overlay folder .*nowhere does not exist"):
        plan("breastmnist", 0, trainer_args=[], overlays=[tmp_path / "nowhere"], **kwargs)


def test_a_dataset_subfolder_of_an_overlay_applies_to_that_dataset_only(tmp_path):
    overlays = [REPO / "experiments" / "overlays" / name for name in ("cpu_fixed_knobs", "cpu_budgets")]
    kwargs = {"profile": "cpu", "experiments": REPO / "experiments", "runs": tmp_path, "variants": [], "mia": False}

    def configs(dataset, stage):
        step = next(s for s in plan(dataset, 0, trainer_args=[], overlays=overlays, **kwargs) if s.name == stage)
        return [step.argv[i + 1] for i, arg in enumerate(step.argv) if arg == "--config"]

    own = REPO / "experiments/overlays/cpu_budgets/pneumoniamnist"
    assert configs("pneumoniamnist", "select") == [
        str(REPO / "experiments/recipes/cpu/select.yaml"),
        str(overlays[0] / "select.yaml"),
        str(own / "select.yaml"),
        str(REPO / "experiments/data/pneumoniamnist.yaml"),
    ]
    assert str(own / "student.yaml") in configs("pneumoniamnist", "student: fit")
    assert not any("cpu_budgets" in c for stage in ("select", "student: fit") for c in configs("breastmnist", stage))


def test_an_overlay_subfolder_that_names_no_dataset_is_refused(tmp_path):
    (tmp_path / "budgets" / "pneumonimnist").mkdir(parents=True)  # a typo: its files would never apply
    (tmp_path / "budgets" / "pneumonimnist" / "student.yaml").write_text("trainer: {max_epochs: 3}\n")
    kwargs = {"profile": "cpu", "experiments": REPO / "experiments", "runs": tmp_path, "variants": [], "mia": False}
    with pytest.raises(MissingInputError, match="pneumonimnist names no dataset: .*'pneumoniamnist'"):
        plan("breastmnist", 0, trainer_args=[], overlays=[tmp_path / "budgets"], **kwargs)


CHILD = """
import pathlib, signal, sys, time
def stop(*_):
    time.sleep(1.0)  # a graceful shutdown that takes longer than subprocess.run's 0.25 s grace
    pathlib.Path(sys.argv[1]).write_text("clean")
    sys.exit(1)
signal.signal(signal.SIGINT, stop)
pathlib.Path(sys.argv[2]).write_text("ready")
time.sleep(60)
"""

OUTER = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from kr_lightning.pipeline import run_stage
run_stage([sys.executable, "-c", sys.argv[1], sys.argv[2], sys.argv[3]])
"""


def test_ctrl_c_lets_the_running_stage_shut_down_cleanly(tmp_path):
    """Ctrl-C reaches the whole process group; the pipeline waits for the stage's own shutdown, then stops."""
    marker, ready = tmp_path / "clean", tmp_path / "ready"
    outer = subprocess.Popen(
        [sys.executable, "-c", OUTER, CHILD, str(marker), str(ready)], cwd=REPO, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(outer.pid, signal.SIGINT)
    assert outer.wait(timeout=60) != 0
    assert marker.read_text() == "clean"


TERM_CHILD = """
import os, pathlib, signal, sys, time
def stop(*_):
    time.sleep(1.0)  # a graceful shutdown: the stage saves what it has
    pathlib.Path(sys.argv[1]).write_text("clean")
    sys.exit(1)
signal.signal(signal.SIGTERM, stop)
pathlib.Path(sys.argv[2]).write_text(str(os.getpid()))
time.sleep(60)
"""

TERM_OUTER = """
import sys
from kr_lightning.errors import Terminated
from kr_lightning.pipeline import run_stage
try:
    run_stage([sys.executable, "-c", sys.argv[1], sys.argv[2], sys.argv[3]])
except Terminated as err:
    sys.exit(128 + err.signum)
"""


def test_sigterm_to_the_pipeline_is_forwarded_to_the_running_stage(tmp_path):
    """``kill <pipeline>`` reaches only the pipeline; the stage gets it too and stops before the pipeline does."""
    marker, ready = tmp_path / "clean", tmp_path / "ready"
    outer = subprocess.Popen(
        [sys.executable, "-c", TERM_OUTER, TERM_CHILD, str(marker), str(ready)], cwd=REPO, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while not (ready.exists() and ready.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(outer.pid, signal.SIGTERM)  # the pipeline alone, not its process group
    assert outer.wait(timeout=60) == 128 + signal.SIGTERM
    assert marker.read_text() == "clean"
    with pytest.raises(ProcessLookupError):  # the stage is gone, not orphaned
        os.kill(int(ready.read_text()), 0)


def test_sigterm_exits_with_the_shell_status_and_says_how_to_resume(monkeypatch, capsys):
    def terminated(argv):
        raise Terminated(signal.SIGTERM)

    monkeypatch.setattr("kr_lightning.cli._dispatch", terminated)
    with pytest.raises(SystemExit) as exit_info:
        main(["pipeline", "--datasets=[digits]"])
    assert exit_info.value.code == 143
    assert "rerun the same command to resume" in capsys.readouterr().err


def test_ctrl_c_prints_how_to_resume(monkeypatch, capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr("kr_lightning.cli._dispatch", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        main(["pipeline", "--datasets=[digits]"])
    assert exit_info.value.code == 130
    assert "rerun the same command to resume" in capsys.readouterr().err


def test_pipeline_trainer_args_run_a_stage_under_ddp(tmp_path):
    """``--trainer_args`` reach every LightningCLI stage; the planned teacher command runs on 2 DDP ranks."""
    tiny_experiments(tmp_path / "experiments")
    ddp = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]
    steps = plan(
        "digits",
        0,
        profile="tiny",
        experiments=tmp_path / "experiments",
        runs=tmp_path / "runs",
        variants=[],
        mia=False,
        trainer_args=ddp,
    )
    assert all(s.extra == ddp for s in steps if s.argv[0] in ("fit", "test"))
    assert all(not s.extra for s in steps if s.argv[0] == "select")
    teacher = next(s for s in steps if s.name == "teacher: fit")
    done = subprocess.run(
        [*teacher.command(), "--trainer.max_epochs=1"], cwd=REPO, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert teacher.is_done()
    assert json.loads(teacher.done.read_text())["dataset"] == "digits"
