"""--help of the train and toy commands (conf/hydra/help/train.yaml, conf/toy/hydra/help/toy.yaml),
a config key typed as an --option, and ``make help``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import run_cli

from cmrepro import command_help
from cmrepro.config_keys import HYDRA_FLAGS, option_instead_of_override, unknown_key_message

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def _command(module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m module args``: cmrepro.train as every CLI test runs it (run_cli: a warm
    interpreter's child), cmrepro.toy in a plain one (it sets variables before importing torch)."""
    if module == "cmrepro.train":
        return run_cli(list(args), timeout=120)
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def _listed_groups(help_text: str) -> dict[str, list[str]]:
    """The 'Config groups' block of a help page: group -> its options, continuation lines joined."""
    block = help_text.split("Config groups", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    groups: dict[str, str] = {}
    for line in block:
        group, _, options = line.strip().partition("  ")
        if line.startswith("  ") and not line.startswith("   "):
            groups[group] = options.strip()
            last = group
        else:
            groups[last] += " " + line.strip()
    return {group: options.split(", ") for group, options in groups.items()}


def _options_on_disk(folder: Path) -> list[str]:
    """What a group's options are, written out independently of cmrepro.command_help."""
    files = sorted(p.stem for p in folder.glob("*.yaml"))
    return files + sorted(p.name + "/" for p in folder.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def train_help() -> str:
    done = _command("cmrepro.train", "--help")
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def toy_help() -> str:
    done = _command("cmrepro.toy", "--help")
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("page", ["train_help", "toy_help"])
def test_a_help_page_is_short_narrow_and_ours(page, request):
    text = request.getfixturevalue(page)
    lines = text.rstrip("\n").splitlines()
    assert len(lines) <= 50 and max(map(len, lines)) <= 100
    assert "powered by Hydra" not in text and "== Config ==" not in text
    assert "Common commands" in text and "Main keys" in text and "--hydra-help" in text


def test_train_help_lists_its_groups_as_the_conf_dir_holds_them_and_no_toy_group(train_help):
    listed = _listed_groups(train_help)
    expected = {
        p.name: _options_on_disk(p) for p in CONF.iterdir() if p.is_dir() and p.name not in ("toy", "claims", "hydra")
    }
    assert listed == expected
    assert "toy" not in listed and "figure15_ackley" not in train_help  # a toy experiment
    for line in ("python -m cmrepro.train dataset=synthetic_image optimizer=adam_cm", "-m optimizer=adam,adam_cm"):
        assert line in train_help
    keys = ["seed=0", "trainer.epochs=100", "trainer.device=auto", "optimizer.lr=0.001", "paths.data_dir="]
    keys += ["paths.output_dir=results/runs", "scale=full", "trainer.max_steps_per_epoch=null"]
    for key in keys:
        assert key in train_help


def test_toy_help_lists_the_toy_experiments_and_no_training_group(toy_help):
    assert _listed_groups(toy_help) == {"experiment": _options_on_disk(CONF / "toy" / "experiment")}
    assert not re.search(r"^\s+(optimizer|dataset|model|trainer)\s", toy_help, flags=re.M)
    for key in ("output_dir=results/toy", "workers=null", "start_jitter=0.0", "experiment.seeds=100"):
        assert key in toy_help


def test_the_help_shows_the_values_the_command_line_composes_to():
    done = _command("cmrepro.train", "dataset=synthetic_image", "scale=smoke", "--help")
    assert done.returncode == 0, done.stderr
    assert "trainer.epochs=2" in done.stdout and "scale=smoke" in done.stdout
    assert "paths.output_dir=results/smoke/runs" in done.stdout


def test_hydra_help_stays_hydras():
    done = _command("cmrepro.train", "--hydra-help")
    assert done.returncode == 0 and done.stdout.startswith("Hydra (")


def test_a_config_file_added_is_in_the_help_at_once(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    (conf / "optimizer").mkdir(parents=True)
    (conf / "toy").mkdir()
    for name in ("adam", "my_adam"):
        (conf / "optimizer" / f"{name}.yaml").write_text(f"name: {name}\n")
    monkeypatch.setitem(command_help.COMMANDS, "train", (conf, ("toy", "claims", "hydra")))
    assert command_help.format_groups("train") == "  optimizer  adam, my_adam"


# ---- a config key typed as an option ------------------------------------------------------------


def test_hydras_flags_are_all_hydra_has():
    from hydra._internal.utils import get_args_parser

    assert set(get_args_parser()._option_string_actions) == HYDRA_FLAGS


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--epochs", "3"], "did you mean trainer.epochs=3?"),
        (["--epochs=3"], "did you mean trainer.epochs=3?"),
        (["dataset=cifar10", "--lr", "0.1", "seed=1"], "did you mean optimizer.lr=0.1?"),
        (["--max-steps-per-epoch", "2"], "did you mean trainer.max_steps_per_epoch=2?"),
        (["--trainer.epochs", "5"], "did you mean trainer.epochs=5?"),
        (["--dataset", "cifar10"], "did you mean dataset=cifar10?"),
        (["--weight_decay", "0.1"], "did you mean dataset.weight_decay=0.1 or optimizer.weight_decay=0.1?"),
        (["--epochs"], "did you mean trainer.epochs=<value>?"),
        (["--epochs", "seed=1"], "did you mean trainer.epochs=<value>?"),
        (["--zzz"], "(--zzz is none of its config keys or Hydra's flags); see --help"),
    ],
)
def test_an_option_names_the_override_it_means(argv, expected):
    line = option_instead_of_override(argv, CONF)
    assert line.startswith("this command takes key=value overrides, not --options") and line.endswith(expected)


@pytest.mark.parametrize("argv", [["seed=1", "-m", "optimizer=adam,adam_cm"], ["--cfg", "job"], ["--help"], []])
def test_hydras_own_flags_and_overrides_pass(argv):
    assert option_instead_of_override(argv, CONF) is None


def test_a_toy_option_names_the_toy_key():
    assert option_instead_of_override(["--workers", "4"], CONF / "toy", ()).endswith("did you mean workers=4?")
    assert "trainer." not in option_instead_of_override(["--epochs", "3"], CONF / "toy", ())


@pytest.mark.parametrize(
    "key, expected",
    [
        ("epochs", "did you mean trainer.epochs?"),
        ("lr", "did you mean optimizer.lr?"),
        ("trainer.epoch", "did you mean trainer.epochs?"),
        ("weight_decay", "did you mean dataset.weight_decay or optimizer.weight_decay?"),
    ],
)
def test_a_bare_key_suggests_the_key_that_ends_with_it(key, expected):
    assert f"unknown config key {key!r} ({expected})" in unknown_key_message(key, CONF)


def test_the_commands_refuse_an_option_in_one_line_with_exit_code_2():
    train = _command("cmrepro.train", "--epochs", "3")
    assert (train.returncode, train.stderr) == (
        2,
        "cmrepro.train: this command takes key=value overrides, not --options; did you mean trainer.epochs=3?\n",
    )
    toy = _command("cmrepro.toy", "--workers", "4")
    assert (toy.returncode, toy.stderr) == (
        2,
        "cmrepro.toy: this command takes key=value overrides, not --options; did you mean workers=4?\n",
    )
    bare = _command("cmrepro.train", "epochs=3")
    assert bare.returncode == 2 and "(did you mean trainer.epochs?)" in bare.stderr


# ---- make help ----------------------------------------------------------------------------------


def _phony_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    return {t for line in text.splitlines() if line.startswith(".PHONY:") for t in line.split(":", 1)[1].split()}


def _listed_targets(help_text: str) -> set[str]:
    """The target column of ``make help``: a line of its own where the targets are long."""
    lines = help_text.splitlines()
    listed = set()
    for line, following in zip(lines, [*lines[1:], ""]):
        if line.startswith("  ") and not line.startswith("   "):
            alone = following.startswith(" " * 25)
            listed.update(line.split() if alone else line[:25].split())
    return listed


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
def test_make_help_has_a_line_for_every_phony_target_and_keeps_install_the_default():
    done = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert _phony_targets() <= _listed_targets(done.stdout), _phony_targets() - _listed_targets(done.stdout)
    assert all(len(line) > 26 for line in done.stdout.splitlines() if line.startswith(" " * 25))  # a description
    default = subprocess.run(["make", "-n"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert "pip install" in default.stdout  # `make` alone still installs
