"""What ``python -m cmrepro.train`` prints (cmrepro/training/console.py): a start line before the
data and model take their time, one short line per epoch, an end summary, one prefix, no Hydra
log decoration, 100 columns, and the fused step's compile notice once."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from train_helpers import QUICK, compose_run, run_cli

from cmrepro.models import ModelSpec, build_model
from cmrepro.optim import fused
from cmrepro.train import CONF_DIR
from cmrepro.training import console, train
from cmrepro.training.console import (
    COMPILE_NOTICE,
    PREFIX,
    WIDTH,
    compile_notice,
    count,
    duration,
    end_lines,
    epoch_summary,
    resume_line,
    setup_line,
    start_line,
    status_line,
    stopped_lines,
)
from cmrepro.training.distributed import DistEnv
from cmrepro.training.run_setup import announce_setup, announce_start
from cmrepro.training.run_state import RunState

RUN = ["dataset=synthetic_image", "optimizer=adam_cm", *QUICK, "trainer.epochs=2"]  # 3 steps per epoch
DEMO = ["dataset=synthetic_image", "optimizer=adam_cm", "trainer.progress=false"]  # the README's, no bars
HYDRA_DECORATION = re.compile(r"\[\d{4}-\d\d-\d\d [\d:,]+\]|\[INFO\]|\[HYDRA\]")


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A run directory with a short path, as results/runs/... is: lines holding a path fit 100 columns."""
    path = Path(tempfile.mkdtemp(prefix="c", dir="/tmp"))
    yield path / "run"
    shutil.rmtree(path, ignore_errors=True)


def console_lines(stderr: str) -> list[str]:
    """``stderr``'s lines without the prefix, each checked: the prefix, no Hydra decoration, 100
    columns (but for cmrepro/train.py's one-line account of a signal, which names the run directory)."""
    lines = stderr.splitlines()
    for line in lines:
        assert line.startswith(PREFIX), line
        assert len(line) <= WIDTH or ": stopped by SIG" in line, (len(line), line)
        assert not HYDRA_DECORATION.search(line), line
    return [line.removeprefix(PREFIX) for line in lines]


def resnet18_parameters(width: float, image_size: int) -> int:
    """The parameters of the CIFAR ResNet18 at ``width`` on images of ``image_size`` pixels, 10 classes."""
    spec = ModelSpec("classification", 10, None, 3, image_size=image_size)
    model = build_model(OmegaConf.create({"name": "resnet18", "width": width}), spec)
    return sum(parameter.numel() for parameter in model.parameters())


# ---------------------------------------------------------------- a real run, start to end


def test_the_demo_keeps_no_checkpoint_once_it_ends(tmp_path):
    cfg = compose_run(DEMO, tmp_path)
    assert (cfg["model"], cfg["trainer"]["keep_checkpoint"]) == ({"name": "resnet18", "width": 0.25}, False)


def test_the_demo_learns_and_says_where_what_how_long_each_epoch_and_its_summary(short_dir):
    """The README's demo (its checkpoint kept here, a key that changes nothing it computes): the start
    lines, one short line per epoch, the summary; well above chance (10%) at the end."""
    done = run_cli([*DEMO, "trainer.keep_checkpoint=true", f"run_dir={short_dir}"])
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # every line on stderr, in the order it was said
    lines = console_lines(done.stderr)
    assert lines[0] == f"starting {short_dir} on cpu"
    parameters = count(resnet18_parameters(0.25, 32))
    assert lines[1] == f"resnet18 x0.25 ({parameters} parameters); adam_cm lr 0.001; 3 epochs x 8 steps"
    rows = [json.loads(line) for line in (short_dir / "metrics.jsonl").read_text().splitlines()]
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(epoch_lines) == 3
    for line, row in zip(epoch_lines, rows, strict=True):
        loss, accuracy = f"{row['train_loss']:.4f}", f"{row['val_accuracy']:.2f}"
        assert line.startswith(
            f"epoch {row['epoch']}/3  train_loss {loss}  val_accuracy {accuracy}  lr {row['lr']:.3g}  "
        )
        assert line.endswith(duration(row["epoch_time_s"]))
        assert "distance" not in line  # the analysis columns: in train.log and metrics.jsonl
    assert rows[-1]["val_accuracy"] > 50
    result = json.loads((short_dir / "result.json").read_text())
    best = result["best"]
    checkpoint = short_dir / "checkpoint.pt"
    mib = os.path.getsize(checkpoint) / 2**20
    assert lines[-3] == (
        f"done: best val_accuracy {best['val_accuracy']:.2f} at epoch {best['epoch']} of 3; "
        f"trained in {duration(result['wall_time_s'])}"
    )
    assert lines[-2] == f"checkpoint {checkpoint} ({mib:.1f} MiB) kept; the run has ended"
    assert lines[-1] == f"to free it: rm {checkpoint}"
    assert len(lines) == 2 + 3 + 3
    # train.log: the same lines with timestamps, each epoch's whole row.
    log = (short_dir / "train.log").read_text().splitlines()
    assert all(re.match(r"\[\d{4}-\d\d-\d\d [\d:,]+\]\[cmrepro.train\]\[INFO\] - ", line) for line in log)
    assert log[0].endswith(lines[0]) and log[-1].endswith(lines[-1])
    assert sum("epoch 3/3" in line and "distance" in line and "epoch_time_s" in line for line in log) == 1


