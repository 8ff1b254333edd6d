"""The paper's models, built by name."""

from __future__ import annotations

import pytest
import torch

from cmrepro.models import ModelSpec, build_model


def _count(model) -> tuple[int, int]:
    params = list(model.parameters())
    return sum(p.numel() for p in params), len(params)


def test_cifar_resnet34_has_the_cifar_stem_and_the_papers_size():
    model = build_model({"name": "resnet34"}, ModelSpec("classification", num_classes=100))
    assert _count(model) == (21_328_292, 110)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_cifar_resnet18_runs_on_cifar_shapes():
    model = build_model({"name": "resnet18"}, ModelSpec("classification", num_classes=10))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("implementation, size", [("efficientnet_pytorch", 5_288_548), ("timm", 5_288_548)])
def test_efficientnet_b0_from_scratch(implementation, size):
    model = build_model(
        {"name": "efficientnet_b0", "implementation": implementation}, ModelSpec("classification", num_classes=1000)
    )
    assert _count(model)[0] == size  # the paper's 5.3M (Table 7)
    small = build_model(
        {"name": "efficientnet_b0", "implementation": implementation}, ModelSpec("classification", num_classes=7)
    )
    small.eval()
    assert small(torch.randn(1, 3, 64, 64)).shape == (1, 7)


def test_lstm_language_model_shapes_and_size():
    model = build_model({"name": "lstm"}, ModelSpec("language_model", vocab_size=10_000))
    assert _count(model)[0] == 10_000 * 64 + 4 * 128 * (64 + 128 + 2) + 128 * 10_000 + 10_000
    hidden = model.init_hidden(3)
    logits, (h, c) = model(torch.randint(0, 10_000, (5, 3)), hidden)
    assert logits.shape == (5, 3, 10_000) and h.shape == c.shape == (1, 3, 128)


def test_model_for_the_wrong_task_or_unknown_name_is_refused():
    with pytest.raises(ValueError, match="model 'lstm' is for language model, but the dataset is classification"):
        build_model({"name": "lstm"}, ModelSpec("classification", num_classes=10))
    with pytest.raises(ValueError, match="unknown model 'vgg'; choose one of: lstm, resnet18"):
        build_model({"name": "vgg"}, ModelSpec("classification", num_classes=10))
    with pytest.raises(ValueError, match="invalid model.implementation: 'keras'"):
        build_model({"name": "efficientnet_b0", "implementation": "keras"}, ModelSpec("classification", num_classes=3))
