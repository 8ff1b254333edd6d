"""EfficientNet-B0 trained from scratch (ImageNet, Table 2).

The paper used the efficientnet-pytorch package; timm's ``efficientnet_b0``
is the alternative (``model.implementation=timm``). Neither loads pretrained
weights.
"""

from __future__ import annotations

from torch import nn

IMPLEMENTATIONS = ("efficientnet_pytorch", "timm")


def efficientnet_b0(num_classes: int, implementation: str = "efficientnet_pytorch", width: float = 1.0) -> nn.Module:
    """``width`` is the channel multiplier (B0's is 1.0), for tiny smoke-test models; timm's B0
    builder fixes its multiplier, so there only 1.0 is available."""
    if implementation == "efficientnet_pytorch":
        from efficientnet_pytorch import EfficientNet

        return EfficientNet.from_name("efficientnet-b0", num_classes=num_classes, width_coefficient=width)
    if implementation == "timm":
        import timm

        if width != 1.0:
            raise ValueError(f"invalid model.width: {width!r} (implementation=timm builds B0 at width 1.0 only)")
        return timm.create_model("efficientnet_b0", pretrained=False, num_classes=num_classes)
    raise ValueError(f"invalid model.implementation: {implementation!r}; choose one of: {', '.join(IMPLEMENTATIONS)}")
