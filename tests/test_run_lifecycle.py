"""A run's life across the training modules: checkpoints of the old layout resume, a failed sweep
job keeps its full result (a refused one leaves nothing: test_run_reliability.py), both loops
share one learning-rate rule, and the seed streams hold."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from test_import_graph import import_graph
from train_helpers import QUICK, QUICK_STREAM, compose_run, metric_rows, run_cli

import cmrepro.training.epoch as epoch_module
from cmrepro.seeds import SeedStream
from cmrepro.training import train
from cmrepro.training.schedule import StepSchedule

# The keys of a checkpoint as the loops wrote them before RunState existed (issue 13).
OLD_SUPERVISED_KEYS = {"model", "optimizer", "scheduler", "rng", "config", "metrics", "epoch", "best", "wall_time"}
OLD_STREAM_KEYS = {"model", "optimizer", "scheduler", "rng", "config", "epoch", "wall_time", "task_losses", "task_time"}

SUPERVISED = [
    "dataset=synthetic_image",
    "optimizer=adam_cm",
    *QUICK,
    "trainer.epochs=3",
    "trainer.lr_milestones=[1]",  # the resumed epochs run at the decayed rate
    "trainer.max_steps_per_epoch=2",
    "metrics.distance.enabled=true",
]
# One batch per epoch; few overrides, as the run directory's name lists them.
SWEEP = ["dataset=synthetic_image", "model.width=0.125", "dataset.num_train=32", "dataset.num_val=16",
         "dataset.image_size=16", "trainer.lr_milestones=[]", "trainer.progress=false"]  # fmt: skip
STREAM = [*QUICK_STREAM, "optimizer=adam_cm", "trainer.max_steps_per_epoch=2", "trainer.lr_milestones=[1]"]


def _crash_at(step: int):
    def crash(global_step: int) -> None:
        if global_step == step:
            raise KeyboardInterrupt

    return crash


def _rewrite_in_old_layout(path, keys: set[str], milestones: list[int]) -> None:
    """The checkpoint at ``path`` as the loops wrote it before: the same state under the old keys,
    the random states as Python's and numpy's own tuples (numpy's an ndarray, which a weights_only
    load allows only by name), and the supervised loop's MultiStepLR state (and the
    ``initial_lr`` it put in every group)."""
    new = torch.load(path, weights_only=True)  # no allow-list: the current layout needs none
    old = {key: new[key] for key in keys if key != "scheduler"}
    old["scheduler"] = None
    python, numpy = new["rng"]["python"], new["rng"]["numpy"]
    old["rng"] = {
        "python": (python["version"], tuple(python["state"].tolist()), python["gauss"]),
        "numpy": (
            numpy["kind"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["pos"],
            numpy["has_gauss"],
            numpy["gauss"],
        ),
        "torch": new["rng"]["torch"],
    }
    if "metrics" in keys:
        groups = old["optimizer"]["param_groups"]
        for group in groups:
            group["initial_lr"] = new["config"]["optimizer"]["lr"]
        probe = torch.optim.SGD([torch.zeros(1)], lr=groups[0]["initial_lr"])
        scheduler = torch.optim.lr_scheduler.MultiStepLR(probe, milestones=milestones, gamma=0.1)
        for _ in range(new["epoch"]):
            probe.step()
            scheduler.step()
        old["scheduler"] = scheduler.state_dict()
    assert set(old) == keys
    torch.save(old, path)


@pytest.mark.parametrize(
    "overrides, keys, crash_step",
    [
        (SUPERVISED, OLD_SUPERVISED_KEYS, 5),  # 2 steps per epoch: in epoch 3, after epoch 2's checkpoint
        (STREAM, OLD_STREAM_KEYS, 7),  # in task 2's second epoch: resumes inside a task
    ],
    ids=["supervised", "stream"],
)
def test_a_checkpoint_in_the_old_layout_resumes_to_the_uninterrupted_metrics(
    overrides, keys, crash_step, tmp_path, monkeypatch
):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(compose_run(overrides, straight), straight)
    cfg = compose_run(overrides, resumed)
    monkeypatch.setattr(epoch_module, "_fault_injection", _crash_at(crash_step))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, resumed)
    monkeypatch.undo()
    _rewrite_in_old_layout(resumed / "checkpoint.pt", keys, milestones=[1])
    assert train(cfg, resumed)["status"] == "done"
    assert metric_rows(resumed) == metric_rows(straight)
    assert {"epoch", "wall_time"} <= set(torch.load(resumed / "checkpoint.pt", weights_only=True))


def test_a_failing_job_of_a_sweep_keeps_its_seed_commit_and_epochs_in_result_json(tmp_path):
    args = [*SWEEP, "trainer.epochs=2", f"paths.output_dir={tmp_path}"]
    # A single run killed in its second epoch, then its checkpoint damaged: the sweep job that
    # resumes it (the same directory) fails with a CheckpointError after one finished epoch.
    killed = run_cli([*args, "optimizer.lr=0.1"], env={"CMREPRO_KILL_AT_STEP": "2"})
    assert killed.returncode == -9, killed.stderr
    (checkpoint,) = tmp_path.rglob("checkpoint.pt")
    checkpoint.write_bytes(b"damaged")
    sweep = run_cli(["-m", *args, "optimizer.lr=0.1,0.05"])
    assert sweep.returncode == 1, sweep.stderr  # a sweep with a failed job fails, after running the others
    assert "sweep: 2 jobs recorded: 1 done, 1 failed" in sweep.stderr or "1 failed, 1 done" in sweep.stderr
    results = {path.parent: json.loads(path.read_text()) for path in tmp_path.rglob("result.json")}
    failed = results[checkpoint.parent]
    assert failed["status"] == "failed" and failed["error"].startswith("CheckpointError: checkpoint ")
    assert failed["seed"] == 0 and "git_commit" in failed and failed["cmrepro_version"]
    assert failed["epochs_completed"] == 1 and failed["final"]["epoch"] == 1
    assert failed["config"]["optimizer"]["lr"] == 0.1
    assert sorted(result["status"] for result in results.values()) == ["done", "failed"]


@pytest.mark.parametrize("milestones", [[], [3], [2, 2, 5, 7], [7, 2]])
def test_the_step_schedule_gives_multisteplr_rates_bit_for_bit(milestones):
    """Both loops set their rates with StepSchedule; the supervised loop used torch's MultiStepLR."""
    groups = [{"params": [torch.zeros(1)], "lr": 0.1}, {"params": [torch.zeros(1)], "lr": 0.037}]
    reference = torch.optim.SGD(groups, lr=0.1)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(reference, milestones=milestones, gamma=0.3)
    ours = torch.optim.SGD([{"params": [torch.zeros(1)], "lr": 0.1}, {"params": [torch.zeros(1)], "lr": 0.037}])
    schedule = StepSchedule(ours, milestones, 0.3)
    for epoch in range(10):
        assert schedule.set_epoch(epoch) == reference.param_groups[0]["lr"]
        assert [g["lr"] for g in ours.param_groups] == [g["lr"] for g in reference.param_groups], epoch
        reference.step()
        scheduler.step()
    assert Counter(milestones) == Counter(m for m, count in schedule.counts for _ in range(count))


