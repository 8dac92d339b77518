import pytest
import torch

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
