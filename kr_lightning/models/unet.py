"""Factory for the class-conditional diffusers ``UNet2DModel`` used by the generator (an ``nn.Module``)."""

from __future__ import annotations

import math

from diffusers import UNet2DModel

from kr_lightning.errors import ConfigError


def padded_size(image_size: int, levels: int) -> int:
    """Smallest size >= ``image_size`` divisible by ``2 ** (levels - 1)`` (28 stays 28 with 3 levels, 32 with 4)."""
    factor = 2 ** (levels - 1)
    return math.ceil(image_size / factor) * factor


def build_unet(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    block_out_channels: list[int],
    layers_per_block: int,
    attention_levels: list[bool],
    norm_num_groups: int,
    attention_head_dim: int,
    dropout: float,
    resnet_time_scale_shift: str = "default",
) -> UNet2DModel:
    """A ``UNet2DModel`` with ``num_classes + 1`` class embeddings (index ``num_classes`` = "no class").

    One resolution level per entry of ``block_out_channels``; ``attention_levels[i]`` adds self-attention at level
    ``i`` (0 = full resolution). ``resnet_time_scale_shift="scale_shift"`` injects the time + class embedding as a
    scale and shift after each GroupNorm (AdaGN) instead of a bias. The sample size is ``image_size`` padded up to a
    multiple of ``2 ** (levels - 1)``.
    """
    if len(attention_levels) != len(block_out_channels):
        raise ConfigError(
            f"attention_levels needs one flag per level: {len(block_out_channels)} levels in block_out_channels, "
            f"got {len(attention_levels)} flags"
        )
    bad = [c for c in block_out_channels if c % norm_num_groups]
    if bad:
        raise ConfigError(f"norm_num_groups={norm_num_groups} must divide every block_out_channels entry; {bad} do not")
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention_levels)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention_levels))
    return UNet2DModel(
        sample_size=padded_size(image_size, len(block_out_channels)),
        in_channels=in_channels,
        out_channels=in_channels,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        down_block_types=down,
        up_block_types=up,
        norm_num_groups=norm_num_groups,
        attention_head_dim=attention_head_dim,
        dropout=dropout,
        resnet_time_scale_shift=resnet_time_scale_shift,
        num_class_embeds=num_classes + 1,
    )