def test_a_stopped_run_says_how_to_resume_and_the_same_command_says_it_resumes(short_dir):
    args = [*RUN, "trainer.keep_checkpoint=false", f"run_dir={short_dir}"]
    stopped = run_cli(args, env={"CMREPRO_SIGNAL_AT_STEP": "4:TERM"})  # step 1 of epoch 2
    assert stopped.returncode == 143, stopped.stderr
    lines = console_lines(stopped.stderr)
    checkpoint = short_dir / "checkpoint.pt"
    mib = os.path.getsize(checkpoint) / 2**20
    assert lines[-3:] == [
        f"checkpoint {checkpoint} ({mib:.1f} MiB)",
        f"to start over instead: rm -r {short_dir}",
        f"{short_dir}: stopped by SIGTERM at step 1 of epoch 2; re-run the same command to resume",
    ]

    resumed = run_cli(args)
    assert resumed.returncode == 0, resumed.stderr
    lines = console_lines(resumed.stderr)
    assert lines[0] == f"resuming {short_dir} on cpu from its checkpoint"
    assert lines[1].endswith("; 2 epochs x 3 steps")
    assert lines[2] == "resuming at step 1 of epoch 2"
    assert [line.split("  ")[0] for line in lines if line.startswith("epoch ")] == ["epoch 2/2"]
    # trainer.keep_checkpoint=false (the demo's): the ended run's checkpoint is gone, and it says so.
    assert lines[-1] == f"checkpoint removed (trainer.keep_checkpoint=false); metrics in {short_dir}"
    assert lines[-2].startswith("done: best val_accuracy ")
    assert not checkpoint.exists()

    again = run_cli(args)
    assert again.returncode == 0, again.stderr
    assert console_lines(again.stderr) == [f"{short_dir} is already done; nothing to do"]


def test_the_fused_step_says_once_that_it_compiles(short_dir, capfd, monkeypatch):
    """In the training loop, as the train command runs it (``optimizer.fused`` is set in the config
    here: the command line has no key for it), over two epochs."""
    cfg = compose_run([*RUN, "trainer.max_steps_per_epoch=2"], short_dir)
    cfg["optimizer"]["fused"] = True
    monkeypatch.setattr(fused, "_COMPILED", {})  # this process may have compiled the step before: again here
    assert train(cfg, short_dir)["status"] == "done"
    # Ours only: torch's own logger may warn while it compiles (no CUDA runtime on this machine).
    ours = [line for line in capfd.readouterr().err.splitlines() if line.startswith(PREFIX)]
    lines = console_lines("\n".join(ours))
    assert lines.count(COMPILE_NOTICE) == 1
    # Said after the start lines, while the first epoch compiles.
    assert lines.index(COMPILE_NOTICE) == 2 and lines[3].startswith("epoch 1/2")


# ---------------------------------------------------------------- the lines themselves


def test_an_epoch_line_fits_100_columns_and_leaves_out_the_best_first():
    row = {"epoch": 200, "train_loss": 4.56789, "val_perplexity": 160.5469, "best_val_perplexity": 150.01,
           "lr": 1e-5, "epoch_time_s": 1234.5, "distance": 3.0, "path_length": 9.0}  # fmt: skip
    line = epoch_summary(row, 200, "val_perplexity")
    assert len(PREFIX + line) <= WIDTH
    assert line == "epoch 200/200  train_loss 4.5679  val_perplexity 160.55  lr 1e-05  20 min 34 s"
    row.update(epoch=2, epoch_time_s=12.3)
    assert "val_perplexity 160.55 (best 150.01)  lr 1e-05  12.3s" in epoch_summary(row, 200, "val_perplexity")
    row["best_val_perplexity"] = row["val_perplexity"]  # this epoch is the best: said once
    assert "(best" not in epoch_summary(row, 200, "val_perplexity")


