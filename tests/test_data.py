from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_medmnist_npz
from kr_lightning.data import ImageDataModule
from kr_lightning.data.arrays import load_npz, to_tensor, to_uint8
from kr_lightning.data.augment import add_noise, augment, mixup, random_shift
from kr_lightning.seeding import AUGMENTATION, MIXUP, NOISE, make_rng


def test_medmnist_metadata_known_before_setup(tiny_root):
    dm = ImageDataModule(flag="dermamnist", root=str(tiny_root))
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (7, 3, 28)


def test_medmnist_splits_scaled_and_labelled(tiny_root):
    dm = ImageDataModule(flag="breastmnist", root=str(tiny_root))
    dm.setup("fit")
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (16, 1, 28, 28) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert y.dtype == torch.int64 and y.shape == (16,) and set(y.tolist()) <= {0, 1}
    assert len(dm.split("train")) == 48 and len(dm.split("test")) == 16


def test_medmnist_rgb(tmp_path):
    write_medmnist_npz(tmp_path, "dermamnist", channels=3, num_classes=7)
    dm = ImageDataModule(flag="dermamnist", root=str(tmp_path))
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (16, 3, 28, 28) and int(y.max()) < 7


def test_pixel_scaling_round_trips():
    images = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    x = to_tensor(images)
    assert x.min() == -1 and x.max() == 1
    np.testing.assert_array_equal(to_uint8(x), images)


def test_root_from_environment(tiny_root, monkeypatch):
    monkeypatch.setenv("KR_DATA_ROOT", str(tiny_root))
    dm = ImageDataModule(flag="breastmnist")
    assert dm.data_root == tiny_root
    dm.setup()


