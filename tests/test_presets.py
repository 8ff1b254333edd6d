"""``dataset=<name>`` alone gives the paper's setting for that dataset, through ``conf/preset/<name>.yaml``.

A dataset config describes its data only and selects its preset; the preset holds the
model, schedule, gradient clipping, beta2 and weight decay. The table below is what every
dataset composed to before the preset group existed: moving values between files must
not change a run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

# The configs alone, composed as `python -m cmrepro.train` composes them (nothing of cmrepro is imported).
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
DATASETS = CONF_DIR / "dataset"
PRESETS = CONF_DIR / "preset"

# dataset: (model, epochs, lr_milestones, lr_gamma, grad_clip, beta2, weight_decay, online)
EXPECTED = {
    "cifar10": ("resnet34", 100, [50], 0.1, None, 0.999, 0.0, None),
    "cifar100": ("resnet34", 100, [50], 0.1, None, 0.999, 0.0, None),
    "imagenet": ("efficientnet_b0", 90, [30, 60], 0.1, None, 0.99, 1e-4, None),
    "ptb": ("lstm", 50, [25], 0.1, 0.25, 0.99, 0.0, None),
    "five_datasets": ("resnet18", 5, [], 0.1, None, 0.999, 0.0, {"reset_optimizer": False}),
    "tinyimagenet": ("lamaml_cnn", 10, [], 0.1, None, 0.999, 0.0, {"reset_optimizer": False}),
    "synthetic_image": ("resnet18", 3, [2], 0.1, None, 0.999, 0.0, None),
    "synthetic_text": ("lstm", 4, [2], 0.1, 0.25, 0.99, 0.0, None),
    "synthetic_stream": ("lamaml_cnn", 2, [], 0.1, None, 0.999, 0.0, {"reset_optimizer": False}),
}  # fmt: skip


def compose_run(overrides: list[str], run_dir: Path) -> dict:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=[*overrides, f"run_dir={run_dir}"])
    return OmegaConf.to_container(cfg, resolve=True)


def test_every_dataset_has_a_preset_and_an_expected_row():
    datasets = sorted(path.stem for path in DATASETS.glob("*.yaml"))
    assert datasets == sorted(EXPECTED)
    assert sorted(path.stem for path in PRESETS.glob("*.yaml")) == datasets


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_dataset_composes_to_the_papers_setting(name, tmp_path):
    cfg = compose_run([f"dataset={name}", "optimizer=adam_cm"], tmp_path)
    trainer = cfg["trainer"]
    composed = (
        cfg["model"]["name"],
        trainer["epochs"],
        trainer["lr_milestones"],
        trainer["lr_gamma"],
        trainer["grad_clip"],
        cfg["dataset"]["beta2"],
        cfg["dataset"]["weight_decay"],
        cfg.get("online"),
    )
    assert composed == EXPECTED[name]
    # The optimizer configs read the preset's beta2 and weight decay.
    assert cfg["optimizer"]["betas"][1] == EXPECTED[name][5]
    assert cfg["optimizer"]["weight_decay"] == EXPECTED[name][6]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_dataset_file_holds_its_data_and_names_its_preset(name):
    """The values that are not the data's live in the preset, where a reader looks for them."""
    config = yaml.safe_load((DATASETS / f"{name}.yaml").read_text())
    assert set(config) == {"defaults", "dataset"}
    assert config["defaults"] == ["_self_", {"/preset": name}]
    assert not {"beta2", "weight_decay"} & set(config["dataset"])
    assert "dataset" not in yaml.safe_load((PRESETS / f"{name}.yaml").read_text())["defaults"][0]


def test_another_preset_can_be_picked_for_a_dataset(tmp_path):
    cfg = compose_run(["dataset=cifar100", "preset=ptb"], tmp_path)
    assert (cfg["dataset"]["name"], cfg["model"]["name"], cfg["trainer"]["grad_clip"]) == ("cifar100", "lstm", 0.25)
