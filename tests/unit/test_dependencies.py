"""Every third-party package kr_lightning imports is declared in pyproject.toml ``dependencies``."""

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parents[2]


def normalise(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-``, ``_`` and ``.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_top_level_names(package: Path) -> dict[str, set[str]]:
    """Top-level module name -> files importing it, for absolute imports outside the standard library."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != package.name:
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def declared_distributions() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {normalise(re.match(r"[A-Za-z0-9._-]+", dep).group()) for dep in project["dependencies"]}


def test_every_imported_package_is_a_declared_dependency():
    # import name -> distribution from the installed metadata (sklearn -> scikit-learn, yaml -> PyYAML, ...)
    distributions = packages_distributions()
    declared = declared_distributions()
    missing = {
        name: sorted(files)
        for name, files in imported_top_level_names(REPO / "kr_lightning").items()
        if not declared & {normalise(d) for d in distributions.get(name, [name])}
    }
    assert not missing, f"imported but not in pyproject.toml dependencies: {missing}"


def test_the_import_scan_sees_mapped_names():
    names = imported_top_level_names(REPO / "kr_lightning")
    assert {"torch", "sklearn", "diffusers"} <= names.keys() and "json" not in names
    assert normalise(packages_distributions()["sklearn"][0]) == "scikit-learn"
