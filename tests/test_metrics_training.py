"""The analysis metrics inside training runs: cadence, absent keys, resuming, config errors."""

from __future__ import annotations

import json

import pytest
from train_helpers import QUICK, compose_run

import cmrepro.training.epoch as loop
from cmrepro.training import ConfigError, check_config, train

# A tiny network and cheap metric settings: the loop is under test here, not the estimates.
TINY = [
    "dataset=synthetic_image",
    *QUICK,
    "dataset.image_size=8",
    "model.width=0.125",
    "metrics.sharpness.batches=1",
    "metrics.sharpness.max_iterations=2",
    "metrics.m_sharpness.batches=1",
]


def rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_times(table: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.endswith("_time_s")} for row in table]


def test_each_metric_is_logged_on_its_own_cadence_and_buffer_metrics_are_absent_for_adam(tmp_path):
    cfg = compose_run(
        [
            *TINY,
            "optimizer=adam",
            "metrics.every_n_epochs=2",
            "metrics.sharpness.enabled=true",
            "metrics.sharpness.every_n_epochs=5",
            "metrics.m_sharpness.enabled=true",
            "metrics.m_sharpness.every_n_epochs=1",
        ],
        tmp_path,
    )
    check_config(cfg)
    assert train(cfg, tmp_path)["status"] == "done"
    logged = {row["epoch"]: row for row in rows(tmp_path)}
    assert [e for e, row in logged.items() if "m_sharpness" in row] == [1, 2, 3]
    assert [e for e, row in logged.items() if "distance" in row] == [2, 3]  # every 2nd, and the last
    assert [e for e, row in logged.items() if "sharpness" in row] == [3]  # only the last
    assert logged[3]["distance"] > logged[2]["distance"] > 0
    # Adam has no buffer: absent, not zero (the adam_cm run of the next test has them).
    assert not any(key.startswith("buffer") for row in logged.values() for key in row)


def test_a_crashed_run_resumes_to_the_metrics_of_an_uninterrupted_one(tmp_path, monkeypatch):
    """With every metric on: the initial parameters and the fixed batches are the same after the
    resume, and computing the metrics does not change what the training computes."""
    overrides = [
        *TINY,
        "optimizer=adam_cm",
        "metrics=analysis",
        "metrics.sharpness.every_n_epochs=1",
        "trainer.epochs=2",
        "trainer.lr_milestones=[1]",
    ]
    straight, crashed, plain = tmp_path / "straight", tmp_path / "crashed", tmp_path / "plain"
    train(compose_run(overrides, straight), straight)

    def crash(global_step: int) -> None:
        if global_step == 5:  # in the middle of the second and last epoch (3 steps per epoch)
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_fault_injection", crash)
    cfg = compose_run(overrides, crashed)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, crashed)
    monkeypatch.undo()
    assert len(rows(crashed)) == 1
    assert train(cfg, crashed)["status"] == "done"
    assert without_times(rows(crashed)) == without_times(rows(straight))
    assert all("sharpness" in row and "buffer_variance" in row for row in rows(crashed))

    # Training itself is the same with the metrics off.
    train(
        compose_run([*overrides, "metrics.sharpness.enabled=false", "metrics.m_sharpness.enabled=false"], plain), plain
    )
    training_columns = ("train_loss", "val_loss", "val_accuracy", "distance", "buffer_variance", "buffer_cosine")
    assert [{k: r[k] for k in training_columns} for r in rows(plain)] == [
        {k: r[k] for k in training_columns} for r in rows(straight)
    ]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["metrics.every_n_epochs=0"], "invalid metrics.every_n_epochs: 0"),
        (["metrics.sharpness.every_n_epochs=-1"], "invalid metrics.sharpness.every_n_epochs: -1"),
        (["metrics.sharpness.tol=0"], "invalid metrics.sharpness.tol: 0"),
        (["metrics.sharpness.max_iterations=2.5"], "invalid metrics.sharpness.max_iterations: 2.5"),
        (["metrics.distance.enabled=sometimes"], "invalid metrics.distance.enabled: 'sometimes'"),
        (["metrics.m_sharpness.radius=-0.05"], "invalid metrics.m_sharpness.radius: -0.05"),
        (["metrics.m_sharpness.enabled=true", "metrics.m_sharpness.m=65"], "invalid metrics.m_sharpness.m: 65"),
    ],
)
def test_bad_metric_values_name_the_key(overrides, message, tmp_path):
    with pytest.raises(ConfigError, match=message) as error:
        check_config(compose_run(["dataset=cifar10", *overrides], tmp_path))
    assert "\n" not in str(error.value)
