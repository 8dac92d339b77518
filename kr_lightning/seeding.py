"""Explicit random generators derived from integer keys; nothing here touches the global RNG."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(base: int, *keys: int) -> int:
    """Mix ``base`` and ``keys`` (e.g. epoch, rank, step) into a 63-bit seed; distinct keys give unrelated seeds."""
    digest = hashlib.blake2b(repr((int(base), *map(int, keys))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def make_rng(base: int, *keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``derive_seed(base, *keys)``."""
    rng = torch.Generator(device=device)
    rng.manual_seed(derive_seed(base, *keys))
    return rng
