"""LastCheckpoint: ``last.ckpt`` after every epoch, whatever the other checkpoint callbacks keep."""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    """Writes ``<dirpath>/last.ckpt`` at the end of every epoch (after validation when it runs every epoch).

    Lightning 2.6's ``ModelCheckpoint(save_last=True)`` only refreshes ``last.ckpt`` on epochs where it also saved
    a top-k file, so a run killed later would resume from an old epoch. The CLI adds this callback whenever a
    config asks for ``save_last``.

    Args:
        dirpath: Checkpoint folder.
        save_on_train_epoch_end: Save at the end of the training epoch (``None``: after validation when it runs
            every epoch).
    """

    def __init__(self, dirpath: str, save_on_train_epoch_end: bool | None = None) -> None:
        super().__init__(
            dirpath=dirpath,
            filename="last",
            monitor=None,
            save_top_k=1,
            every_n_epochs=1,
            enable_version_counter=False,
            save_on_train_epoch_end=save_on_train_epoch_end,
        )

    @property
    def state_key(self) -> str:
        """Distinct from every plain ``ModelCheckpoint`` so that both can be saved in one checkpoint."""
        return self._generate_state_key(kind="last")
