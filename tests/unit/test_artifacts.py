"""Atomic artifact writes: all or nothing, no temporary file left behind, and the mode a plain ``open`` gives."""

import os
import stat
from pathlib import Path

import pytest

from kr_lightning.artifacts import atomic_write, write_json, write_text


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = write_text(tmp_path / "run.json", "old")

    def fail(fh) -> None:  # noqa: ANN001 - a binary file handle
        fh.write(b"half of a new")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_artifacts_get_the_umask_mode_not_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "metrics.json", {"acc": 0.9})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
