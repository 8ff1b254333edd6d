"""trainer.checkpoint_every (cmrepro/training/checkpoint_policy.py): when a run writes its checkpoint."""

from __future__ import annotations

import pytest
from train_helpers import compose_run, metric_rows

from cmrepro.training import Interrupted, supervised, train
from cmrepro.training.checkpoint_policy import AUTO_RATIO, CheckpointEvery, CheckpointSchedule

# Three epochs of two steps of a 1/8-width ResNet18 on 16-pixel images.
TINY = ["dataset=synthetic_image", "model.width=0.125", "dataset.num_train=32", "dataset.num_val=16",
        "dataset.image_size=16", "dataset.batch_size=16", "trainer.epochs=3", "trainer.lr_milestones=[]",
        "trainer.progress=false", "dataset.num_workers=0", "metrics.sharpness.enabled=false"]  # fmt: skip


class FakeRun:
    """A clock moved by hand, and a save that takes ``write_s`` of it."""

    def __init__(self, write_s: float) -> None:
        self.now, self.write_s, self.saved_at = 0.0, write_s, []

    def clock(self) -> float:
        return self.now

    def save(self) -> None:
        self.saved_at.append(self.now)
        self.now += self.write_s

    def schedule(self, setting, agree=bool) -> CheckpointSchedule:
        schedule = CheckpointSchedule(CheckpointEvery.parse(setting), self.save, agree=agree, clock=self.clock)
        schedule.start()
        return schedule

    def epochs(self, schedule: CheckpointSchedule, count: int, epoch_s: float) -> list[int]:
        """Train ``count`` epochs of ``epoch_s`` each; the epochs (1-based) after which it saved."""
        saved = []
        for epoch in range(1, count + 1):
            self.now += epoch_s
            if schedule.epoch_ended(last=epoch == count):
                saved.append(epoch)
        return saved


def test_auto_keeps_checkpointing_under_five_percent_of_the_run() -> None:
    """A 2 s compiled epoch and a 3 s checkpoint (731 MiB): one every 29 epochs, plus the last."""
    run = FakeRun(write_s=3.0)
    saved = run.epochs(run.schedule("auto"), count=100, epoch_s=2.0)
    assert saved[0] == 1  # the first one measures what a checkpoint costs
    assert all(b - a == 29 for a, b in zip(saved, saved[1:-1]))  # 29 x 2 s >= 19 x 3 s > 28 x 2 s
    assert saved[-1] == 100  # the last epoch, always
    between = 3.0 / (29 * 2.0 + 3.0)  # each checkpoint's share of its interval
    assert between <= 1 / (1 + AUTO_RATIO) == 0.05


def test_auto_checkpoints_every_epoch_when_it_is_cheap() -> None:
    run = FakeRun(write_s=0.01)
    assert run.epochs(run.schedule("auto"), count=5, epoch_s=1.0) == [1, 2, 3, 4, 5]


def test_every_n_epochs_and_every_n_minutes() -> None:
    run = FakeRun(write_s=1.0)
    assert run.epochs(run.schedule(3), count=8, epoch_s=10.0) == [3, 6, 8]
    run = FakeRun(write_s=1.0)
    assert run.epochs(run.schedule("2min"), count=7, epoch_s=50.0) == [3, 6, 7]  # 150 s, then 150 s after it


def test_a_signal_after_an_unsaved_epoch_writes_it() -> None:
    run = FakeRun(write_s=1.0)
    schedule = run.schedule(5)
    assert not schedule.epoch_ended(last=False) and not schedule.epoch_ended(last=False)
    assert schedule.unsaved and run.saved_at == []
    schedule.write_if_unsaved()
    schedule.write_if_unsaved()  # nothing new since: not written twice
    assert len(run.saved_at) == 1 and not schedule.unsaved


def test_every_process_follows_the_agreed_decision() -> None:
    """Distributed: one rank's clock says due, the others write with it (agree = any)."""
    run = FakeRun(write_s=100.0)
    others_found_it_due = []

    def agree(due: bool) -> bool:
        others_found_it_due.append(due)
        return True  # another process found it due

    saved = run.epochs(run.schedule("auto", agree=agree), count=3, epoch_s=1.0)
    assert saved == [1, 2, 3] and others_found_it_due == [True, False, True]


@pytest.mark.parametrize("setting", [0, -1, True, "5", "auto ", "1h", "0min", 2.5, None])
def test_a_bad_setting_is_one_line_naming_the_choices(setting) -> None:
    with pytest.raises(ValueError, match="^invalid trainer.checkpoint_every: .*30min\\)$"):
        CheckpointEvery.parse(setting)


def test_a_run_checkpoints_on_its_schedule_and_resumes_to_the_same_rows(tmp_path, monkeypatch) -> None:
    """checkpoint_every=2 over 3 epochs: written after epochs 2 and 3; a SIGTERM inside epoch 2 (no
    checkpoint of epoch 1 on disk) still checkpoints at once, and the re-run ends as the straight run."""
    saved_epochs: list[int] = []
    real_save = supervised.save_checkpoint

    def recording_save(run_dir, model, optimizer, config, state, *args, **kwargs):
        saved_epochs.append((state.epoch, state.step))
        return real_save(run_dir, model, optimizer, config, state, *args, **kwargs)

    monkeypatch.setattr(supervised, "save_checkpoint", recording_save)
    every_two = [*TINY, "trainer.checkpoint_every=2"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert train(compose_run(every_two, straight), straight)["status"] == "done"
    assert saved_epochs == [(2, 0), (3, 0)]

    saved_epochs.clear()
    monkeypatch.setenv("CMREPRO_SIGNAL_AT_STEP", "3:TERM")  # step 1 of epoch 2 (2 steps an epoch)
    with pytest.raises(Interrupted):
        train(compose_run(every_two, stopped), stopped)
    assert saved_epochs == [(1, 1)]  # inside epoch 2, though epoch 1 itself was not due
    monkeypatch.delenv("CMREPRO_SIGNAL_AT_STEP")
    assert train(compose_run(every_two, stopped), stopped)["status"] == "done"
    assert metric_rows(stopped) == metric_rows(straight)