def test_a_task_streams_line_names_the_task():
    row = {"epoch": 6, "task": 3, "train_loss": 0.5, "val_accuracy": 81.25, "lr": 0.03, "task_time_s": 2.04}
    assert epoch_summary(row, 6, "val_accuracy", tasks=3) == (
        "task 3/3  epoch 6/6  train_loss 0.5000  val_accuracy 81.25  lr 0.03  2.0s"
    )


def test_the_setup_line_drops_the_learning_rate_before_exceeding_100_columns():
    model, optimizer = {"name": "efficientnet_b0", "width": 0.125}, {"name": "adam_sam_cm", "lr": 0.001}
    fresh = setup_line({"name": "efficientnet_b0", "width": 1}, 4_012_345, optimizer, 90, 5005)
    assert fresh == "efficientnet_b0 (4.01M parameters); adam_sam_cm lr 0.001; 90 epochs x 5005 steps"
    assert "lr" not in setup_line(model, 4_012_345, optimizer, 90, 5005)  # x0.125: 103 columns with it
    assert setup_line({"name": "lamaml_cnn", "width": 1.0}, 999, {"name": "sgd"}, 1, None, tasks=5) == (
        "lamaml_cnn (999 parameters); sgd; 5 tasks x 1 epoch"
    )
    assert resume_line(41) == "resuming after epoch 41"
    assert resume_line(41, at_step=1234) == "resuming at step 1234 of epoch 42"


def test_numbers_a_person_reads():
    assert [count(n) for n in (999, 182_586, 11_173_962)] == ["999", "182.6k", "11.17M"]
    assert [duration(s) for s in (9.44, 125, 3725)] == ["9.4s", "2 min 05 s", "1 h 02 min"]


def test_the_end_summary_for_each_checkpoint_setting(tmp_path):
    result = {"status": "done", "monitor": "val_accuracy", "best": {"val_accuracy": 90.625, "epoch": 4},
              "epochs_completed": 4, "wall_time_s": 48.25}  # fmt: skip
    assert status_line(result) == "done: best val_accuracy 90.62 at epoch 4 of 4; trained in 48.2s"
    diverged = {"status": "diverged", "monitor": "val_accuracy", "best": None, "epochs_completed": 0}
    assert status_line(diverged) == "diverged: no epoch finished (0 completed)"
    stream = {
        "status": "done",
        "monitor": "learning_accuracy",
        "best": {"learning_accuracy": 77.0},
        "epochs_completed": 6,
    }
    assert status_line(stream) == "done: learning_accuracy 77.00 after 6 epochs"

    (tmp_path / "checkpoint.pt").write_bytes(b"\0" * 3 * 2**20)
    kept = end_lines(result, tmp_path, checkpoint=True, keep_checkpoint=True)
    assert kept[1:] == [f"checkpoint {tmp_path}/checkpoint.pt (3.0 MiB) kept; the run has ended",
                        f"to free it: rm {tmp_path}/checkpoint.pt"]  # fmt: skip
    assert end_lines(result, tmp_path, checkpoint=True, keep_checkpoint=False)[1:] == [
        f"checkpoint removed (trainer.keep_checkpoint=false); metrics in {tmp_path}"
    ]
    assert end_lines(result, tmp_path, checkpoint=False, keep_checkpoint=True)[1:] == [
        f"no checkpoint (trainer.checkpoint=false); metrics: {tmp_path}/metrics.jsonl"
    ]
    assert stopped_lines(tmp_path) == [
        f"checkpoint {tmp_path}/checkpoint.pt (3.0 MiB)",
        f"to start over instead: rm -r {tmp_path}",
    ]
    (tmp_path / "checkpoint.pt").unlink()
    assert stopped_lines(tmp_path) == [
        f"no checkpoint yet: the same command starts over; rm -r {tmp_path} to drop the run"
    ]


def test_a_path_under_the_working_directory_is_shown_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert start_line(tmp_path / "results" / "runs" / "x", "cpu", resuming=False) == "starting results/runs/x on cpu"
    assert start_line(Path("/elsewhere/run"), "cuda:0", resuming=True, processes=8) == (
        "resuming /elsewhere/run on cuda:0 (8 processes) from its checkpoint"
    )


