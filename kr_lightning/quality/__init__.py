"""Generator quality without downloads.

Class fidelity, Fréchet distance and precision / recall / density / coverage in the teacher's feature space, and the
images' high-frequency energy in pixel space, each beside its real-vs-real reference value.
"""

from kr_lightning.quality.metrics import class_fidelity, frechet_distance, high_frequency_energy, prdc_scores
from kr_lightning.quality.scorer import QualityScorer

__all__ = ["QualityScorer", "class_fidelity", "frechet_distance", "high_frequency_energy", "prdc_scores"]
