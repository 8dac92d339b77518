"""``python -m kr_lightning pipeline``: every KR stage for some datasets and seeds, one CLI call per stage.

Each stage runs as its own ``python -m kr_lightning ...`` process with explicit paths (printed before it runs),
so any stage can be rerun by hand. A stage whose output marker exists is skipped; an interrupted stage is simply
run again and resumes (fit stages from ``last.ckpt``, ``select`` and ``mia`` from their finished units).

Configs: ``<experiments>/<dataset>/<stage>.yaml`` for ``profile: cpu``; ``<experiments>/<dataset>/gpu/<stage>.yaml``
for ``profile: gpu``. Runs: ``<runs>/<dataset>/seed<k>/<stage>``.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from kr_lightning.errors import MissingInputError
from kr_lightning.runs import read_json

VARIANTS = ("hard_static", "hard_regen", "soft_static")


@dataclass(frozen=True)
class Step:
    """One ``python -m kr_lightning`` call and the file that proves it finished."""

    name: str
    argv: list[str]
    done: Path
    extra: list[str] = field(default_factory=list)

    def is_done(self) -> bool:
        """The marker exists (for ``fit``: ``run.json`` records that training finished)."""
        if not self.done.is_file():
            return False
        return self.done.name != "run.json" or "finished" in read_json(self.done)

    def command(self) -> list[str]:
        """The full command line."""
        return [sys.executable, "-m", "kr_lightning", *self.argv, *self.extra]


def stage_configs(dataset: str, profile: str, experiments: Path) -> tuple[Path, dict[str, object]]:
    """Folder of the stage YAMLs and the dataset values the pipeline passes to them.

    ``cpu``: ``<experiments>/<dataset>/*.yaml`` hold everything. ``gpu``: the shared recipes
    ``<experiments>/gpu/*.yaml`` plus the dataset's values from ``<experiments>/<dataset>/gpu.yaml``.
    """
    if profile == "cpu":
        configs = experiments / dataset
        if not (configs / "generator.yaml").is_file():
            raise MissingInputError(
                f"no cpu configs for {dataset!r}: expected {configs}/generator.yaml (cpu configs exist for "
                f"{sorted(p.parent.name for p in experiments.glob('*/generator.yaml'))}); use --profile=gpu"
            )
        return configs, {}
    table = experiments / dataset / "gpu.yaml"
    if not table.is_file():
        raise MissingInputError(
            f"no gpu profile for {dataset!r}: expected {table} (datasets with one: "
            f"{sorted(p.parent.name for p in experiments.glob('*/gpu.yaml'))})"
        )
    return experiments / "gpu", yaml.safe_load(table.read_text())


def plan(
    dataset: str,
    seed: int,
    *,
    profile: Literal["cpu", "gpu"],
    experiments: Path,
    runs: Path,
    variants: list[str],
    mia: bool,
    trainer_args: list[str],
) -> list[Step]:
    """The steps for one dataset and seed, in order."""
    configs, data = stage_configs(dataset, profile, experiments)
    root = runs / dataset / f"seed{seed}"
    teacher = root / "teacher" / "checkpoints" / "best.ckpt"
    selection = root / "select" / "selection.json"
    data = {k: str(v).lower() if isinstance(v, bool) else v for k, v in data.items()}
    direct = [f"--data.init_args.{k}={v}" for k, v in data.items()]
    nested = [f"--data.init_args.real.init_args.{k}={v}" for k, v in data.items()]

    def fit_and_test(stage: str, config: Path, run: Path, *extra: str) -> list[Step]:
        common = ["--config", str(config), *extra, f"--seed_everything={seed}", f"--trainer.default_root_dir={run}"]
        return [
            Step(f"{stage}: fit", ["fit", *common], run / "run.json", trainer_args),
            Step(f"{stage}: test", ["test", *common], run / "test" / "test_metrics.json", trainer_args),
        ]

    steps = fit_and_test("generator", configs / "generator.yaml", root / "generator", *direct)[:1]
    steps += fit_and_test("teacher", configs / "teacher.yaml", root / "teacher", *direct)
    steps.append(
        Step(
            "select",
            [
                "select",
                "--config",
                str(configs / "select.yaml"),
                *direct,
                f"--generator_run={root / 'generator'}",
                f"--teacher_ckpt={teacher}",
                f"--out={root / 'select'}",
            ],
            selection,
        )
    )
    student = configs / "student.yaml"
    cache = root / "synthetic"  # every student variant and the audit share the generated sets
    gkd_args = [*nested, f"--data.selection={selection}", f"--data.teacher_ckpt={teacher}", f"--data.cache_dir={cache}"]
    steps += fit_and_test("student", student, root / "student", *gkd_args)
    for variant in variants:
        overlay = configs / "variants" / f"{variant}.yaml"
        soft = (
            yaml.safe_load(overlay.read_text()).get("data", {}).get("init_args", {}).get("teacher_ckpt", "") is not None
        )
        args = ["--config", str(overlay), *nested, f"--data.selection={selection}", f"--data.cache_dir={cache}"]
        args += [f"--data.teacher_ckpt={teacher}"] if soft else []
        steps += fit_and_test(f"student_{variant}", student, root / f"student_{variant}", *args)
    if mia and (configs / "mia.yaml").is_file():
        steps.append(
            Step(
                "mia",
                [
                    "mia",
                    "--config",
                    str(configs / "mia.yaml"),
                    *[f"--data.init_args.{k}={v}" for k, v in data.items() if k == "flag"],
                    *([f"--hflip={data['hflip']}"] if "hflip" in data else []),
                    f"--teacher_run={root / 'teacher'}",
                    f"--student_run={root / 'student'}",
                    f"--selection={selection}",
                    f"--cache_dir={cache}",
                    f"--out={root / 'mia'}",
                ],
                root / "mia" / "mia.json",
            )
        )
    return steps


