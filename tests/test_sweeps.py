"""Every sweep file's command, built by wandb's own argument builder, is accepted by LightningCLI."""

import random
from pathlib import Path

import pytest
import yaml
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

from conftest import REPO
from kr_lightning.cli import main

SWEEPS = sorted((REPO / "experiments" / "sweeps").glob("*.yaml"))


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


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: Path(p).stem)
def test_sweep_command_parses(path, capsys):
    sweep = yaml.safe_load(path.read_text())
    assert sweep["metric"]["name"] == "val/acc" and "${args}" in sweep["command"]
    rng = random.Random(0)
    values = {name: draw(spec, rng) for name, spec in sweep["parameters"].items()}
    built = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})["args"]
    command = sweep["command"]
    start = command.index("kr_lightning") + 1
    argv = [a for a in command[start:] if a != "${args}"] + built
    argv = [str(REPO / a) if a.endswith(".yaml") else a for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    for name, value in values.items():
        group, key = name.split(".", 1)
        found = printed[group]["init_args"][key] if "init_args" in printed[group] else printed[group][key]
        assert found == pytest.approx(value), name
