import itertools

import pytest
import torch

from kr_lightning import seeding
from kr_lightning.data.datamodule import ImageDataModule
from kr_lightning.distill import GKDDataModule, cache
from kr_lightning.models import DiffusionGenerator
from kr_lightning.seeding import STREAMS, derive_seed, make_rng


def draw(rng: torch.Generator) -> torch.Tensor:
    return torch.rand(16, generator=rng)


@pytest.mark.parametrize("keys", [(), (0,), (0, 0), (3, 1)])
def test_streams_with_the_same_seed_and_keys_draw_differently(keys):
    draws = {s: draw(make_rng(7, *keys, stream=s)) for s in STREAMS}
    for a, b in itertools.combinations(STREAMS, 2):
        assert derive_seed(7, *keys, stream=a) != derive_seed(7, *keys, stream=b), (a, b)
        assert not torch.equal(draws[a], draws[b]), (a, b)
    for s in STREAMS:  # same stream, seed and keys: the same draws
        assert torch.equal(draws[s], draw(make_rng(7, *keys, stream=s)))


def test_keys_and_base_still_separate_draws_within_a_stream():
    first = draw(make_rng(7, 0, 0, stream=seeding.GENERATION))
    assert not torch.equal(first, draw(make_rng(7, 1, 0, stream=seeding.GENERATION)))
    assert not torch.equal(first, draw(make_rng(7, 0, 1, stream=seeding.GENERATION)))
    assert not torch.equal(first, draw(make_rng(8, 0, 0, stream=seeding.GENERATION)))


def test_a_stream_must_be_named_and_known():
    with pytest.raises(TypeError):
        make_rng(7, 0)  # no default stream
    with pytest.raises(TypeError):
        derive_seed(7, 0)
    with pytest.raises(ValueError, match="unknown random stream 'augmentaton'"):
        derive_seed(7, 0, stream="augmentaton")


def test_gkd_generation_of_set_0_and_augmentation_of_step_0_differ():
    dm = GKDDataModule(flag="digits", generator="unused", seed=3)  # the rng helpers need no setup()
    generation = draw(dm.generation_rng(0, 0))
    augmentation = draw(dm.augmentation_rng(0, 0))
    assert not torch.equal(generation, augmentation)
    assert torch.equal(generation, draw(dm.generation_rng(0, 0)))
    assert torch.equal(augmentation, draw(dm.augmentation_rng(0, 0)))


def test_generator_noise_differs_from_data_augmentation_under_one_seed():
    data = ImageDataModule(flag="digits", seed=5)
    model = DiffusionGenerator(
        num_classes=2, image_size=8, block_out_channels=[8, 16], attention_levels=[False, False], norm_num_groups=4
    )
    model.seed = 5
    for step, rank in [(0, 0), (4, 1)]:
        assert not torch.equal(draw(data.augmentation_rng(step, rank)), draw(model.training_rng(step, rank)))


def test_cache_key_changes_with_the_stream_scheme(tmp_path, monkeypatch):
    weights = tmp_path / "gen.ckpt"
    weights.write_bytes(b"weights")
    key = {"knobs": {"steps": 2}, "seed": 3, "set_index": 0, "rank": 0, "labels": torch.tensor([0, 1])}
    current = cache.cache_file(tmp_path, str(weights), "cpu", **key)
    assert current == cache.cache_file(tmp_path, str(weights), "cpu", **key)
    monkeypatch.setattr(seeding, "SCHEME", "streams-v0")
    assert cache.cache_file(tmp_path, str(weights), "cpu", **key) != current
