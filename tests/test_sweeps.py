"""W&B sweeps: every sweep file's command parses, and trials run as `wandb agent` runs them, each in its own folder.

The agent builds each trial's command from the sweep file with ``${args}`` (wandb's own argument builder) and sets
``WANDB_SWEEP_ID`` / ``WANDB_RUN_ID``; these tests do the same without a W&B server (``WANDB_MODE=offline``).
"""

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

from conftest import CONFIGS, REPO
from kr_lightning.cli import main

SWEEPS = sorted(
    p for p in (REPO / "experiments" / "sweeps").glob("*.yaml") if "command" in yaml.safe_load(p.read_text())
)


def draw(spec, rng):
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return rng.choice(spec["values"])
    if spec["distribution"] == "uniform":
        return rng.uniform(spec["min"], spec["max"])
    if spec["distribution"] == "log_uniform_values":
        return spec["min"] * (spec["max"] / spec["min"]) ** rng.random()
    raise AssertionError(f"unhandled distribution {spec}")


def trial_argv(sweep, values, replace=None):
    """The command `wandb agent` runs for one trial (after ``python -m kr_lightning``)."""
    built = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})["args"]
    command = sweep["command"]
    argv = [a for a in command[command.index("kr_lightning") + 1 :] if a != "${args}"] + built
    argv = [(replace or {}).get(a, a) for a in argv]
    return [str(REPO / a) if a.endswith(".yaml") and not Path(a).is_absolute() else a for a in argv]


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: Path(p).stem)
def test_sweep_command_parses(path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep7")
    monkeypatch.setenv("WANDB_RUN_ID", "run3")
    sweep = yaml.safe_load(path.read_text())
    assert sweep["metric"]["name"] == "val/acc_best" and "${args}" in sweep["command"]
    rng = random.Random(0)
    values = {name: draw(spec, rng) for name, spec in sweep["parameters"].items()}
    with pytest.raises(SystemExit) as exit_info:
        main([*trial_argv(sweep, values), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    for name, value in values.items():
        group, key = name.split(".", 1)
        found = printed[group]["init_args"][key] if "init_args" in printed[group] else printed[group][key]
        assert found == pytest.approx(value), name
    assert printed["trainer"]["default_root_dir"] == "runs/breastmnist/seed0/sweeps/sweep7/run3"


def test_a_trial_outside_an_agent_stops_with_one_line(capsys, monkeypatch):
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep7")
    sweep = yaml.safe_load((REPO / "experiments" / "sweeps" / "student.yaml").read_text())
    with pytest.raises(SystemExit) as exit_info:
        main([*trial_argv(sweep, {"model.lr": 1e-3}), "--print_config"])
    assert exit_info.value.code == 2
    assert "WANDB_RUN_ID" in capsys.readouterr().err


def tiny_student_recipe(folder, generator_run, teacher_ckpt):
    """The tiny student with the recipes' layout keys, reading its generator, teacher and selection by path."""
    config = yaml.safe_load((CONFIGS / "tiny_student.yaml").read_text())
    config |= {
        "run_root": str(folder / "runs"),
        "seed_dir": "${run_root}/${data.init_args.flag}/seed${seed_everything}",
    }
    config["data"]["init_args"].pop("flag")
    config["data"]["init_args"] |= {
        "generator": str(generator_run / "export"),
        "teacher_ckpt": str(teacher_ckpt),
        "cache_dir": "${seed_dir}/synthetic",  # shared by every trial, as in the real recipes
    }
    path = folder / "student.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_trial(argv, run_id, folder):
    env = {**os.environ, "WANDB_SWEEP_ID": "sweep1", "WANDB_RUN_ID": run_id, "WANDB_MODE": "offline"}
    env |= {"WANDB_SILENT": "true", "WANDB_DIR": str(folder), "WANDB_CONFIG_DIR": str(folder / "wandb_config")}
    return subprocess.Popen(
        [sys.executable, "-m", "kr_lightning", *argv],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process):
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, out[-2000:] + err[-3000:]


@pytest.mark.long
def test_trials_run_one_after_another_and_two_at_once_each_in_its_own_folder(
    tmp_path, tiny_generator_run, tiny_digits_teacher
):
    sweep = yaml.safe_load((REPO / "experiments" / "sweeps" / "student.yaml").read_text())
    recipe = tiny_student_recipe(tmp_path, tiny_generator_run, tiny_digits_teacher)
    replace = {
        "experiments/recipes/cpu/student.yaml": str(recipe),
        "experiments/data/breastmnist.yaml": "experiments/data/digits.yaml",
    }
    knobs = {k: v for k, v in sweep["parameters"].items() if k.startswith("model.") or k == "data.regenerate_every"}
    rng = random.Random(1)
    trials = {f"trial{i}": {name: draw(spec, rng) for name, spec in knobs.items()} for i in range(5)}
    argv = {run_id: trial_argv(sweep, values, replace) for run_id, values in trials.items()}
    for run_id in ("trial0", "trial1", "trial2"):  # one agent
        finish(start_trial(argv[run_id], run_id, tmp_path))
    running = [start_trial(argv[run_id], run_id, tmp_path) for run_id in ("trial3", "trial4")]  # two agents
    for process in running:
        finish(process)
    sweeps = tmp_path / "runs" / "digits" / "seed0" / "sweeps" / "sweep1"
    assert sorted(p.name for p in sweeps.iterdir()) == sorted(trials)
    recorded = []
    for run_id, values in trials.items():
        run = sweeps / run_id
        assert "finished" in json.loads((run / "run.json").read_text()), run_id
        config = yaml.safe_load((run / "config.yaml").read_text())
        for name, value in values.items():
            group, key = name.split(".", 1)
            assert config[group]["init_args"][key] == pytest.approx(value), (run_id, name)
        recorded.append(tuple(config["model"]["init_args"][k.split(".")[1]] for k in values if k.startswith("model.")))
        rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/acc")]
        objective = [float(r["val/acc_best"]) for r in rows]
        # W&B summarises a metric by its last logged value, which the sweep's search reads: the best val accuracy
        assert objective[-1] == pytest.approx(max(float(r["val/acc"]) for r in rows))
        assert objective == sorted(objective)
        # the trial's W&B run is the agent's run (its id), written inside the trial's own folder
        assert len(list((run / "wandb").glob(f"offline-run-*-{run_id}"))) == 1, run_id
    assert len(set(recorded)) == len(recorded)  # distinct hyperparameters, each in its own config.yaml
