"""Config values a cluster user (or a neighbour's file under conf/) can get wrong: each is refused
in one line before anything runs, and nothing is written where it should not be.

Values that name the run directory stay one component of it; a malformed YAML file under conf/
stops only the commands that use it; an unset environment variable, a seed numpy cannot take and a
critical-momenta buffer larger than the device are named with the fix.
"""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from train_helpers import QUICK, compose_run

from cmrepro import reproduce
from cmrepro import train as train_entry
from cmrepro.command_checks import CommandLineError, check_command_line
from cmrepro.optim import optimizer_from_config
from cmrepro.train import CONF_DIR
from cmrepro.training import ConfigError, train
from cmrepro.training.checks import MAX_SEED, check_buffer_memory, free_memory, resolved_config


def _refusal(argv: list[str], conf_dir=CONF_DIR) -> str:
    with pytest.raises((CommandLineError, ConfigError)) as refused:
        check_command_line(argv, conf_dir)
    message = str(refused.value)
    assert "\n" not in message
    return message


@pytest.fixture
def conf_copy(tmp_path):
    """A copy of conf/ to plant files in (the repository's own is shared by every test)."""
    return shutil.copytree(CONF_DIR, tmp_path / "conf")


# ---------------------------------------------------------------- values that name the run directory


@pytest.mark.parametrize(
    "argv, key, value",
    [
        (["benchmark.table=../../../../../x"], "benchmark.table", "../../../../../x"),
        (["+benchmark.note=a/b"], "benchmark.note", "a/b"),
        (["benchmark.table=.."], "benchmark.table", ".."),
        (["-m", "seed=0,1", "benchmark.table=table2,../x"], "benchmark.table", "../x"),  # not the first job's
        (["experiment=table2/../table2/best/cifar100_adam"], "experiment", "table2/../table2/best/cifar100_adam"),
    ],
)
def test_a_value_that_would_leave_its_run_directory_is_refused(argv, key, value):
    message = _refusal(argv)
    assert message.startswith(f"invalid {key}: {value!r} (must be ")
    assert "part of the run directory's name under paths.output_dir" in message


def test_an_experiment_keeps_its_folders_in_the_run_directory_name():
    assert check_command_line(["experiment=table2/best/cifar100_adam", "scale=smoke"], CONF_DIR) is not None


@pytest.mark.parametrize("switch", ["fused", "foreach"])
def test_torch_optims_implementation_switch_is_accepted_and_reaches_the_optimizer(switch):
    argv = ["dataset=synthetic_image", "optimizer=adam_cm", f"+optimizer.{switch}=true"]
    cfg = check_command_line(argv, CONF_DIR)
    optimizer = optimizer_from_config(cfg.optimizer, [torch.nn.Parameter(torch.zeros(3))])
    assert optimizer.defaults[switch] is True
    with pytest.raises(CommandLineError, match="unknown config key 'optimizer.fusd'"):
        check_command_line(["dataset=synthetic_image", "+optimizer.fusd=true"], CONF_DIR)


def test_the_path_probe_exits_2_in_one_line_writing_nothing(tmp_path, monkeypatch, capsys):
    output = tmp_path / "project" / "runs"
    argv = ["dataset=synthetic_image", f"paths.output_dir={output}", "benchmark.table=../../../../../x"]
    monkeypatch.setattr(sys, "argv", ["cmrepro.train", *argv])
    with pytest.raises(SystemExit) as ended:
        train_entry.main()
    assert ended.value.code == 2
    assert capsys.readouterr().err.startswith("cmrepro.train: invalid benchmark.table: '../../../../../x'")
    assert list(tmp_path.rglob("*")) == []


# ---------------------------------------------------------------- a malformed file under conf/


def test_a_malformed_yaml_file_stops_only_the_commands_that_use_it(conf_copy):
    (conf_copy / "experiment" / "broken.yaml").write_text("optimizer:\n  lr: [0.1\n")
    (conf_copy / "optimizer" / "typo.yaml").write_text("name: adam\n\tlr: 1\n")
    assert check_command_line(["dataset=synthetic_image", "optimizer=adam"], conf_copy) is not None
    message = _refusal(["dataset=synthetic_image", "experiment=broken"], conf_copy)
    assert message.startswith(f"{conf_copy / 'experiment' / 'broken.yaml'}, line 3, column 1: not valid YAML (")
    assert message.endswith("; fix the file")
    assert _refusal(["optimizer=typo"], conf_copy).startswith(f"{conf_copy / 'optimizer' / 'typo.yaml'}, line 2")


