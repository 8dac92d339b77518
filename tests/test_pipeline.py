import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import CONFIGS, REPO
from kr_lightning.cli import main
from kr_lightning.pipeline import plan

GPU_DATASETS = sorted(p.parent.name for p in (REPO / "experiments").glob("*/gpu.yaml"))


def parses(step, capsys):
    argv = step.argv + step.extra
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--print_config"])
    assert exit_info.value.code in (0, None), argv
    return yaml.safe_load(capsys.readouterr().out)


def test_the_six_medmnist_datasets_have_a_gpu_profile():
    assert set(GPU_DATASETS) >= {
        "breastmnist",
        "pneumoniamnist",
        "retinamnist",
        "dermamnist",
        "bloodmnist",
        "organcmnist",
    }


@pytest.mark.parametrize("dataset", GPU_DATASETS)
def test_gpu_plan_commands_parse(dataset, tmp_path, capsys):
    steps = plan(
        dataset,
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
        data = printed["data"]["init_args"]
        flag = data["real"]["init_args"]["flag"] if "real" in data else data["flag"]
        assert flag == dataset, step.name
        if "trainer" in printed:
            assert printed["trainer"]["default_root_dir"].startswith(str(tmp_path / dataset / "seed1"))
            assert printed["seed_everything"] == 1


def test_cpu_plan_for_breastmnist_parses(tmp_path, capsys):
    steps = plan(
        "breastmnist",
        0,
        profile="cpu",
        experiments=REPO / "experiments",
        runs=tmp_path,
        variants=["hard_static", "hard_regen", "soft_static"],
        mia=True,
        trainer_args=[],
    )
    assert steps[-1].name == "mia"
    for step in steps:
        parses(step, capsys)


def tiny_experiments(folder):
    ds = folder / "digits"
    (ds / "variants").mkdir(parents=True)
    shutil.copy(CONFIGS / "tiny_generator.yaml", ds / "generator.yaml")
    shutil.copy(CONFIGS / "tiny_digits_teacher.yaml", ds / "teacher.yaml")
    shutil.copy(CONFIGS / "tiny_student.yaml", ds / "student.yaml")
    shutil.copy(CONFIGS / "tiny_select.yaml", ds / "select.yaml")
    (ds / "variants" / "hard_static.yaml").write_text(
        "model:\n  init_args: {alpha: 1.0}\ndata:\n  init_args: {teacher_ckpt: null, regenerate_every: 0}\n"
    )
    mia = yaml.safe_load((CONFIGS / "tiny_mia.yaml").read_text())
    mia |= {"teacher_config": str(ds / "teacher.yaml"), "student_config": str(ds / "student.yaml")}
    (ds / "mia.yaml").write_text(yaml.safe_dump(mia))


def test_pipeline_runs_every_stage_then_skips_them(tmp_path, capsys):
    tiny_experiments(tmp_path / "experiments")
    args = [
        "pipeline",
        "--datasets=[digits]",
        "--profile=cpu",
        f"--experiments={tmp_path / 'experiments'}",
        f"--runs={tmp_path / 'runs'}",
        f"--results={tmp_path / 'results'}",
        "--name=quick",
        "--variants=[hard_static]",
    ]
    main(args)
    out = capsys.readouterr().out
    table = (tmp_path / "results" / "quick.md").read_text()
    for row in ("Teacher (real data)", "GKD student", "hard labels, static set", "Privacy audit"):
        assert row in table, row
    result = json.loads((tmp_path / "results" / "quick.json").read_text())
    assert set(result["tables"]["digits"][0]) >= {"acc", "auc", "gap", "sources"}
    assert "done (" not in out
    main(args)
    again = capsys.readouterr().out
    assert again.count(": done (") == 9  # every stage is skipped the second time


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


def test_ctrl_c_prints_how_to_resume(monkeypatch, capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr("kr_lightning.cli._dispatch", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        main(["pipeline", "--datasets=[digits]"])
    assert exit_info.value.code == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
