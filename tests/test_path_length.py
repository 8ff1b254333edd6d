"""The cumulative path length beside the distance from the initial point (metrics.path_length)."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from cmrepro.metrics import TrainingMetrics, distance_from, metrics_settings, snapshot
from cmrepro.metrics.distance import PathLength
from cmrepro.optim import SAM, AdamCM

SETTINGS = metrics_settings({"distance": {"enabled": True}, "path_length": {"enabled": True}})


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def _batches(count: int = 6) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(5, 4, generator=g), torch.randint(0, 2, (5,), generator=g)) for _ in range(count)]


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])


def _train_epoch(model, optimizer, batches, trajectory=None) -> None:
    loss_fn = nn.CrossEntropyLoss()
    for x, y in batches:

        def closure(x=x, y=y) -> None:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()

        closure()
        if isinstance(optimizer, SAM):
            optimizer.step(closure)  # the second pass, at the perturbed point
        else:
            optimizer.step()
        if trajectory is not None:
            trajectory.append(_flat(model))


def _tracker(model, optimizer, epochs=4) -> TrainingMetrics:
    return TrainingMetrics(
        SETTINGS, model, lambda e: iter([]), "classification", seed=0, epochs=epochs, optimizer=optimizer
    )


@pytest.mark.parametrize("wrapped", [False, True], ids=["adam_cm", "sam_adam_cm"])
def test_path_length_sums_every_optimizer_step_and_bounds_the_distance(wrapped):
    model = _model()
    if wrapped:
        optimizer = SAM(model.parameters(), AdamCM, rho=0.5, lr=0.05, topC=2, model=model)
    else:
        optimizer = AdamCM(model.parameters(), lr=0.05, topC=2)
    tracker = _tracker(model, optimizer)
    trajectory = [_flat(model)]
    _train_epoch(model, optimizer, _batches(), trajectory)
    row = tracker.compute(1, model, optimizer)
    steps = [float((b - a).norm()) for a, b in zip(trajectory, trajectory[1:])]
    # Every step's move, and nothing else: not SAM's excursion to the perturbed point.
    assert row["path_length"] == pytest.approx(sum(steps), rel=1e-6)
    assert row["path_length"] >= row["distance"] * (1 + 1e-3)  # a curved path is longer than the chord
    assert row["distance"] == pytest.approx(float((trajectory[-1] - trajectory[0]).norm()), rel=1e-6)


def test_path_length_equals_the_distance_for_a_straight_line_move():
    model = _model().double()  # float64, so that rounding of theta + step leaves the line by < 1e-15
    path, initial = PathLength(model), snapshot(model)
    direction = [torch.randn_like(p) for p in model.parameters()]
    with torch.no_grad():
        for size in (0.1, 0.5, 0.02, 1.3):
            for p, d in zip(model.parameters(), direction):
                p.add_(d, alpha=size)
            path.advance()
    assert path.value() == pytest.approx(distance_from(initial, model), rel=1e-12)
    assert path.value() > 1.0


def _run(epochs: int, stop_after: int | None = None) -> list[float]:
    """The path length after each epoch; with ``stop_after``, killed then and resumed from a checkpoint."""
    model = _model()
    optimizer = AdamCM(model.parameters(), lr=0.05, topC=2)
    tracker = _tracker(model, optimizer, epochs)
    values = []
    for epoch in range(1, epochs + 1):
        _train_epoch(model, optimizer, _batches())
        values.append(tracker.compute(epoch, model, optimizer)["path_length"])
        if epoch == stop_after:
            saved = io.BytesIO()
            torch.save(
                {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "metrics": tracker.state_dict()},
                saved,
            )
            saved.seek(0)
            checkpoint = torch.load(saved, weights_only=True)
            # A fresh process: the model from the same seed, the tracker built before the checkpoint loads.
            model = _model()
            optimizer = AdamCM(model.parameters(), lr=0.05, topC=2)
            tracker = _tracker(model, optimizer, epochs)
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            tracker.load_state_dict(checkpoint["metrics"])
    return values


def test_path_length_resumes_exactly_from_a_checkpoint():
    straight = _run(4)
    assert _run(4, stop_after=2) == straight  # bit for bit
    assert straight == sorted(straight) and straight[0] > 0


def test_settings_follow_the_distance_unless_set_apart_and_old_checkpoints_resume_without_it(capsys):
    assert metrics_settings({"distance": {"enabled": True, "every_n_epochs": 3}}).path_length.every_n_epochs == 3
    assert not metrics_settings({"distance": {"enabled": False}}).path_length.enabled
    apart = metrics_settings({"distance": {"enabled": True}, "path_length": {"enabled": False}})
    assert apart.distance.enabled and not apart.path_length.enabled
    with pytest.raises(ValueError, match=r"^invalid metrics.path_length.every_n_epochs: 0 "):
        metrics_settings({"path_length": {"enabled": True, "every_n_epochs": 0}})
    model = _model()
    # Without the optimizer there is nothing to sum over: no column rather than a wrong one.
    assert "path_length" not in _tracker(model, None).compute(1, model, None)
    optimizer = AdamCM(model.parameters())
    tracker = _tracker(model, optimizer)
    tracker.load_state_dict({})  # a checkpoint from before the path length: resume without it
    assert capsys.readouterr().err.strip().splitlines() == [
        "cmrepro.train: the checkpoint predates metrics.path_length; resuming without the path length"
    ]
    assert "path_length" not in tracker.compute(1, model, optimizer) and not optimizer._optimizer_step_post_hooks
