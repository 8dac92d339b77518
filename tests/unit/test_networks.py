import pytest
import torch

from kr_lightning.errors import ConfigError
from kr_lightning.models import ResNet18, SmallCNN


@pytest.mark.parametrize("size", [8, 28])
@pytest.mark.parametrize("channels", [1, 3])
def test_small_cnn_shapes(size, channels):
    net = SmallCNN(channels, 5, width=8)
    x = torch.randn(2, channels, size, size)
    assert net(x).shape == (2, 5)
    assert net.features(x).shape == (2, 32)


def test_resnet18_is_adapted_to_28px():
    net = ResNet18(3, 9)
    assert net.body.conv1.stride == (1, 1) and isinstance(net.body.maxpool, torch.nn.Identity)
    assert net(torch.randn(2, 3, 28, 28)).shape == (2, 9)
    assert 11.0e6 < sum(p.numel() for p in net.parameters()) < 11.3e6


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_small_cnn_group_norm_scores_each_image_on_its_own(norm):
    """In training mode batch norm mixes the images of a batch; group norm does not, and keeps no running
    statistics (a network trained on synthetic images is not evaluated on real ones with synthetic statistics)."""
    torch.manual_seed(0)
    net = SmallCNN(1, 2, width=8, norm=norm).train()
    x = torch.randn(4, 1, 28, 28)
    alone = net(x[:1])
    together = net(torch.cat([x[:1], 3 * x[1:] + 1]))[:1]
    assert torch.allclose(alone, together, atol=1e-5) == (norm == "group")
    kinds = {type(m) for m in net.modules()}
    assert (torch.nn.GroupNorm in kinds) == (norm == "group") and (torch.nn.BatchNorm2d in kinds) == (norm == "batch")


def test_small_cnn_refuses_an_unknown_norm_or_a_width_group_norm_cannot_split():
    with pytest.raises(ConfigError, match="norm must be 'batch' or 'group'"):
        SmallCNN(1, 2, width=8, norm="layer")
    with pytest.raises(ConfigError, match="width divisible by 8"):
        SmallCNN(1, 2, width=12, norm="group")