def test_every_experiment_file_a_sweep_reads_is_checked_before_it_starts(conf_copy):
    (conf_copy / "experiment" / "broken.yaml").write_text("optimizer:\n  lr: [0.1\n")
    (conf_copy / "experiment" / "from_env.yaml").write_text(
        "# @package _global_\nbenchmark:\n  table: ${oc.env:CMREPRO_TEST_NEVER_SET}\n"
    )
    good = "table2/best/cifar100_adam"
    sweep = ["-m", "seed=0,1", "scale=smoke"]
    assert _refusal([*sweep, f"experiment={good},broken"], conf_copy).startswith(
        f"{conf_copy / 'experiment' / 'broken.yaml'}, line 3"
    )
    assert _refusal([*sweep, f"experiment={good},from_env"], conf_copy).startswith("cannot resolve benchmark.table: ")
    assert check_command_line([*sweep, f"experiment={good},table2/best/cifar100_adam_cm"], conf_copy) is not None


def test_a_malformed_experiment_file_stops_only_the_tables_that_read_it(conf_copy, monkeypatch, capsys):
    experiments = conf_copy / "experiment"
    (experiments / "table2" / "best" / "cifar100_broken.yaml").write_text("hydra:\n  sweeper: {params: [\n")
    monkeypatch.setattr(reproduce, "EXPERIMENTS", experiments)
    assert reproduce.main(["table2", "--dry-run"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"cmrepro.reproduce: {experiments / 'table2' / 'best' / 'cifar100_broken.yaml'}, line 3, column 1: "
        "not valid YAML (while parsing a flow node: expected the node content, but found '<stream end>'); fix the file"
    ]
    assert reproduce.main(["table3", "--dry-run"]) == 0


# ---------------------------------------------------------------- values that cannot run


def test_an_unset_environment_variable_in_an_experiment_file_is_named(conf_copy):
    (conf_copy / "experiment" / "from_env.yaml").write_text(
        "# @package _global_\nbenchmark:\n  table: ${oc.env:CMREPRO_TEST_NEVER_SET}\n"
    )
    message = _refusal(["dataset=synthetic_image", "experiment=from_env"], conf_copy)
    assert message == (
        "cannot resolve benchmark.table: '${oc.env:CMREPRO_TEST_NEVER_SET}' (Environment variable "
        "'CMREPRO_TEST_NEVER_SET' not found); set the variable it reads, or give benchmark.table a value on "
        "the command line"
    )


def test_resolving_a_job_config_names_the_key_that_cannot_resolve():
    """What each job of a sweep does (cmrepro.train's _run), for jobs after the first."""
    with pytest.raises(ConfigError, match=r"^cannot resolve paths.data_dir: '\$\{missing.key\}' \("):
        resolved_config(OmegaConf.create({"paths": {"data_dir": "${missing.key}"}}))


def test_a_seed_numpy_cannot_take_is_refused_and_the_largest_one_runs():
    assert _refusal(["seed=4294967296"]) == "invalid seed: 4294967296 (must be an integer from 0 to 4294967295)"
    assert check_command_line([f"seed={MAX_SEED}", "dataset=synthetic_image"], CONF_DIR) is not None
    np.random.seed(MAX_SEED)  # what the run does with it


def test_a_buffer_larger_than_the_device_is_refused_before_the_run_starts(tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_run(["dataset=synthetic_image", *QUICK, "optimizer=adam_cm", "optimizer.topC=1000000000"], run_dir)
    with pytest.raises(ConfigError) as refused:
        train(cfg, run_dir)
    message = str(refused.value)
    assert message.startswith("invalid optimizer.topC: 1000000000 (must be at most ")
    assert " TB, 1000000000 copies of the parameters' " in message and " free)" in message
    assert not (run_dir / "metrics.jsonl").exists() and not (run_dir / "checkpoint.pt").exists()  # no step ran


def test_the_buffer_check_counts_every_copy_of_every_parameter(monkeypatch):
    model = torch.nn.Linear(10, 10)  # 110 float32 parameters: 440 bytes a copy
    optimizer = optimizer_from_config({"name": "adam_cm", "lr": 1e-3, "topC": 5}, model.parameters())
    monkeypatch.setattr("cmrepro.training.checks.free_memory", lambda device: 5 * 440)
    check_buffer_memory(optimizer, torch.device("cpu"))  # exactly fits
    monkeypatch.setattr("cmrepro.training.checks.free_memory", lambda device: 5 * 440 - 1)
    with pytest.raises(ConfigError, match=r"^invalid optimizer.topC: 5 \(must be at most 4 here: .* 2.2 kB, "):
        check_buffer_memory(optimizer, torch.device("cpu"))
    assert free_memory(torch.device("cpu")) > 0