def run_stage(command: list[str]) -> int:
    """Run one stage; on Ctrl-C let it shut down cleanly (it received the same signal) before stopping too."""
    with subprocess.Popen(command) as process:
        try:
            return process.wait()
        except KeyboardInterrupt:
            try:
                process.wait(timeout=120)
            except (KeyboardInterrupt, subprocess.TimeoutExpired):
                process.kill()
            raise


def pipeline(
    *,
    datasets: list[str],
    seeds: list[int] = [0],  # noqa: B006 - jsonargparse needs a literal default
    profile: Literal["cpu", "gpu"] = "gpu",
    experiments: str = "experiments",
    runs: str = "runs",
    results: str = "results",
    name: str = "results",
    variants: list[str] = list(VARIANTS),  # noqa: B006
    mia: bool = True,
    trainer_args: list[str] = [],  # noqa: B006
    dry_run: bool = False,
) -> Path:
    """Run every stage for each dataset and seed, skipping finished stages, then write the report.

    Args:
        datasets: Dataset folders under ``experiments`` (e.g. ``digits``, ``breastmnist``).
        seeds: Seeds; each gets its own run folders.
        profile: ``cpu`` (``experiments/<dataset>/*.yaml``) or ``gpu`` (``experiments/<dataset>/gpu/*.yaml``).
        experiments: Config root.
        runs: Run root.
        results: Report folder.
        name: Report file stem (``<results>/<name>.md``).
        variants: Baseline students to run besides GKD.
        mia: Run the privacy audit where the dataset has an ``mia.yaml``.
        trainer_args: Extra arguments for every LightningCLI stage, e.g. ``["--trainer.devices=8",
            "--trainer.strategy=ddp"]``.
        dry_run: Print the commands without running them.
    """
    for dataset in datasets:
        for seed in seeds:
            steps = plan(
                dataset,
                seed,
                profile=profile,
                experiments=Path(experiments),
                runs=Path(runs),
                variants=variants,
                mia=mia,
                trainer_args=trainer_args,
            )
            for step in steps:
                command = step.command()
                if step.is_done():
                    print(f"pipeline: [{dataset} seed {seed}] {step.name}: done ({step.done})", flush=True)
                    continue
                print(f"pipeline: [{dataset} seed {seed}] {step.name}: {shlex.join(command)}", flush=True)
                if dry_run:
                    continue
                returncode = run_stage(command)
                if returncode != 0:
                    raise SystemExit(
                        f"pipeline: stage {step.name!r} of {dataset} seed {seed} failed (exit {returncode});"
                        " fix the error above and rerun the same command: finished stages are skipped"
                    )
    from kr_lightning.report import report

    return report(runs=runs, datasets=datasets, out=results, name=name)
