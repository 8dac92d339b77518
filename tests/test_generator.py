import json

import medmnist
import numpy as np
import pytest
import torch

from conftest import CONFIGS, cli_error
from kr_lightning.cli import main
from kr_lightning.models import ClassConditionalPipeline, DiffusionGenerator
from kr_lightning.models.loading import load_generator
from kr_lightning.seeding import DIFFUSION_NOISE, SAMPLING, make_rng


@pytest.mark.parametrize(
    "knobs",
    [
        {},
        {"prediction_type": "v_prediction", "snr_gamma": 5.0, "resnet_time_scale_shift": "scale_shift"},
        {"prediction_type": "epsilon", "snr_gamma": 1.0},
    ],
)
def test_tiny_unet_learns_a_fixed_batch(knobs):
    torch.manual_seed(0)
    model = DiffusionGenerator(
        num_classes=2,
        image_size=8,
        block_out_channels=[16, 32],
        attention_levels=[False, False],
        norm_num_groups=8,
        **knobs,
    )
    x = torch.rand(8, 1, 8, 8) * 2 - 1
    y = torch.tensor([0, 1] * 4)
    optimizer = torch.optim.Adam(model.unet.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = model.diffusion_loss(x, y, make_rng(0, stream=DIFFUSION_NOISE))  # same noise and timesteps every step
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_min_snr_and_adagn_change_the_loss_and_the_conditioning():
    common = {"num_classes": 2, "image_size": 8, "block_out_channels": [8, 16], "norm_num_groups": 4}
    torch.manual_seed(0)
    plain = DiffusionGenerator(**common, attention_levels=[False, False])
    weighted = DiffusionGenerator(**common, attention_levels=[False, False], snr_gamma=1.0)
    weighted.load_state_dict(plain.state_dict())
    x, y = torch.rand(16, 1, 8, 8) * 2 - 1, torch.tensor([0, 1] * 8)
    with torch.no_grad():
        a = plain.diffusion_loss(x, y, make_rng(0, stream=DIFFUSION_NOISE))
        b = weighted.diffusion_loss(x, y, make_rng(0, stream=DIFFUSION_NOISE))
    assert b < a  # gamma = 1 down-weights every timestep with SNR > 1 (weights <= 1 for the noise target)
    adagn = DiffusionGenerator(**common, attention_levels=[False, False], resnet_time_scale_shift="scale_shift")
    block = adagn.unet.down_blocks[0].resnets[0]
    assert block.time_emb_proj.out_features == 2 * block.conv1.out_channels  # a scale and a shift per channel
    with pytest.raises(Exception, match="snr_gamma must be > 0"):
        DiffusionGenerator(**common, attention_levels=[False, False], snr_gamma=0.0)


def test_training_noise_is_a_function_of_seed_and_step():
    model = DiffusionGenerator(
        num_classes=2,
        image_size=8,
        block_out_channels=[8, 16],
        attention_levels=[False, False],
        norm_num_groups=4,
        seed=3,
    )
    x, y = torch.rand(4, 1, 8, 8) * 2 - 1, torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        a = model.diffusion_loss(x, y, model.training_rng(5, 0))
        b = model.diffusion_loss(x, y, model.training_rng(5, 0))
        c = model.diffusion_loss(x, y, model.training_rng(6, 0))
    assert a == b and a != c


def test_fit_keeps_every_checkpoint_grids_and_export(tiny_generator_run):
    run = tiny_generator_run
    names = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert names == ["gen-epoch000.ckpt", "gen-epoch001.ckpt", "last.ckpt"]
    assert (run / "samples" / "epoch000.png").is_file() and (run / "samples" / "final.png").is_file()
    index = json.loads((run / "export" / "model_index.json").read_text())  # diffusers' pipeline layout
    assert index["_class_name"] == "ClassConditionalPipeline"
    assert index["unet"] == ["diffusers", "UNet2DModel"] and index["scheduler"] == ["diffusers", "DDPMScheduler"]
    assert index["num_classes"] == 10 and index["image_size"] == 8 and index["sample_steps"] == 2
    assert (run / "export" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (run / "export" / "scheduler" / "scheduler_config.json").is_file()


def test_checkpoints_carry_the_ema_weights_the_export_holds(tiny_generator_run):
    ckpt = torch.load(tiny_generator_run / "checkpoints" / "last.ckpt", weights_only=True)
    ema = {k[len("unet.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("unet.")}
    raw = {k[len("unet.") :]: v for k, v in ckpt["current_model_state"].items() if k.startswith("unet.")}
    exported = load_generator(tiny_generator_run / "export").unet.state_dict()
    key = "conv_in.weight"
    assert not torch.equal(ema[key], raw[key])
    for name, value in exported.items():
        torch.testing.assert_close(value, ema[name])


def test_checkpoint_and_export_sample_identically(tiny_generator_run):
    labels = torch.arange(10)
    a = load_generator(tiny_generator_run / "checkpoints" / "last.ckpt")(
        labels, generator=make_rng(1, stream=SAMPLING)
    ).images
    b = load_generator(tiny_generator_run / "export")(labels, generator=make_rng(1, stream=SAMPLING)).images
    assert a.shape == (10, 1, 8, 8)
    torch.testing.assert_close(a, b)


def test_lightning_checkpoint_rebuilds_the_module(tiny_generator_run):
    import lightning as L

    model = L.LightningModule.load_from_checkpoint(tiny_generator_run / "checkpoints" / "last.ckpt")
    assert isinstance(model, DiffusionGenerator) and model.hparams.num_classes == 10


def test_loading_a_teacher_checkpoint_as_generator_is_refused(tmp_path, tiny_root):
    run = tmp_path / "teacher"
    main(
        [
            "fit",
            "--config",
            str(CONFIGS / "tiny_teacher.yaml"),
            f"--trainer.default_root_dir={run}",
            f"--data.root={tiny_root}",
            "--trainer.max_epochs=1",
        ]
    )
    with pytest.raises(ValueError, match="not a DiffusionGenerator checkpoint.*Teacher"):
        load_generator(run / "checkpoints" / "last.ckpt")
    with pytest.raises(ValueError, match="not a kr_lightning generator export"):
        load_generator(tmp_path)
    with pytest.raises(FileNotFoundError, match="generator not found"):
        load_generator(tmp_path / "missing.ckpt")


def test_sample_command_writes_a_file_medmnist_reads(tiny_generator_run, tmp_path, capsys):
    out = tmp_path / "breastmnist.npz"  # medmnist looks for {flag}.npz in its root
    main(
        [
            "sample",
            f"--generator={tiny_generator_run / 'export'}",
            f"--out={out}",
            "--counts=[3, 2, 0, 1, 0, 0, 0, 0, 0, 1]",
            "--steps=2",
            "--seed=4",
            "--device=cpu",
        ]
    )
    with np.load(out) as data:
        images, labels = data["train_images"], data["train_labels"]
    assert images.dtype == np.uint8 and images.shape == (7, 8, 8)
    assert labels.shape == (7, 1) and labels.reshape(-1).tolist() == [0, 0, 0, 1, 1, 3, 9]
    assert out.with_suffix(".png").is_file()
    dataset = medmnist.BreastMNIST(split="train", root=str(tmp_path))
    assert dataset.imgs.shape == (7, 8, 8)
    image, target = dataset.__getitem__(0)
    assert image.size == (8, 8) and target.tolist() == [0]
    args = ["sample", f"--generator={tiny_generator_run / 'export'}", f"--out={out}", "--per_class=1", "--device=cpu"]
    assert "--overwrite=true" in cli_error(capsys, args)


def tiny_frozen() -> ClassConditionalPipeline:
    """A small random generator, the same weights on every call."""
    torch.manual_seed(0)
    model = DiffusionGenerator(
        num_classes=2, image_size=8, block_out_channels=[8, 16], attention_levels=[False, False], norm_num_groups=4
    )
    return model.frozen()


def test_sample_command_in_bf16_writes_close_images(tiny_generator_run, tmp_path, monkeypatch):
    monkeypatch.setattr("kr_lightning.models.speedups.bf16_unsupported", lambda device: None)
    common = [f"--generator={tiny_generator_run / 'export'}", "--per_class=2", "--steps=3", "--device=cpu"]
    main(["sample", *common, f"--out={tmp_path / 'exact.npz'}"])
    main(["sample", *common, f"--out={tmp_path / 'bf16.npz'}", "--precision=bf16-mixed"])
    with np.load(tmp_path / "exact.npz") as a, np.load(tmp_path / "bf16.npz") as b:
        exact, fast = a["train_images"].astype(int), b["train_images"].astype(int)
        assert np.array_equal(a["train_labels"], b["train_labels"])
    assert exact.shape == fast.shape and not np.array_equal(exact, fast)
    assert np.abs(exact - fast).mean() < 8  # grey levels of 255


@pytest.mark.parametrize(
    ("capabilities", "native"),
    [
        ({"avx512_f": True, "avx512_bw": True, "avx512_vl": True, "avx512_dq": True, "avx512_bf16": False}, False),
        ({"avx2": True}, False),
        ({"avx512_f": True, "avx512_bf16": True}, True),
        ({"avx512_f": True, "amx_bf16": True, "amx_tile": True}, True),
        ({"neon": True, "bf16": True}, True),
        ({"neon": True, "bf16": False}, False),
    ],
)
def test_native_bf16_means_bf16_units_not_just_avx512(capabilities, native):
    # oneDNN's check says yes on every AVX-512 CPU, where bf16 is emulated and slower than float32
    from kr_lightning.models.speedups import cpu_has_native_bf16

    assert cpu_has_native_bf16(capabilities) is native


def dpm(pipe, labels):
    """Three DPM-Solver++ steps from seed 0."""
    return pipe(labels, generator=make_rng(0, stream=SAMPLING), num_inference_steps=3, sampler="dpmsolver++").images


def test_bf16_sampling_needs_native_units_and_otherwise_warns_and_stays_float32(monkeypatch):
    from kr_lightning.models import speedups

    here = speedups.bf16_unsupported(torch.device("cpu"))
    assert here is None or "bf16" in here
    monkeypatch.setattr(speedups, "bf16_unsupported", lambda device: None)
    fast = tiny_frozen().optimize(bf16=True)
    assert fast.autocast == torch.bfloat16
    labels = torch.tensor([0, 1, 1, 0])
    exact = dpm(tiny_frozen(), labels)
    images = dpm(fast, labels)
    assert images.dtype == torch.float32 and not torch.equal(images, exact)

    monkeypatch.setattr(speedups, "bf16_unsupported", lambda device: "this CPU has no AVX512-BF16")
    frozen = tiny_frozen()
    with pytest.warns(UserWarning, match="stays float32"):
        frozen.optimize(bf16=True)
    assert frozen.autocast is None
    assert torch.equal(dpm(frozen, labels), exact)


def test_compile_needs_a_backend_and_otherwise_warns_and_stays_eager(monkeypatch):
    import torch._inductor.cpp_builder as cpp_builder

    from kr_lightning.models.speedups import compile_backend_missing

    compiled = isinstance(tiny_frozen().optimize(compile=True).unet, torch._dynamo.eval_frame.OptimizedModule)
    assert compiled == (compile_backend_missing(torch.device("cpu")) is None)

    def no_compiler():
        raise RuntimeError("no g++")

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", no_compiler)
    frozen = tiny_frozen()
    with pytest.warns(UserWarning, match="no C\\+\\+ compiler"):
        frozen.optimize(compile=True)
    assert not isinstance(frozen.unet, torch._dynamo.eval_frame.OptimizedModule)
