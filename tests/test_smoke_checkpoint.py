"""Smoke scale keeps no checkpoint once a run has ended (a smoke sweep's reached 1.1 GB), yet still
writes one every epoch, so an interrupted smoke run resumes to the metrics of an uninterrupted one."""

from __future__ import annotations

import pytest
from train_helpers import compose_run, metric_rows

import cmrepro.training.epoch as epoch_module
from cmrepro.training import train

# A Table 2 cell as `make reproduce-table2 SCALE=smoke` runs it: 2 epochs of 3 steps on stand-in data.
SMOKE = ["experiment=table2/best/cifar10_adam_cm", "scale=smoke"]


def _crash_at(step: int):
    def crash(global_step: int) -> None:
        if global_step == step:
            raise KeyboardInterrupt

    return crash


def test_smoke_scale_defaults_to_dropping_the_checkpoint_and_an_override_keeps_it(tmp_path):
    assert compose_run(SMOKE, tmp_path)["trainer"]["keep_checkpoint"] is False
    assert compose_run([*SMOKE, "trainer.keep_checkpoint=true"], tmp_path)["trainer"]["keep_checkpoint"] is True
    assert compose_run(SMOKE[:1], tmp_path)["trainer"]["keep_checkpoint"] is True  # full scale keeps it


def test_an_ended_smoke_run_leaves_no_checkpoint_and_an_interrupted_one_resumes(tmp_path, monkeypatch):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train(compose_run(SMOKE, straight), straight)["status"] == "done"
    assert not (straight / "checkpoint.pt").exists() and (straight / "metrics.jsonl").exists()

    cfg = compose_run(SMOKE, resumed)
    monkeypatch.setattr(epoch_module, "_fault_injection", _crash_at(5))  # in epoch 2, after epoch 1's checkpoint
    with pytest.raises(KeyboardInterrupt):
        train(cfg, resumed)
    monkeypatch.undo()
    assert (resumed / "checkpoint.pt").is_file()  # an interrupted run keeps what it resumes from
    assert train(cfg, resumed)["status"] == "done"
    assert metric_rows(resumed) == metric_rows(straight)
    assert not (resumed / "checkpoint.pt").exists()


def test_a_smoke_run_that_kept_its_checkpoint_is_skipped_and_freed_by_the_new_default(tmp_path, capsys):
    # Smoke runs made before the default changed kept theirs; the key is incidental, so a re-run
    # recognises the same finished run rather than refusing it, and frees the disk.
    kept = compose_run([*SMOKE, "trainer.keep_checkpoint=true"], tmp_path)
    assert train(kept, tmp_path)["status"] == "done" and (tmp_path / "checkpoint.pt").is_file()
    again = train(compose_run(SMOKE, tmp_path), tmp_path)
    assert again["status"] == "done" and again.get("skipped") is True
    assert not (tmp_path / "checkpoint.pt").exists()
