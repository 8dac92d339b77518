import json
import os
import stat

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from conftest import tiny_unet
from kr_lightning.errors import CheckpointError, ConfigError
from kr_lightning.models import ClassConditionalPipeline
from kr_lightning.models.loading import load_generator
from kr_lightning.models.sampling import sample
from kr_lightning.seeding import SAMPLING, make_rng


@pytest.fixture
def pipe():
    unet = tiny_unet(num_classes=3, image_size=6)  # the UNet works on 8x8; images are cropped back to 6x6
    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing")
    return ClassConditionalPipeline(unet=unet, scheduler=scheduler, image_size=6, sample_steps=3, sampler="ddim")


LABELS = torch.tensor([0, 2, 1, 0])


def test_config_holds_the_classes_and_sampling_defaults(pipe):
    assert pipe.num_classes == 3 and pipe.in_channels == 1 and pipe.image_size == 6
    assert (pipe.sample_steps, pipe.sample_guidance, pipe.sampler) == (3, 2.0, "ddim")
    assert pipe.config.num_classes == 3 and pipe.source == ""


def test_call_delegates_to_the_one_sampling_loop(pipe):
    images = pipe(LABELS, generator=make_rng(1, stream=SAMPLING), guidance_scale=1.5, sampler="dpmsolver++").images
    expected = sample(
        pipe.unet,
        pipe.scheduler.config,
        LABELS,
        steps=3,
        guidance=1.5,
        null_label=3,
        rng=make_rng(1, stream=SAMPLING),
        sampler="dpmsolver++",
        image_size=6,
    )
    assert images.shape == (4, 1, 6, 6) and torch.equal(images, expected)


def test_sampler_kinds_differ_and_the_scheduler_class_is_not_used(pipe):
    ddim = pipe(LABELS, generator=make_rng(1, stream=SAMPLING)).images
    assert not torch.equal(ddim, pipe(LABELS, generator=make_rng(1, stream=SAMPLING), sampler="ddpm").images)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)  # the same noise schedule
    assert torch.equal(ddim, pipe(LABELS, generator=make_rng(1, stream=SAMPLING)).images)


def test_output_types(pipe):
    pt = pipe(LABELS, generator=make_rng(2, stream=SAMPLING)).images
    (np_images,) = pipe(LABELS.tolist(), generator=make_rng(2, stream=SAMPLING), output_type="np", return_dict=False)
    assert pt.min() >= -1 and pt.max() <= 1
    assert isinstance(np_images, np.ndarray) and np_images.shape == (4, 6, 6, 1)
    np.testing.assert_allclose(np_images, (pt.permute(0, 2, 3, 1).numpy() + 1) / 2, atol=1e-6)
    with pytest.raises(ConfigError, match="output_type"):
        pipe(LABELS, generator=make_rng(2, stream=SAMPLING), output_type="pil")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        pipe(torch.tensor([3]), generator=make_rng(2, stream=SAMPLING))


def test_bad_construction_is_refused(pipe):
    with pytest.raises(ConfigError, match="sampler must be one of"):
        ClassConditionalPipeline(unet=pipe.unet, scheduler=pipe.scheduler, sampler="euler")
    with pytest.raises(ConfigError, match="needs 3 class embeddings"):
        ClassConditionalPipeline(unet=pipe.unet, scheduler=pipe.scheduler, num_classes=2)


def test_save_pretrained_round_trip_in_diffusers_layout(pipe, tmp_path):
    folder = pipe.export(tmp_path / "export")
    assert sorted(p.name for p in folder.iterdir()) == ["model_index.json", "scheduler", "unet"]
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "ClassConditionalPipeline" and index["sampler"] == "ddim"
    loaded = ClassConditionalPipeline.from_pretrained(folder)
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(pipe.config)
    assert isinstance(loaded.scheduler, DDPMScheduler)
    expected = pipe(LABELS, generator=make_rng(3, stream=SAMPLING)).images
    assert torch.equal(loaded(LABELS, generator=make_rng(3, stream=SAMPLING)).images, expected)
    again = load_generator(folder)
    assert again.source == str(folder) and not again.unet.training
    assert not any(p.requires_grad for p in again.unet.parameters())


def test_export_replaces_a_previous_export_atomically(pipe, tmp_path):
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "stale.txt").write_text("old")
    pipe.export(tmp_path / "export")
    assert not (tmp_path / "export" / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temporary or old folder left


def test_an_export_gets_the_umask_mode_not_owner_only(pipe, tmp_path):
    old = os.umask(0o022)
    try:
        folder = pipe.export(tmp_path / "export")
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755


def test_an_export_in_the_old_layout_asks_to_re_export(tmp_path):
    old = tmp_path / "run" / "export"
    (old / "unet").mkdir(parents=True)
    (old / "kr_generator.json").write_text('{"format_version": 1}')
    with pytest.raises(CheckpointError, match="old kr_lightning layout.*Re-export"):
        load_generator(old)
