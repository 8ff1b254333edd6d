"""ResNet18/34 in their CIFAR form: a 3x3 stride-1 stem and no max-pool.

timm's ImageNet ResNet with its 7x7 stride-2 stem and max-pool replaced: the
rest of the network (basic blocks, widths 64-512, global pooling) is the
standard one. ResNet34 with 100 classes has 21.3M parameters in 110 tensors.
"""

from __future__ import annotations

from torch import nn


def cifar_resnet(depth: int, num_classes: int, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    """``width`` scales the four stages' channels (1.0: the standard 64-512), for tiny smoke-test
    models; timm keeps the 64-channel stem, and a 1x1 projection then enters the first stage."""
    import timm  # here, not at the top: 1.6 s of imports a command that builds no model never pays

    channels = tuple(max(1, round(base * width)) for base in (64, 128, 256, 512))
    model = timm.create_model(
        f"resnet{depth}",
        pretrained=False,
        num_classes=num_classes,
        in_chans=in_channels,
        channels=channels,
    )
    # 32x32 inputs would shrink to 8x8 before the first block with the
    # ImageNet stem; the CIFAR stem keeps the full resolution.
    model.conv1 = nn.Conv2d(in_channels, model.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model