def test_the_seed_streams_keep_the_values_results_were_made_with():
    assert {stream.name: int(stream) for stream in SeedStream} == {
        "SHUFFLE": 0,
        "WORKERS": 1,
        "TASK_SPLIT": 2,
        "NOTMNIST_TEST": 3,
        "SHARPNESS": 7,
        "AUGMENT": 8,
        "RANK": 9,
    }


def test_the_registry_and_the_dispatch_sit_on_top_of_their_packages():
    """No data module imports the registry, and neither loop imports the other or the dispatch.

    The one reader of the registry inside the package is cmrepro.data.presence (the pre-launch data
    check asks it which datasets fetch their own files), and no data module imports that either."""
    graph = import_graph()
    on_top = {"cmrepro.data.registry", "cmrepro.data.presence"}
    data = [m for m in graph if m.startswith("cmrepro.data.") and m not in on_top]
    assert data and not [m for m in data if on_top & set(graph[m]) or "cmrepro.data" in graph[m]]
    assert "cmrepro.data.registry" in graph["cmrepro.data.presence"]
    assert "cmrepro.training.streams" not in graph["cmrepro.training.supervised"]
    assert "cmrepro.training.supervised" not in graph["cmrepro.training.streams"]
    assert {m for m, targets in graph.items() if "cmrepro.training.dispatch" in targets} == {"cmrepro.training"}
