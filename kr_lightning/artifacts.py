"""Atomic file writes: every artifact is written to a temporary name beside its target, then renamed.

A killed process therefore leaves either the previous file or the complete new one, never a truncated file
that a later stage would read. The temporary file is created with the mode a plain ``open`` would give (``0o666``
less the umask), not ``tempfile``'s owner-only ``0o600``, so results stay readable by whoever may read the folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Call ``write(fh)`` on a temporary file in ``path``'s folder, fsync it and rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically write raw bytes."""
    return atomic_write(path, lambda fh: fh.write(data))


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write UTF-8 text."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:  # noqa: ANN401 - any JSON-serialisable object
    """Atomically write ``obj`` as indented JSON."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    """Atomically write a compressed npz (the name must end in ``.npz``)."""
    return atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))


def save_figure(path: str | Path, fig: Any, **kwargs: Any) -> Path:  # noqa: ANN401 - a matplotlib Figure
    """Atomically save a matplotlib figure; the format follows the suffix of ``path``."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda fh: fig.savefig(fh, format=fmt, **kwargs))


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex): which exact model file an artifact describes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
