"""DeferredDataset: a dataset whose length is known up front and whose items are built on first access."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset, TensorDataset


class DeferredDataset(Dataset):
    """Wraps ``build`` (which returns a :class:`TensorDataset` of ``length`` rows) and calls it on first access.

    Lightning asks for the train loader before it knows which epoch a resumed run trains next (it restores the
    loop counters afterwards, then asks again); a loader over a deferred set costs nothing when it is replaced
    before its first batch, so a resumed GKD run generates only the set it trains on.

    Args:
        length: Number of rows ``build`` returns (known without building: it is the number of labels).
        build: Makes the dataset; called at most once.
    """

    def __init__(self, length: int, build: Callable[[], TensorDataset]) -> None:
        self.length = length
        self._build: Callable[[], TensorDataset] | None = build
        self._data: TensorDataset | None = None

    @property
    def data(self) -> TensorDataset:
        """The built dataset (building it now if needed)."""
        if self._data is None:
            assert self._build is not None
            data = self._build()
            if len(data) != self.length:
                raise RuntimeError(f"deferred dataset built {len(data)} rows; {self.length} were announced")
            self._data, self._build = data, None
        return self._data

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return self.data[index]
