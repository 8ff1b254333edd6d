"""CIFAR's python batches are pickles in a folder a neighbour may be able to write: they are
read by an unpickler that admits only what the real files hold, so a crafted one is refused
in one line instead of running its code (issue 21)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import data_fixtures
import numpy as np
import pytest

from cmrepro.data import build_data
from cmrepro.data.base import DataError
from cmrepro.data.vision import CIFAR10, CifarUnpickler, read_cifar_batch, read_cifar_pickle

CFG = {"name": "cifar10", "batch_size": 2, "val_size": 2}


class RunsCode:
    """Unpickled by a plain ``pickle.load``, this calls ``os.system``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_pickle_that_would_run_code_is_refused_in_one_line_naming_the_file(tmp_path: Path) -> None:
    data_fixtures.write_cifar10(tmp_path, n_train=10, n_test=2)
    folder = tmp_path / "cifar-10-batches-py"
    witness = tmp_path / "it-ran"
    crafted = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1], "x": RunsCode(f"touch {witness}")}
    (folder / "data_batch_3").write_bytes(pickle.dumps(crafted, protocol=2))
    with pytest.raises(DataError) as excinfo:
        build_data({**CFG, "data_dir": str(tmp_path)}, seed=0)
    message = str(excinfo.value)
    assert "\n" not in message and not witness.exists()
    assert "a pickle data_batch_3 refused unread: it names posix.system, which no CIFAR file holds" in message
    assert f"delete {folder} and run python -m cmrepro.data prepare cifar10" in message
    with open(folder / "data_batch_3", "rb") as handle:  # the same file does run code under pickle.load
        pickle.load(handle)
    assert witness.exists()


@pytest.mark.parametrize("name", ["builtins.eval", "subprocess.Popen", "numpy.load", "torch.load"])
def test_only_the_names_of_the_real_files_are_admitted(tmp_path: Path, name: str) -> None:
    module, _, attribute = name.rpartition(".")
    path = tmp_path / "data_batch_1"
    path.write_bytes(b"\x80\x02c" + f"{module}\n{attribute}\n".encode() + b"q\x00.")
    with pytest.raises(DataError, match=f"it names {module}.{attribute}, which no CIFAR file holds"):
        read_cifar_pickle(CIFAR10, path, tmp_path)


def test_the_real_format_reads_as_before(tmp_path: Path) -> None:
    # Python 2 protocol-2 pickles as the dataset's files are, their arrays named under numpy's core.
    written = data_fixtures.write_cifar10(tmp_path, n_train=10, n_test=4)
    images, labels = read_cifar_batch(CIFAR10, tmp_path / "cifar-10-batches-py/test_batch", tmp_path)
    assert images.shape == (4, 3, 32, 32) and labels.tolist() == list(written["test_labels"])
    assert (images.reshape(4, -1).numpy() == written["test_data"]).all()
    meta = read_cifar_pickle(CIFAR10, tmp_path / "cifar-10-batches-py/batches.meta", tmp_path)
    assert len(meta["label_names"]) == 10
    # numpy 1 wrote numpy.core.multiarray where numpy 2 writes numpy._core.multiarray: both read.
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    old_name = pickle.dumps(array, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path = tmp_path / "old"
    path.write_bytes(old_name)
    with open(path, "rb") as handle:
        assert (CifarUnpickler(handle, encoding="latin1").load() == array).all()
