"""Classifier backbones (plain ``nn.Module``s): a small CNN for CPU runs and ResNet-18 adapted to 28x28.

Every backbone is built as ``Backbone(in_channels, num_classes, **options)`` and maps ``(B, C, H, W)`` images
in ``[-1, 1]`` to ``(B, K)`` logits. ``features(x)`` returns the penultimate embedding (used by the
memorisation audit).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torchvision.models import resnet18

from kr_lightning.errors import ConfigError

Norm = Literal["batch", "group"]


def conv_norm_relu(cin: int, cout: int, norm: Norm = "batch", groups: int = 8) -> nn.Sequential:
    """3x3 convolution, batch norm (or group norm of ``groups`` groups), ReLU."""
    layer = nn.BatchNorm2d(cout) if norm == "batch" else nn.GroupNorm(groups, cout)
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), layer, nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """A VGG-style CNN: two conv pairs with max-pooling, one wider conv, global average pooling, linear head.

    About 0.14 M parameters at ``width=32`` (1 channel in); trains in seconds per epoch on 2 CPU cores at 28x28.
    Works for any input of at least 4x4 pixels.

    Args:
        in_channels: Image channels.
        num_classes: Number of classes K.
        width: Channels of the first stage (doubled at each stage).
        dropout: Dropout before the linear head.
        norm: ``batch`` (running statistics of the training images) or ``group``: group norm of 8 groups, which
            normalises each image by its own statistics, so a network trained on one image domain (synthetic) is
            not evaluated with that domain's statistics on another (real).
    """

    def __init__(
        self, in_channels: int, num_classes: int, width: int = 32, dropout: float = 0.0, norm: Norm = "batch"
    ) -> None:
        super().__init__()
        if norm not in ("batch", "group") or (norm == "group" and width % 8):
            raise ConfigError(f"norm must be 'batch' or 'group' (group: width divisible by 8); got {norm}, {width}")
        w = width

        def block(cin: int, cout: int) -> nn.Sequential:
            return conv_norm_relu(cin, cout, norm)

        self.body = nn.Sequential(
            block(in_channels, w),
            block(w, w),
            nn.MaxPool2d(2),
            block(w, 2 * w),
            block(2 * w, 2 * w),
            nn.MaxPool2d(2),
            block(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * w, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate embedding ``(B, 4 * width)``."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)``."""
        return self.head(self.body(x))


class ResNet18(nn.Module):
    """torchvision's ResNet-18 adapted to small images as in the MedMNIST v2 benchmark.

    The 7x7 stride-2 stem and the max-pool are replaced by a 3x3 stride-1 convolution, so 28x28 inputs keep a
    4x4 map before global pooling. About 11.2 M parameters.

    Args:
        in_channels: Image channels.
        num_classes: Number of classes K.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        net = resnet18(weights=None, num_classes=num_classes)
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        self.head = net.fc
        net.fc = nn.Identity()
        self.body = net

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate embedding ``(B, 512)``."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)``."""
        return self.head(self.body(x))