def test_missing_file_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("KR_DATA_ROOT", raising=False)
    dm = ImageDataModule(flag="pneumoniamnist", root=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as err:
        dm.setup()
    message = str(err.value)
    for needle in (
        "pneumoniamnist.npz",
        str((tmp_path / "nowhere").resolve()),
        "KR_DATA_ROOT",
        "--data.root",
        "--data.download=true",
    ):
        assert needle in message


def test_failed_download_says_what_to_do(tmp_path, monkeypatch):
    import medmnist

    def offline(*args, **kwargs):
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(medmnist, "BreastMNIST", offline)
    dm = ImageDataModule(flag="breastmnist", root=str(tmp_path), download=True)
    with pytest.raises(FileNotFoundError, match="download failed.*network unreachable"):
        dm.setup()


def test_unknown_flag_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown dataset 'breastmnst'.*breastmnist"):
        ImageDataModule(flag="breastmnst")


@pytest.mark.parametrize("flag", ["chestmnist", "organmnist3d"])
def test_multilabel_and_3d_are_refused(flag):
    with pytest.raises(ValueError, match="unsupported"):
        ImageDataModule(flag=flag)


def test_npz_with_wrong_keys(tmp_path):
    path = tmp_path / "breastmnist.npz"
    np.savez(path, images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="missing keys"):
        load_npz(path, num_classes=2)


def test_npz_with_labels_out_of_range(tmp_path):
    write_medmnist_npz(tmp_path, num_classes=3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        load_npz(tmp_path / "breastmnist.npz", num_classes=2)


def test_truncated_npz(tmp_path):
    path = write_medmnist_npz(tmp_path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable npz"):
        load_npz(path, num_classes=2)


def test_train_order_is_a_function_of_seed_and_epoch(tiny_root):
    def order(seed, epoch):
        dm = ImageDataModule(flag="breastmnist", root=str(tiny_root), seed=seed, batch_size=48)
        dm.setup()
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return list(loader.sampler)

    assert order(0, 3) == order(0, 3)
    assert order(0, 3) != order(0, 4)
    assert order(0, 3) != order(1, 3)
    assert sorted(order(0, 3)) == list(range(48))


def test_shift_moves_pixels_by_the_drawn_offset():
    x = -torch.ones(64, 1, 9, 9)
    x[:, :, 4, 4] = 1.0
    y = random_shift(x, 2, make_rng(0, stream=AUGMENTATION))
    positions = (y[:, 0] == 1).nonzero()[:, 1:]
    offsets = positions - 4
    assert offsets.abs().max() <= 2 and len(positions) == 64
    assert len({tuple(o) for o in offsets.tolist()}) > 5


def test_augment_is_deterministic_and_identity_when_off():
    x = torch.randn(8, 1, 28, 28).clamp(-1, 1)
    a = augment(x, make_rng(1, stream=AUGMENTATION), max_shift=2, hflip=True, vflip=False)
    b = augment(x, make_rng(1, stream=AUGMENTATION), max_shift=2, hflip=True, vflip=False)
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert torch.equal(augment(x, make_rng(1, stream=AUGMENTATION), max_shift=0, hflip=False, vflip=False), x)


def test_digits_split_is_fixed_stratified_and_disjoint():
    a = ImageDataModule(flag="digits", seed=0)
    b = ImageDataModule(flag="digits", seed=5)
    sizes = {s: len(a.split(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 1078, "val": 180, "test": 539}
    for s in sizes:
        np.testing.assert_array_equal(a.split(s).images, b.split(s).images)
    counts = np.bincount(a.split("val").labels, minlength=10)
    assert counts.min() >= 17 and counts.max() <= 19
    flat = {s: {img.tobytes() for img in a.split(s).images} for s in sizes}
    # sklearn's digits contain a few exact duplicates; the splits share at most a handful of identical images
    assert len(flat["train"] & flat["test"]) < 5
    assert a.split("train").images.dtype == np.uint8 and a.split("train").images.max() == 255


def test_membership_contract():
    dm = ImageDataModule(flag="digits")
    assert dm.member_split == "train"
    assert set(dm.nonmember_splits) == {"val", "test"}


def test_load_npz_rejects_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_npz(Path(tmp_path) / "x.npz", num_classes=2)


def test_mixup_mixes_each_image_with_one_partner_and_names_the_dominant_one():
    n = 32
    x = torch.eye(n)[:, None, None, :]  # image i: a single 1 at pixel i, so a mixed image shows both parts
    mixed, dominant = mixup(x, make_rng(5, 0, 0, stream=MIXUP), 1.0)
    again, dominant_again = mixup(x, make_rng(5, 0, 0, stream=MIXUP), 1.0)
    assert torch.equal(mixed, again) and torch.equal(dominant, dominant_again)
    pixels = mixed[:, 0, 0, :]
    torch.testing.assert_close(pixels.sum(-1), torch.ones(n))  # convex combinations
    assert ((pixels > 0).sum(-1) <= 2).all()  # of the image and one partner
    own = pixels[torch.arange(n), torch.arange(n)]
    partner = torch.where(own < 1, (pixels - torch.diag(own)).argmax(-1), torch.arange(n))
    assert len(set(partner[own < 1].tolist())) == int((own < 1).sum())  # partners come from a permutation
    assert torch.equal(dominant, pixels.argmax(-1))  # the image with the larger share
    assert (dominant != torch.arange(n)).any() and (dominant == torch.arange(n)).any()
    assert torch.equal(mixup(x, make_rng(5, 0, 0, stream=MIXUP), 0.0)[0], x)  # concentration 0: the identity


def test_mixup_concentration_sets_how_far_images_mix():
    x = torch.cat([torch.zeros(256, 1, 2, 2), torch.ones(256, 1, 2, 2)])

    def minor_share(concentration):
        v = mixup(x, make_rng(9, 0, 0, stream=MIXUP), concentration)[0][:, 0, 0, 0]
        return torch.minimum(v, 1 - v).mean().item()  # 0 unmixed; Beta(1, 1) on a 0-1 pair: 1/4

    assert minor_share(0.2) < 0.5 * minor_share(1.0)
    assert 0.08 < minor_share(1.0) < 0.18  # about half the partners hold the other value: ~1/8


def test_add_noise_adds_gaussian_pixels_of_the_given_sd_and_stays_in_range():
    x = torch.zeros(64, 1, 16, 16)
    noisy = add_noise(x, make_rng(3, 0, 0, stream=NOISE), 0.07)
    assert torch.equal(noisy, add_noise(x, make_rng(3, 0, 0, stream=NOISE), 0.07))  # a function of its rng
    assert not torch.equal(noisy, add_noise(x, make_rng(3, 1, 0, stream=NOISE), 0.07))  # another step, other noise
    assert abs(noisy.std().item() - 0.07) < 0.003 and abs(noisy.mean().item()) < 0.003
    lag = (noisy[..., 1:] * noisy[..., :-1]).mean() / noisy.var()
    assert abs(lag.item()) < 0.03  # independent pixels: no spatial correlation
    edges = add_noise(torch.full((8, 1, 4, 4), 0.99), make_rng(3, 0, 0, stream=NOISE), 0.5)
    assert edges.max() <= 1.0 and (edges == 1.0).any() and edges.min() >= -1.0  # clipped to the image range
    assert torch.equal(add_noise(x, make_rng(3, 0, 0, stream=NOISE), 0.0), x)  # sd 0: the identity


def test_grained_noise_is_white_noise_blurred_by_a_gaussian_at_the_given_pixel_sd():
    from scipy.ndimage import gaussian_filter

    x = torch.zeros(256, 1, 28, 28)
    white = add_noise(x, make_rng(5, 0, 0, stream=NOISE), 0.1, grain=0.0)
    grained = add_noise(x, make_rng(5, 0, 0, stream=NOISE), 0.1, grain=0.7)
    # the same white draw, blurred by scipy's Gaussian (torch's "reflect" is scipy's "mirror"; cut at 3 px) and
    # rescaled to unit variance per pixel by the kernel's own norm
    raw = torch.randn(x.shape, generator=make_rng(5, 0, 0, stream=NOISE))
    taps = torch.exp(-0.5 * (torch.arange(-3, 4) / 0.7) ** 2)
    gain = (taps / taps.sum()).square().sum().item()  # variance kept by one axis of the normalised blur
    blurred = gaussian_filter(raw.numpy(), sigma=(0, 0, 0.7, 0.7), mode="mirror", truncate=3 / 0.7) / gain
    torch.testing.assert_close(grained, (0.1 * torch.from_numpy(blurred)).clamp(-1, 1), atol=1e-5, rtol=0)
    inner = grained[..., 4:-4, 4:-4]
    assert abs(inner.std().item() - 0.1) < 0.004  # the pixel sd asked for
    lag = ((inner[..., 1:] * inner[..., :-1]).mean() / inner.var()).item()
    assert 0.5 < lag < 0.65  # neighbours correlate (a Gaussian of sd 0.7 px: exp(-1 / (4 * 0.49)) = 0.60)
    hf = lambda a: (a[..., 1:] - a[..., :-1]).square().mean().item() / a.var().item()  # noqa: E731
    assert hf(inner) < 0.5 * hf(white)  # its power sits at lower spatial frequencies than white noise's
