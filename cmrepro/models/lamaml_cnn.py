"""The 4-layer CNN of La-MAML (Gupta et al., 2020) for TinyImageNet, which the paper trains on
its TinyImageNet stream (Section 5.4).

Four 3x3 convolutions of stride 2 and padding 1 with 160 channels, each followed by a ReLU (no
normalisation, no pooling); the 64x64 input ends as 160 x 4 x 4 features, then two hidden
fully connected layers of 640 units with ReLUs and the output layer. Weights are drawn from
Kaiming's normal distribution and biases start at zero, as in La-MAML's network builder.
Sources: La-MAML's ``model/meta/modelfactory.py`` (architecture ``pc_cnn``, dataset
``tinyimagenet``) and ``model/meta/learner.py`` (initialisation).
"""

from __future__ import annotations

from torch import nn


def conv_output_size(size: int, layers: int) -> int:
    """The side of the feature map after ``layers`` 3x3 convolutions of stride 2, padding 1."""
    for _ in range(layers):
        size = (size + 1) // 2
    return size


def lamaml_cnn(
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 64,
    channels: int = 160,
    hidden: int = 640,
    conv_layers: int = 4,
) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_channels
    for _ in range(conv_layers):
        layers += [nn.Conv2d(width, channels, kernel_size=3, stride=2, padding=1), nn.ReLU()]
        width = channels
    features = channels * conv_output_size(image_size, conv_layers) ** 2
    layers += [
        nn.Flatten(),
        nn.Linear(features, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    ]
    model = nn.Sequential(*layers)
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(module.weight)
            nn.init.zeros_(module.bias)
    return model
