"""``python -m cmrepro.data verify``: a dataset not prepared yet is told apart from one whose files
are there but broken, each with what to do, and several datasets end with a tally line. The data
is made by ``prepare`` itself from tiny archives in the real formats, served locally."""

from __future__ import annotations

from pathlib import Path

import pytest
from prepare_fixtures import run

import cmrepro.data.__main__ as cli
import cmrepro.data.sources as sources_module
from cmrepro.data.verify import IMAGENET_ARCHIVES

# The fixtures archives, server and served_table.
pytest_plugins = ["prepare_server_fixtures"]


@pytest.fixture
def one_ready_one_corrupt(served_table, tmp_path, capsys) -> Path:
    """A data directory where ptb is prepared, cifar10 was prepared then damaged, the rest absent."""
    for name in ("ptb", "cifar10"):
        assert run(capsys, "prepare", name, "--data-dir", str(tmp_path), "--quiet")[0] == 0
    batch = tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(batch.read_bytes()[:100])  # a copy cut short
    return tmp_path


def test_verify_all_tells_ready_not_prepared_and_failed_apart_and_tallies(one_ready_one_corrupt, capsys):
    data = one_ready_one_corrupt
    code, lines = run(capsys, "verify", "all", "--data-dir", str(data))
    names = [*sources_module.sources(), "imagenet"]  # verify all checks imagenet too
    assert code == 1 and len(lines) == len(names) + 1
    by_name = dict(zip(names, lines))
    assert by_name["ptb"].startswith("ptb: ok, ")
    # The corrupt one: failed, with the reader's own message (which file), not "not prepared".
    assert by_name["cifar10"].startswith("verify cifar10 failed: ") and "data_batch_1" in by_name["cifar10"]
    assert "not prepared" not in by_name["cifar10"]
    for name in ("cifar100", "mnist", "notmnist"):
        assert by_name[name].startswith(f"{name}: not prepared (no {data}/")
        assert by_name[name].endswith(f"run: python -m cmrepro.data prepare {name} --data-dir {data}")
    imagenet = by_name["imagenet"]
    assert imagenet.startswith(f"imagenet: not prepared (no {data / 'imagenet'}); run: ")
    assert f"python -m cmrepro.data prepare imagenet --from DIR --data-dir {data}" in imagenet
    assert all(archive in imagenet for archive in IMAGENET_ARCHIVES)
    missing = [name for name in names if name not in ("ptb", "cifar10")]
    downloadable = " ".join(name for name in missing if name != "imagenet")
    assert lines[-1] == (
        f"verify: 1 of {len(names)} ready; not prepared: {', '.join(missing)} "
        f"(run: python -m cmrepro.data prepare {downloadable} --data-dir {data}; "
        f"python -m cmrepro.data prepare imagenet --from DIR --data-dir {data}); "
        "failed: cifar10 (present but unreadable: see each line above)"
    )


def test_an_empty_folder_is_not_prepared_and_a_half_made_one_failed(tmp_path, capsys):
    (tmp_path / "cifar100").mkdir()  # made by hand, nothing in it yet
    (tmp_path / "ptb").mkdir()
    (tmp_path / "ptb" / "ptb.train.txt").write_text(" the a \n")  # extraction stopped here
    code, lines = run(capsys, "verify", "cifar100", "ptb", "--data-dir", str(tmp_path))
    assert code == 1
    assert lines[0].startswith("cifar100: not prepared")
    assert lines[1].startswith("verify ptb failed: ") and "missing ptb.valid.txt" in lines[1]
    assert lines[2].startswith("verify: 0 of 2 ready; not prepared: cifar100 (run: python -m cmrepro.data prepare")
    assert lines[2].endswith("; failed: ptb (present but unreadable: see each line above)")


def test_every_downloadable_dataset_missing_is_one_prepare_all(tmp_path, capsys):
    code, lines = run(capsys, "verify", "all", "--data-dir", str(tmp_path))
    assert code == 1
    assert lines[-1].endswith(
        f"(run: python -m cmrepro.data prepare all --data-dir {tmp_path}; "
        f"python -m cmrepro.data prepare imagenet --from DIR --data-dir {tmp_path})"
    )


def test_one_ready_dataset_exits_0_without_a_tally(one_ready_one_corrupt, capsys):
    code, lines = run(capsys, "verify", "ptb", "--data-dir", str(one_ready_one_corrupt))
    assert code == 0 and len(lines) == 1 and lines[0].startswith("ptb: ok, ")


def test_the_default_data_dir_is_not_spelled_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "DEFAULT_DATA_DIR", "data")  # whatever CMREPRO_DATA says here
    code, lines = run(capsys, "verify", "svhn")
    assert code == 1 and lines == [f"svhn: not prepared (no {tmp_path}/data/five_datasets/svhn); run: "
                                   "python -m cmrepro.data prepare svhn"]  # fmt: skip


def test_the_help_documents_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        run(capsys, "verify", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit status 0 when all named are ready, 1 when any is not prepared or failed" in text
