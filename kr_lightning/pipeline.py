"""``python -m kr_lightning pipeline``: every KR stage for some datasets and seeds, one CLI call per stage.

Each stage runs as its own ``python -m kr_lightning ...`` process, printed before it runs: a profile's recipe
(``<experiments>/recipes/<profile>/<stage>.yaml``) plus the dataset's fragment (``<experiments>/data/<flag>.yaml``),
exactly the command a user types by hand, so any stage can be rerun alone. Recipes derive their run folders
(``<runs>/<flag>/seed<k>/<stage>``, :mod:`kr_lightning.layout`); a stage whose output marker exists there is
skipped, and an interrupted stage is simply run again and resumes (fit from ``last.ckpt``, ``select`` and ``mia``
from their finished units).
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from kr_lightning.errors import MissingInputError, Terminated
from kr_lightning.layout import stage_dir
from kr_lightning.runs import read_json

VARIANTS = ("hard_static", "hard_regen", "soft_static")
SHARED_STAGES = ("generator", "select", "fewstep")  # what ``shared_generator`` seeds take from the first seed


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


def known_datasets(experiments: Path) -> list[str]:
    """The datasets with a fragment ``<experiments>/data/<flag>.yaml``."""
    return sorted(p.stem for p in (experiments / "data").glob("*.yaml"))


def recipe_files(dataset: str, profile: str, experiments: Path) -> tuple[Path, Path]:
    """The profile's recipe folder and the dataset's fragment, checked to exist."""
    recipes = experiments / "recipes" / profile
    fragment = experiments / "data" / f"{dataset}.yaml"
    if not (recipes / "generator.yaml").is_file():
        known = sorted(p.name for p in (experiments / "recipes").glob("*") if p.is_dir())
        raise MissingInputError(f"no recipes for profile {profile!r}: expected {recipes}/ (profiles: {known})")
    if not fragment.is_file():
        known = known_datasets(experiments)
        raise MissingInputError(f"no data fragment for {dataset!r}: expected {fragment} (datasets: {known})")
    return recipes, fragment


def check_overlays(overlays: list[Path], experiments: Path) -> None:
    """Each overlay is a folder; its subfolders, which hold files for one dataset only, are named after datasets.

    Raises:
        MissingInputError: a folder is missing, or a subfolder names no dataset fragment (its files would never apply).
    """
    known = known_datasets(experiments)
    for overlay in overlays:
        if not overlay.is_dir():
            raise MissingInputError(f"overlay folder {overlay} does not exist: expected a folder of <stage>.yaml files")
        for sub in sorted(p for p in overlay.iterdir() if p.is_dir()):
            if sub.name not in known:
                raise MissingInputError(
                    f"overlay subfolder {sub} names no dataset: a subfolder holds <stage>.yaml files for the dataset"
                    f" it is named after (one of {known}); rename it, or move its files up to apply them to all"
                )


def plan(
    dataset: str,
    seed: int,
    *,
    profile: str,
    experiments: Path,
    runs: Path,
    variants: list[str],
    mia: bool,
    trainer_args: list[str],
    overlays: list[Path] = [],  # noqa: B006 - read only
    dp_epsilons: list[float] = [],  # noqa: B006 - read only
    shared: bool = False,
) -> list[Step]:
    """The steps for one dataset and seed, in order.

    ``overlays``: folders of ``<stage>.yaml`` layered on top, in order; in each, ``<dataset>/<stage>.yaml`` is layered
    after ``<stage>.yaml`` for that dataset only. ``shared``: the seed links another seed's
    generator, select and fewstep folders (:func:`share_generator`), so it runs none of them.
    """
    recipes, fragment = recipe_files(dataset, profile, experiments)
    check_overlays(overlays, experiments)

    def layered(stage: str, *configs: Path) -> list[Path]:
        files = [f for o in overlays for f in (o / f"{stage}.yaml", o / dataset / f"{stage}.yaml") if f.is_file()]
        return [*configs, *files]

    layout = [f"--run_root={runs}"]

    def folder(stage: str) -> Path:
        return stage_dir(runs, dataset, seed, stage)

    def fit_and_test(stage: str, *configs: Path, args: tuple[str, ...] = ()) -> list[Step]:
        kind = "student" if stage.startswith("student") else stage.split("_eps")[0]
        common = [arg for c in (*layered(kind, *configs), fragment) for arg in ("--config", str(c))]
        common += [*args, f"--seed_everything={seed}", *layout]
        return [
            Step(f"{stage}: fit", ["fit", *common], folder(stage) / "run.json", trainer_args),
            Step(f"{stage}: test", ["test", *common], folder(stage) / "test" / "test_metrics.json", trainer_args),
        ]

    def tool(name: str, done: Path, *args: str, title: str | None = None) -> Step:
        configs = [arg for c in (*layered(name, recipes / f"{name}.yaml"), fragment) for arg in ("--config", str(c))]
        return Step(title or name, [name, *configs, f"--seed={seed}", *layout, *args], done)

    steps = [] if shared else fit_and_test("generator", recipes / "generator.yaml")[:1]
    steps += fit_and_test("teacher", recipes / "teacher.yaml")
    if dp_epsilons and not (recipes / "teacher_dp.yaml").is_file():
        raise MissingInputError(f"dp_epsilons needs a DP-SGD teacher recipe: expected {recipes / 'teacher_dp.yaml'}")
    for epsilon in map(float, dp_epsilons):
        epsilon_arg = (f"--model.init_args.epsilon={epsilon}",)
        steps += fit_and_test(f"teacher_dp_eps{epsilon}", recipes / "teacher_dp.yaml", args=epsilon_arg)
    if not shared:
        steps.append(tool("select", folder("select") / "selection.json"))
    if not shared and (recipes / "fewstep.yaml").is_file():  # the profile's students draw from a few-step generator
        steps += fit_and_test("fewstep", recipes / "fewstep.yaml")[:1]
    steps += fit_and_test("student", recipes / "student.yaml")
    for variant in variants:
        steps += fit_and_test(f"student_{variant}", recipes / "student.yaml", recipes / "variants" / f"{variant}.yaml")
    if mia and (recipes / "mia.yaml").is_file():
        steps.append(tool("mia", folder("mia") / "mia.json"))
        for epsilon in map(float, dp_epsilons):  # the DP-SGD teachers, attacked with DP-trained references
            out, run = folder(f"mia_dp_eps{epsilon}"), folder(f"teacher_dp_eps{epsilon}")
            # no accuracy floor: a DP-SGD teacher sits near the majority class itself (0.731 at epsilon 1 on
            # BreastMNIST), so the profile's floor for real-data references would reject every DP-trained one
            args = (f"--teacher_run={run}", "--student=false", f"--out={out}", "--min_accuracy=0.0")
            steps.append(tool("mia", out / "mia.json", *args, title=f"mia_dp_eps{epsilon}"))
    return steps


def share_generator(runs: Path, dataset: str, seed: int, first: int, *, dry_run: bool) -> None:
    """Link ``seed``'s generator, select and fewstep folders to seed ``first``'s (one generator for every seed).

    Raises:
        MissingInputError: ``seed`` already has a folder of its own for one of them (its own generator).
    """
    for stage in SHARED_STAGES:
        link, target = stage_dir(runs, dataset, seed, stage), Path("..") / f"seed{first}" / stage
        if link.is_symlink() and Path(link.readlink()) == target:
            continue
        if link.exists() or link.is_symlink():
            raise MissingInputError(
                f"shared_generator: {link} exists and is not a link to seed {first}'s {stage}: it holds a run of its"
                f" own; move it away, or run without --shared_generator to give every seed its own generator"
            )
        print(f"pipeline: [{dataset} seed {seed}] {stage}: shared, {link} -> {target}", flush=True)
        if not dry_run:
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target, target_is_directory=True)


def run_stage(command: list[str]) -> int:
    """Run one stage; on Ctrl-C or SIGTERM let it shut down cleanly before stopping too.

    Ctrl-C reaches the stage from the terminal (one process group); SIGTERM (``kill``, a scheduler) reaches only the
    pipeline, so it is forwarded: the stage is never left running, orphaned, into its run folder.

    Raises:
        Terminated: SIGTERM arrived (after the stage has stopped, or been killed after a 120 s grace).
    """
    with subprocess.Popen(command) as process:

        def forward(signum: int, _frame: object) -> None:
            process.send_signal(signum)
            raise Terminated(signum)

        previous = signal.signal(signal.SIGTERM, forward)
        try:
            return process.wait()
        except KeyboardInterrupt:  # Ctrl-C or a forwarded SIGTERM (Terminated); a second one kills the stage
            try:
                process.wait(timeout=120)
            except (KeyboardInterrupt, subprocess.TimeoutExpired):
                process.kill()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)


def pipeline(
    *,
    datasets: list[str],
    seeds: list[int] = [0],  # noqa: B006 - jsonargparse needs a literal default
    profile: str = "gpu",
    experiments: str = "experiments",
    runs: str = "runs",
    results: str = "results",
    name: str = "results",
    variants: list[str] = list(VARIANTS),  # noqa: B006
    mia: bool = True,
    trainer_args: list[str] = [],  # noqa: B006
    overlays: list[str] | str | None = None,
    dp_epsilons: list[float] = [],  # noqa: B006
    shared_generator: bool = False,
    dry_run: bool = False,
) -> Path:
    """Run every stage for each dataset and seed, skipping finished stages, then write the report.

    Args:
        datasets: Datasets, each with a fragment ``<experiments>/data/<flag>.yaml`` (e.g. ``digits``,
            ``breastmnist``, any 2D MedMNIST flag).
        seeds: Seeds; each gets its own run folders.
        profile: Recipe set ``<experiments>/recipes/<profile>/``: ``quick`` (the quickstart's minutes), ``cpu``
            (2 CPU cores, BreastMNIST in about an hour), ``gpu`` (MedMNIST v2-sized models) or a folder of your own.
        experiments: Config root (``recipes/`` and ``data/``).
        runs: Run root.
        results: Report folder.
        name: Report file stem (``<results>/<name>.md``).
        variants: Baseline students to run besides GKD.
        mia: Run the privacy audit (the profile's ``mia.yaml``).
        trainer_args: Extra arguments for every LightningCLI stage, e.g. ``["--trainer.devices=8",
            "--trainer.strategy=ddp"]``.
        overlays: A folder (or a list of folders, layered in order) of ``<stage>.yaml`` files layered over the
            profile's recipes (after the recipe and any variant, before the dataset), e.g.
            ``experiments/overlays/smoke`` to run a profile end to end in seconds on a CPU. A subfolder named after a
            dataset holds ``<stage>.yaml`` files for that dataset only (``experiments/overlays/cpu_budgets/
            pneumoniamnist/``), so datasets with budgets of their own run in one call and land in one report.
        dp_epsilons: Also train DP-SGD teachers (the profile's ``teacher_dp.yaml``, Opacus) at these privacy budgets
            epsilon, e.g. ``[1, 4, 8]``: the privacy yardstick for the student (``teacher_dp_eps<epsilon>``); with
            ``mia``, each is audited with DP-trained references (``mia_dp_eps<epsilon>``).
        shared_generator: Train one generator (and its selection and few-step generator) for the first seed only;
            the other seeds link those folders and draw their own synthetic streams from it, so their spread
            leaves out generator-training variance. Off: every seed trains its own.
        dry_run: Print the commands without running them (and write no report).
    """
    folders = [Path(o) for o in ([overlays] if isinstance(overlays, str) else overlays or [])]
    for dataset in datasets:
        for seed in seeds:
            shared = shared_generator and seed != seeds[0]
            if shared:
                share_generator(Path(runs), dataset, seed, seeds[0], dry_run=dry_run)
            steps = plan(
                dataset,
                seed,
                profile=profile,
                experiments=Path(experiments),
                runs=Path(runs),
                variants=variants,
                mia=mia,
                trainer_args=trainer_args,
                overlays=folders,
                dp_epsilons=dp_epsilons,
                shared=shared,
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
    if dry_run:  # nothing ran, so there is nothing new to report; say where the report would go
        return Path(results) / f"{name}.md"
    from kr_lightning.report import report

    return report(runs=runs, datasets=datasets, out=results, name=name)