def test_only_rank_0_says_the_start_lines(tmp_path, capsys):
    cfg = OmegaConf.create({"model": {"name": "m"}, "optimizer": {"name": "sgd", "lr": 0.1}, "trainer": {"epochs": 1}})
    spec = ModelSpec("classification", 10, None, 3, image_size=16)
    model = build_model(OmegaConf.create({"name": "resnet18", "width": 0.125}), spec)
    for rank in (1, 0):
        env = DistEnv(rank=rank, world_size=2, local_rank=rank)
        announce_start(tmp_path, "cpu", env)
        announce_setup(cfg, model, RunState(), 4, env)
    assert capsys.readouterr().err.splitlines() == [
        f"{PREFIX}starting {tmp_path} on cpu (2 processes)",
        f"{PREFIX}m ({count(resnet18_parameters(0.125, 16))} parameters); sgd lr 0.1; 1 epoch x 4 steps",
    ]


def test_the_compile_notice_is_said_once_and_only_while_listening(capsys):
    listeners = list(fused._COMPILE_LISTENERS)
    with compile_notice():
        for listener in fused._COMPILE_LISTENERS:
            listener("cpu float32 params, float32 buffer, host row")
            listener("cpu bfloat16 params, bfloat16 buffer, host row")
    with compile_notice(enabled=False):  # another rank of a distributed run
        assert fused._COMPILE_LISTENERS == listeners
    assert fused._COMPILE_LISTENERS == listeners  # removed on leaving
    assert capsys.readouterr().err == PREFIX + COMPILE_NOTICE + "\n"


def test_hydra_sends_the_record_to_train_log_alone_and_nothing_else_with_its_decoration():
    """The terminal gets say()'s lines once (not again through logging), other loggers' warnings with
    the one prefix; train.log gets everything with timestamps."""
    logging_conf = OmegaConf.load(CONF_DIR / "hydra" / "job_logging" / "cmrepro.yaml")
    assert dict(logging_conf.loggers[console.RECORD.name]) == {"handlers": ["file"], "propagate": False}
    assert logging_conf.handlers.console.stream == "ext://sys.stderr"
    assert logging_conf.formatters[logging_conf.handlers.console.formatter].format == PREFIX + "%(message)s"
    assert "asctime" in logging_conf.formatters[logging_conf.handlers.file.formatter].format
    assert set(logging_conf.root.handlers) == {"console", "file"}
    hydra_conf = OmegaConf.load(CONF_DIR / "hydra" / "hydra_logging" / "cmrepro.yaml")
    assert hydra_conf.formatters[hydra_conf.handlers.console.formatter].format == PREFIX + "%(message)s"


def test_a_sweeps_job_says_its_end_alone_naming_its_run_and_logs_every_line(tmp_path, capsys, caplog):
    """In a sweep the start, epoch and checkpoint lines go to train.log only; the terminal gets the
    status line after the run directory it belongs to. A single run prints them all."""
    result = {"status": "done", "best": {"val_accuracy": 50.0, "epoch": 2}, "monitor": "val_accuracy"}
    result |= {"epochs_completed": 2, "wall_time_s": 3.0}
    trainer = {"checkpoint": True, "keep_checkpoint": False}
    caplog.set_level("INFO", logger=console.RECORD.name)
    try:
        console.speak_as_sweep_job(True)
        console.say(start_line(tmp_path, "cpu", resuming=False), detail=True)
        console.say_ended(result, tmp_path, trainer)
        console.say("non-finite training loss in epoch 2; run marked diverged")
    finally:
        console.speak_as_sweep_job(False)
    status = "done: best val_accuracy 50.00 at epoch 2 of 2; trained in 3.0s"
    assert capsys.readouterr().err.splitlines() == [
        f"{PREFIX}{tmp_path}: {status}",
        f"{PREFIX}non-finite training loss in epoch 2; run marked diverged",
    ]
    assert [record.getMessage() for record in caplog.records] == [
        f"starting {tmp_path} on cpu",
        status,
        f"checkpoint removed (trainer.keep_checkpoint=false); metrics in {tmp_path}",
        "non-finite training loss in epoch 2; run marked diverged",
    ]
    console.say_ended(result, tmp_path, trainer)  # a single run: every line, no run directory before the status
    assert capsys.readouterr().err.splitlines() == [
        PREFIX + status,
        f"{PREFIX}checkpoint removed (trainer.keep_checkpoint=false); metrics in {tmp_path}",
    ]


def test_no_message_in_the_package_uses_the_bare_cmrepro_prefix():
    """One prefix per command (cmrepro.train:, cmrepro.data:, ...): no string the package prints
    starts with the bare "cmrepro: " the training run's notes once used."""
    package = Path(console.__file__).parents[1]
    bare = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            first = node.values[0] if isinstance(node, ast.JoinedStr) and node.values else node
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value.startswith("cmrepro: "):
                bare.append(f"{path.relative_to(package)}:{node.lineno}")
    assert not bare
