"""QualityScorer: a generator's synthetic images scored against the real train split, beside real-vs-real values.

The feature space is the teacher's penultimate layer (no download; the teacher is trained on the same data). The
real **train** split is the reference set (the images the generator learnt from). Each metric is also computed for
the real **val** split in place of the synthetic images: that is the value a perfect generator would get at the
val split's size. Because the Fréchet distance, recall and coverage depend on the number of samples, they are
reported twice: on every synthetic image, and as the mean over random synthetic subsets of the val split's size
(``matched``), which is the number to put beside the reference. The test split is never read.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from kr_lightning.data.arrays import to_tensor
from kr_lightning.data.datamodule import ImageDataModule
from kr_lightning.distill.synthesis import teacher_logits
from kr_lightning.errors import ConfigError
from kr_lightning.models.classifier import ClassifierModule
from kr_lightning.models.loading import load_classifier
from kr_lightning.quality.metrics import class_fidelity, frechet_distance, high_frequency_energy, prdc_scores

SET_METRICS = ("fd", "precision", "recall", "density", "coverage")


class QualityScorer:
    """Scores synthetic image sets in the feature space of a frozen classifier.

    Args:
        teacher: Trained classifier; its ``net.features`` is the feature space and its argmax the class judge.
        train: Real train images ``(N, C, H, W)`` in ``[-1, 1]`` and labels ``(N,)`` (the reference set).
        val: Real val images and labels (the real-vs-real reference; never the test split).
        nearest_k: k of the precision / recall / density / coverage balls.
        subsets: Random synthetic subsets of the val split's size averaged for the ``matched`` values.
        seed: Seed of the subset draws.
    """

    def __init__(
        self,
        teacher: ClassifierModule,
        train: tuple[torch.Tensor, torch.Tensor],
        val: tuple[torch.Tensor, torch.Tensor],
        *,
        nearest_k: int = 5,
        subsets: int = 5,
        seed: int = 0,
    ) -> None:
        if not hasattr(teacher.net, "features"):
            raise ConfigError(f"{type(teacher.net).__name__} has no features(x) method; the quality metrics need one")
        self.teacher = teacher.eval()
        self.num_classes = int(teacher.hparams.num_classes)
        self.nearest_k = nearest_k
        self.subsets = subsets
        self.seed = seed
        self.train_x, self.train_y = train
        self.val_x, self.val_y = val
        self.train_features = self.features(self.train_x)
        self._reference: dict[str, Any] | None = None

    @classmethod
    def from_data(
        cls, data: ImageDataModule, teacher_ckpt: str, *, seed: int = 0, device: torch.device | str = "cpu"
    ) -> QualityScorer:
        """A scorer over ``data``'s real train and val splits in ``teacher_ckpt``'s feature space, on ``device``."""
        data.setup("fit")
        tensors = {}
        for name in ("train", "val"):
            split = data.split(name)
            tensors[name] = (to_tensor(split.images), torch.from_numpy(split.labels))
        return cls(load_classifier(teacher_ckpt, device), tensors["train"], tensors["val"], seed=seed)

    @property
    def device(self) -> torch.device:
        """Where the teacher (the feature extractor and class judge) runs."""
        return self.teacher.device

    def features(self, images: torch.Tensor) -> np.ndarray:
        """``(N, d)`` float32 teacher features."""
        net, device = self.teacher.net, self.teacher.device
        with torch.no_grad():
            out = [net.features(images[i : i + 512].to(device)).flatten(1).float() for i in range(0, len(images), 512)]
        return torch.cat(out).cpu().numpy()

    def reference(self) -> dict[str, Any]:
        """The real val split scored as if it were synthetic (computed once)."""
        if self._reference is None:
            fake = self.features(self.val_x)
            self._reference = {"n": len(self.val_y), **self._score(self.val_x, self.val_y, fake)}
        return self._reference

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        """Every metric of the synthetic ``images`` generated for classes ``labels``, and the matched values."""
        n_ref = len(self.val_y)
        if len(labels) < n_ref:
            raise ConfigError(
                f"score at least as many synthetic images as the val split has ({n_ref}); got {len(labels)}"
            )
        fake = self.features(images)
        result = {"n": len(labels), **self._score(images, labels, fake)}
        subsets = self._matched_subsets(labels, n_ref, np.random.default_rng(self.seed))
        draws = [self._set_metrics(fake[idx.numpy()]) for idx in subsets]
        result["matched"] = {"n": n_ref} | {k: float(np.mean([d[k] for d in draws])) for k in SET_METRICS}
        result["matched"]["sd"] = {k: float(np.std([d[k] for d in draws], ddof=1)) for k in SET_METRICS}
        return result

    def _matched_subsets(self, labels: torch.Tensor, n: int, rng: np.random.Generator) -> list[torch.Tensor]:
        """Random subsets of ``n`` indices with the val split's class mix (so class proportions do not differ)."""
        val_counts = np.bincount(self.val_y.numpy(), minlength=self.num_classes)
        pools = [np.flatnonzero(labels.numpy() == k) for k in range(self.num_classes)]
        if any(len(p) < c for p, c in zip(pools, val_counts, strict=True)):
            return [torch.from_numpy(rng.choice(len(labels), n, replace=False)) for _ in range(self.subsets)]
        return [
            torch.from_numpy(
                np.concatenate([rng.choice(p, c, replace=False) for p, c in zip(pools, val_counts, strict=True)])
            )
            for _ in range(self.subsets)
        ]

    def _score(self, images: torch.Tensor, labels: torch.Tensor, fake: np.ndarray) -> dict[str, Any]:
        logits = teacher_logits(self.teacher, images.to(self.teacher.device)).cpu()
        result: dict[str, Any] = class_fidelity(logits, labels.cpu(), self.num_classes)
        result["hf_energy"] = high_frequency_energy(images)
        result |= self._set_metrics(fake)
        per_class = []
        for k in range(self.num_classes):
            real_k, fake_k = self.train_features[self.train_y.numpy() == k], fake[labels.cpu().numpy() == k]
            enough = min(len(real_k), len(fake_k)) > self.nearest_k
            per_class.append(prdc_scores(real_k, fake_k, self.nearest_k)["coverage"] if enough else math.nan)
        result["coverage_per_class"] = per_class
        return result

    def _set_metrics(self, fake: np.ndarray) -> dict[str, float]:
        fd = frechet_distance(self.train_features, fake)
        return {"fd": fd, **prdc_scores(self.train_features, fake, self.nearest_k)}
