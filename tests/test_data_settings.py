"""cmrepro.data.settings: each family's config is read once, into typed settings, before any file."""

from __future__ import annotations

import dataclasses

import pytest

from cmrepro.data import DATASET_NAMES, DataError, build_data
from cmrepro.data.registry import DATASETS
from cmrepro.data.settings import CifarSettings, LoaderSettings, SyntheticStreamSettings, TinyImageNetSettings


@pytest.mark.parametrize(
    "name, bad, message",
    [
        ("imagenet", {"augment": "yes"}, "invalid dataset.augment: 'yes' (must be true or false)"),
        ("tinyimagenet", {"num_tasks": 0}, "invalid dataset.num_tasks: 0 (must be an integer >= 1)"),
        ("cifar10", {"download": 1}, "invalid dataset.download: 1 (must be true or false)"),
        ("ptb", {"bptt": 2.5}, "invalid dataset.bptt: 2.5 (must be an integer >= 1)"),
        ("five_datasets", {"image_size": "32"}, "invalid dataset.image_size: '32' (must be an integer >= 1)"),
    ],
)
def test_a_bad_value_is_refused_before_any_file_is_looked_for(name, bad, message, tmp_path):
    cfg = {"name": name, "data_dir": str(tmp_path / "missing"), "batch_size": 4, **bad}
    with pytest.raises(ValueError) as refused:
        build_data(cfg, seed=0)
    assert str(refused.value) == message and not isinstance(refused.value, DataError)
    with pytest.raises(DataError, match="missing"):  # the same config, the value fixed: now the files
        build_data({key: value for key, value in cfg.items() if key not in bad}, seed=0)


def test_defaults_are_the_dataclass_fields_and_the_settings_are_frozen(tmp_path):
    settings = CifarSettings.from_config({"name": "cifar100", "data_dir": str(tmp_path), "batch_size": 8})
    defaults = {f.name: f.default for f in dataclasses.fields(CifarSettings) if f.default is not dataclasses.MISSING}
    assert {key: getattr(settings, key) for key in defaults} == defaults
    assert settings.loader == LoaderSettings(8, 8, settings.loader.options) and settings.root == tmp_path
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.val_size = 1  # type: ignore[misc]
    stream = TinyImageNetSettings.from_config({"name": "tinyimagenet", "data_dir": "x", "batch_size": 2}, seed=7)
    assert (stream.task_order_seed, stream.split_seed, stream.num_tasks) == (7, 7, None)


def test_the_registry_names_every_dataset_once_with_its_builders():
    assert set(DATASETS) == set(DATASET_NAMES) and len(DATASET_NAMES) == 9
    streams = {name for name, entry in DATASETS.items() if entry.stream}
    assert streams == {"tinyimagenet", "five_datasets", "synthetic_stream"}
    # A stream stand-in keeps its stream's shape: TinyImageNet's 200 classes in tasks of 5.
    cfg = {"name": "tinyimagenet", "batch_size": 2, "stand_in": {"train": 4, "val": 2, "image_size": 8}}
    assert build_data(cfg, seed=0).num_tasks == 40
    synthetic = {"name": "synthetic_stream", "batch_size": 2, "stand_in": {"train": 4, "val": 2, "image_size": 8}}
    assert build_data(synthetic, seed=0).num_tasks == SyntheticStreamSettings.num_tasks
    with pytest.raises(DataError, match="synthetic_image: no synthetic stand-in"):
        build_data({"name": "synthetic_image", "batch_size": 2, "stand_in": {"train": 4}}, seed=0)
