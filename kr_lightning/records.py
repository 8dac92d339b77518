"""Run records: the small files a results table is built from, copied out of a run root so they can be committed.

A run root (``runs/``) holds checkpoints, synthetic sets and logs: gigabytes, ignored by git and gone with the
machine. The numbers quoted in the READMEs must outlive it. ``records`` copies, for every stage folder of every
seed, the files :func:`kr_lightning.report.report` and the ablation tables read (``run.json``, ``metrics.csv``,
``test/test_metrics.json``, ``selection.json``, ``mia.json``) into ``<out>/<dataset>/seed<k>/<stage>/``, keeps the
links of seeds that share another seed's generator, and writes ``<out>/<dataset>/records.json`` (where the files
came from, when, and each file's SHA-256). A stage or seed folder linked in from elsewhere is copied like any other,
so the archive holds no link that would dangle in a clone. ``report --runs=<out>`` then prints the same table as over
the run root, and a table over several datasets can be built from records archived in different sessions.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from kr_lightning import artifacts
from kr_lightning.errors import MissingInputError
from kr_lightning.layout import dataset_names, seed_folders
from kr_lightning.report_privacy import stale_models
from kr_lightning.runs import read_json

RECORD_FILES = ("run.json", "metrics.csv", "test/test_metrics.json", "selection.json", "mia.json")
MANIFEST = "records.json"


def is_archive(dataset_dir: Path) -> bool:
    """Whether ``dataset_dir`` (``<root>/<dataset>``) holds archived records rather than live runs."""
    return (dataset_dir / MANIFEST).is_file()


def _copy_stage(stage: Path, target: Path) -> list[str]:
    """Copy ``stage``'s record files into ``target``; the paths copied, relative to ``stage``."""
    copied = []
    for name in RECORD_FILES:
        source = stage / name
        if not source.is_file():
            continue
        if name == "mia.json" and (stale := stale_models(read_json(source))):
            print(f"records: left out {source}: {', '.join(stale)} changed since it was audited; rerun mia")
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target / name)
        copied.append(name)
    return copied


def _stage_folders(seeds: list[Path]) -> list[Path]:
    """Every stage folder (or link to one) of the seed folders, by seed and name."""
    return [stage for seed_dir in seeds for stage in sorted(p for p in seed_dir.iterdir() if p.is_dir())]


def _shared_home(link: Path, spelled: dict[Path, Path], homes: dict[Path, Path]) -> Path | None:
    """The stage folder of the same run root that the stage link ``link`` points at, if any.

    Matched first on the link's own target, one hop (``seed1/generator -> ../seed0/generator`` is kept as a link even
    where ``seed0/generator`` is itself a link out of the run root, which is copied), then on where it resolves to.
    """
    hop = Path(os.path.normpath(link.parent.absolute() / os.readlink(link)))
    return spelled.get(hop) or homes.get(link.resolve())


def archive_dataset(runs: Path, dataset: str, out: Path) -> Path:
    """Copy one dataset's records from ``runs`` to ``out``, replacing the dataset's earlier records there."""
    source = runs / dataset
    seeds = seed_folders(source)
    if not seeds:
        raise MissingInputError(
            f"no seed folders under {source}: run the pipeline for {dataset} first, or pass --runs=<its run root>"
        )
    final = out / dataset
    staging = out / f".{dataset}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    files: dict[str, str] = {}
    stages = _stage_folders(seeds)
    homes = {stage.resolve(): stage.relative_to(source) for stage in stages if not stage.is_symlink()}
    spelled = {Path(os.path.normpath(stage.absolute())): stage.relative_to(source) for stage in stages}
    for stage in stages:
        target = staging / stage.relative_to(source)
        if stage.is_symlink() and (home := _shared_home(stage, spelled, homes)) is not None:
            # a seed reusing another seed's generator, selection or few-step generator: a link within the archive
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(Path("..") / home, target_is_directory=True)
            continue
        for name in _copy_stage(stage, target):
            rel = f"{stage.parent.name}/{stage.name}/{name}"
            files[rel] = artifacts.file_digest(staging / rel)
    if not files:
        raise MissingInputError(f"no run records (run.json, test/test_metrics.json, ...) under {source}")
    manifest = {
        "dataset": dataset,
        "source": str(source.resolve()),
        "archived": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "audits": "checked against their checkpoints' digests when archived",
        "files": files,
    }
    artifacts.write_json(staging / MANIFEST, manifest)
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return final


def records(*, runs: str = "runs", datasets: list[str] | None = None, out: str = "experiments/records") -> Path:
    """Copy the files that results tables are built from out of a run root, to be committed.

    Per stage folder: ``run.json``, ``metrics.csv``, ``test/test_metrics.json``, ``selection.json`` and ``mia.json``
    (an audit whose checkpoints changed since it ran is left out, as ``report`` leaves it out). Checkpoints,
    synthetic sets and predictions stay behind. ``report --runs=<out>`` builds the table from the copies.

    Args:
        runs: Run root (``<runs>/<dataset>/seed<k>/<stage>``).
        datasets: Datasets to copy (default: every folder under ``runs``); each replaces its earlier copy in ``out``.
        out: Archive folder (commit it); other datasets already in it are kept.
    """
    root = Path(runs)
    names = datasets or dataset_names(root)
    if not names:
        raise MissingInputError(f"no dataset folders under {root}: pass --runs=<the pipeline's run root>")
    for dataset in names:
        final = archive_dataset(root, dataset, Path(out))
        count = len(read_json(final / MANIFEST)["files"])
        print(f"records: {dataset}: {count} files -> {final}")
    return Path(out)
