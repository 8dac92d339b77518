"""Where runs live: one layout, ``<run_root>/<dataset>/seed<k>/<stage>``, derived in the configs themselves.

Recipes (``experiments/recipes/<profile>/<stage>.yaml``) name no dataset: they derive every path from three keys
by omegaconf interpolation, resolved after all config files and command-line overrides are merged::

    run_root: runs
    seed_dir: ${run_root}/${data.init_args.flag}/seed${seed_everything}
    trainer: {default_root_dir: ${seed_dir}/teacher}

so a stage run by hand and the same stage run by ``pipeline`` write to the same folder. A data fragment
(``experiments/data/<flag>.yaml``) holds only ``data.init_args`` values: the dataset and its label-preserving
augmentation. This module checks the combination before parsing (exactly one fragment) and that a run folder
holds runs of one dataset only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentParser

from kr_lightning.errors import ConfigError

PARSER_MODE = "omegaconf+"


def stage_dir(run_root: str | Path, flag: str, seed: int, stage: str) -> Path:
    """The run folder the recipes derive: ``<run_root>/<flag>/seed<seed>/<stage>`` (a test holds them equal)."""
    return Path(run_root) / flag / f"seed{seed}" / stage


def seed_folders(dataset_dir: Path) -> list[Path]:
    """The ``seed<k>`` folders of a dataset's run folder, by ``k`` (``seed10`` after ``seed2``)."""
    return sorted(dataset_dir.glob("seed*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))


def dataset_names(root: Path) -> list[str]:
    """Every dataset folder under a run (or records) root; hidden folders (a records copy in progress) left out."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def add_layout_arguments(parser: ArgumentParser) -> None:
    """The layout keys of a stage parser: ``run_root`` and ``seed_dir`` (the dataset's and seed's folder)."""
    parser.add_argument("--run_root", type=str, default="runs", help="root of every run folder")
    parser.add_argument(
        "--seed_dir",
        type=str | None,
        default=None,
        help="folder of this dataset and seed's stages; recipes derive it: ${run_root}/<flag>/seed<k>",
    )


def config_files(argv: list[str]) -> list[Path]:
    """The ``--config`` / ``-c`` files of a command line, in order."""
    files = []
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            files.append(Path(argv[i + 1]))
        elif arg.startswith("--config="):
            files.append(Path(arg.split("=", 1)[1]))
    return files


def _load(path: Path) -> Any:  # noqa: ANN401 - any YAML document
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None  # the parser reports unreadable files itself


def fragment_flag(document: Any) -> str | None:  # noqa: ANN401 - any YAML document
    """The dataset of a data fragment (a file with only ``data.init_args``), else ``None``."""
    if not isinstance(document, dict) or set(document) != {"data"} or not isinstance(document["data"], dict):
        return None
    init = document["data"].get("init_args")
    return init.get("flag") if isinstance(init, dict) else None


def check_fragments(argv: list[str]) -> None:
    """A stage takes one dataset: refuse two data fragments, and a recipe that derives paths from no dataset.

    Raises:
        ConfigError: Two fragments, or a layout recipe without a fragment or ``--data.flag``.
    """
    documents = [(path, _load(path)) for path in config_files(argv)]
    fragments = [(path, fragment_flag(doc)) for path, doc in documents if fragment_flag(doc)]
    if len(fragments) > 1:
        named = ", ".join(f"{path} ({flag})" for path, flag in fragments)
        raise ConfigError(f"a stage runs on one dataset, but {len(fragments)} data fragments were given: {named}")
    derives = [path for path, doc in documents if isinstance(doc, dict) and "seed_dir" in doc]
    flag_given = any(a.startswith(("--data.flag", "--data.init_args.flag")) for a in argv)
    if derives and not fragments and not flag_given and not any(_sets_flag(doc) for _, doc in documents):
        raise ConfigError(
            f"{derives[0]} is a recipe and names no dataset: add a data fragment, e.g. "
            "--config experiments/data/breastmnist.yaml (one per dataset under experiments/data/)"
        )


def _sets_flag(document: Any) -> bool:  # noqa: ANN401 - any YAML document
    data = document.get("data") if isinstance(document, dict) else None
    init = data.get("init_args") if isinstance(data, dict) else None
    return isinstance(init, dict) and init.get("flag") is not None


def check_run_dataset(folder: Path, flag: str | None) -> None:
    """Refuse to use a run folder that holds a run of another dataset (its ``run.json`` says which).

    Raises:
        ConfigError: The folder's run was made with another dataset.
    """
    record = folder / "run.json"
    if flag is None or not record.is_file():
        return
    try:
        found = json.loads(record.read_text()).get("dataset")
    except (OSError, ValueError, AttributeError):
        return  # read_json reports a corrupt record where the run is resumed
    if found is not None and found != flag:
        raise ConfigError(
            f"{folder} holds a run of {found!r}, not {flag!r}; nothing was written. Use the {flag} run folder "
            f"(recipes derive it from run_root, the dataset and the seed) or another --trainer.default_root_dir."
        )
