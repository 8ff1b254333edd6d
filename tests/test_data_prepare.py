"""``python -m cmrepro.data prepare|verify``: downloads from a local server of tiny archives in
the real formats, checksums, resume, half-extracted folders, offline failure, --from-archive,
ImageNet from fake official archives, and training on what prepare left."""

from __future__ import annotations

import hashlib
import math
import shutil
import time

import prepare_fixtures as pf
import pytest
from prepare_fixtures import run, use_table
from train_helpers import compose_run

import cmrepro.data.__main__ as cli
import cmrepro.data.sources as sources_module
from cmrepro.data.base import prepare_command
from cmrepro.data.fetch import MARKER
from cmrepro.train import train

# The fixtures archives, server and served_table.
pytest_plugins = ["prepare_server_fixtures"]

# A small CNN for the streams, as tests/test_online_train.py runs them.
SMALL_CNN = ["model.channels=8", "model.hidden=16"]


# Where each dataset's readers look under paths.data_dir, as prepare must leave it.
LAYOUT = {
    "cifar10": "cifar10/cifar-10-batches-py/data_batch_5",
    "cifar100": "cifar100/cifar-100-python/meta",
    "ptb": "ptb/ptb.valid.txt",
    "tinyimagenet": "tinyimagenet/tiny-imagenet-200/val/val_annotations.txt",
    "mnist": "five_datasets/mnist/MNIST/raw/t10k-labels-idx1-ubyte.gz",
    "fashion_mnist": "five_datasets/fashion_mnist/FashionMNIST/raw/train-images-idx3-ubyte.gz",
    "svhn": "five_datasets/svhn/test_32x32.mat",
    "notmnist": "five_datasets/notmnist/notMNIST_small/J",
}


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_prepare_leaves_the_readers_layout_and_verifies(name, served_table, tmp_path, capsys):
    code, lines = run(capsys, "prepare", name, "--data-dir", str(tmp_path), "--quiet")
    assert code == 0, lines
    assert len(lines) == 1 and lines[0].startswith(f"{name}: ok, ")
    counts = pf.FIXTURE_COUNTS[name] or {}
    assert all(f"{value} {key}" in lines[0] for key, value in counts.items()), lines
    assert (tmp_path / LAYOUT[name]).exists()
    folder = tmp_path / served_table[name].folder
    assert (folder / MARKER).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{folder.name}.")]  # no staging left
    code, lines = run(capsys, "verify", name, "--data-dir", str(tmp_path))
    assert code == 0 and lines[0].startswith(f"{name}: ok")


def test_ptb_counts_tokens_of_each_split(served_table, tmp_path, capsys):
    code, lines = run(capsys, "prepare", "ptb", "--data-dir", str(tmp_path), "--quiet")
    words = {s: (tmp_path / f"ptb/ptb.{s}.txt").read_text().split() for s in ("train", "valid", "test")}
    lines_of = {s: (tmp_path / f"ptb/ptb.{s}.txt").read_text().count("\n") for s in words}
    for split in words:  # every word and one <eos> a line
        assert f"{len(words[split]) + lines_of[split]} {split} tokens" in lines[0]


def test_five_datasets_group_prepares_its_parts_and_a_second_prepare_downloads_nothing(
    served_table, server, tmp_path, capsys
):
    code, lines = run(capsys, "prepare", "five_datasets", "--data-dir", str(tmp_path), "--quiet")
    assert code == 0 and [line.split(":")[0] for line in lines] == list(sources_module.FIVE_PARTS)
    before = len(server.requests)
    code, lines = run(capsys, "prepare", "five_datasets", "--data-dir", str(tmp_path), "--quiet")
    assert code == 0 and all(line.endswith("(already there)") for line in lines)
    assert len(server.requests) == before


def test_bad_checksum_is_refused_in_one_line_then_a_retry_succeeds(served_table, server, archives, tmp_path, capsys):
    server.corrupt.add("/cifar10/cifar-10-python.tar.gz")
    code, lines = run(capsys, "prepare", "cifar10", "--data-dir", str(tmp_path), "--quiet")
    good = archives["cifar10"]["cifar-10-python.tar.gz"]
    bad = bytes([good[0] ^ 0xFF]) + good[1:]
    assert code == 1 and len(lines) == 1
    assert "cifar-10-python.tar.gz" in lines[0] and "deleted it" in lines[0]
    assert f"md5 {hashlib.md5(bad).hexdigest()}, expected {hashlib.md5(good).hexdigest()}" in lines[0]
    assert not (tmp_path / "cifar10").exists()
    assert not list((tmp_path / ".downloads").iterdir())  # the bad file is not kept
    server.corrupt.clear()
    code, lines = run(capsys, "prepare", "cifar10", "--data-dir", str(tmp_path), "--quiet")
    assert code == 0 and lines[0].startswith("cifar10: ok")


def test_a_bad_mirror_falls_back_to_the_next(monkeypatch, archives, server, tmp_path, capsys):
    use_table(monkeypatch, pf.fixture_table(archives, server.base, mirrors=(server.base + "missing/",)))
    code, lines = run(capsys, "prepare", "cifar10", "--data-dir", str(tmp_path), "--quiet")
    assert code == 0, lines
    assert [path for path, _ in server.requests] == [
        "/missing/cifar10/cifar-10-python.tar.gz",
        "/cifar10/cifar-10-python.tar.gz",
    ]


def test_an_interrupted_download_resumes_with_a_range_request(served_table, server, archives, tmp_path, capsys):
    server.drop.add("/tinyimagenet/tiny-imagenet-200.zip")
    code, lines = run(capsys, "prepare", "tinyimagenet", "--data-dir", str(tmp_path), "--quiet")
    assert code == 0, lines
    size = len(archives["tinyimagenet"]["tiny-imagenet-200.zip"])
    assert server.requests == [
        ("/tinyimagenet/tiny-imagenet-200.zip", None),
        ("/tinyimagenet/tiny-imagenet-200.zip", f"bytes={size // 2}-"),
    ]


def test_a_part_file_left_by_an_earlier_run_is_resumed(served_table, server, archives, tmp_path, capsys):
    body = archives["cifar100"]["cifar-100-python.tar.gz"]
    (tmp_path / ".downloads").mkdir()
    (tmp_path / ".downloads/cifar-100-python.tar.gz.part").write_bytes(body[:1000])
    code, lines = run(capsys, "prepare", "cifar100", "--data-dir", str(tmp_path), "--quiet")
    assert code == 0 and server.requests == [("/cifar100/cifar-100-python.tar.gz", "bytes=1000-")]


def test_a_half_extracted_folder_is_detected_and_rebuilt(served_table, tmp_path, capsys):
    (tmp_path / "ptb").mkdir()
    (tmp_path / "ptb/ptb.train.txt").write_text(" the a \n")  # as if extraction stopped here
    code, lines = run(capsys, "verify", "ptb", "--data-dir", str(tmp_path))
    assert code == 1 and "missing ptb.valid.txt" in lines[0] and "python -m cmrepro.data prepare ptb" in lines[0]
    assert cli.main(["prepare", "ptb", "--data-dir", str(tmp_path)]) == 0
    assert f"ptb: {tmp_path / 'ptb'} is incomplete (no completion mark): rebuilding it" in capsys.readouterr().err
    assert (tmp_path / "ptb" / MARKER).is_file() and (tmp_path / "ptb/ptb.test.txt").is_file()
    assert (tmp_path / "ptb/ptb.train.txt").read_text() != " the a \n"


def test_verify_all_on_an_empty_folder_names_the_fixing_command_per_dataset(tmp_path, capsys):
    code, lines = run(capsys, "verify", "all", "--data-dir", str(tmp_path))
    assert code == 1 and len(lines) == len(LAYOUT) + 2  # and imagenet (tests/test_verify_tally.py)
    assert lines[-1].startswith(
        f"verify: 0 of {len(LAYOUT) + 1} ready; not prepared: {', '.join(sources_module.sources())}"
    )
    for name, line in zip(sources_module.sources(), lines):
        # Not prepared yet, not failed: the command, with the data dir the run would use.
        assert line.startswith(f"{name}: not prepared") and f"prepare {name} --data-dir {tmp_path}" in line


def test_offline_fails_fast_with_one_line_per_dataset(monkeypatch, archives, tmp_path, capsys):
    use_table(monkeypatch, pf.fixture_table(archives, f"http://127.0.0.1:{pf.closed_port()}/"))
    start = time.monotonic()
    code, lines = run(capsys, "prepare", "all", "--data-dir", str(tmp_path), "--quiet")
    assert time.monotonic() - start < 10
    assert code == 1 and len(lines) == len(LAYOUT) + 1 and lines[-1].startswith(f"prepare: {len(LAYOUT)} of ")
    assert all("failed:" in line and "could not download" in line and "--from-archive" in line for line in lines[:-1])


def test_from_archive_and_url_work_without_the_table_urls(monkeypatch, archives, server, tmp_path, capsys):
    use_table(monkeypatch, pf.fixture_table(archives, f"http://127.0.0.1:{pf.closed_port()}/"))
    copied = tmp_path / "copied" / "simple-examples.tgz"
    copied.parent.mkdir()
    copied.write_bytes(archives["ptb"]["simple-examples.tgz"])
    code, lines = run(capsys, "prepare", "ptb", "--data-dir", str(tmp_path / "d"), "--from-archive", str(copied))
    assert code == 0 and lines[0].startswith("ptb: ok")
    code, lines = run(capsys, "prepare", "mnist", "--data-dir", str(tmp_path / "d"), "--url", server.base + "mnist/")
    assert code == 0 and lines[0].startswith("mnist: ok")
    good = archives["ptb"]["simple-examples.tgz"]
    copied.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    code, lines = run(capsys, "prepare", "ptb", "--data-dir", str(tmp_path / "e"), "--from", str(copied))
    assert code == 1 and f"{copied}: md5 " in lines[0] and hashlib.md5(good).hexdigest() in lines[0]
    copied.write_bytes(b"not the archive")
    code, lines = run(capsys, "prepare", "ptb", "--data-dir", str(tmp_path / "e"), "--from", str(copied))
    assert code == 1 and f"{copied}: size 15 bytes, expected {len(good)}" in lines[0]
    assert not (tmp_path / "e" / "ptb").exists()


def test_progress_bars_go_to_stderr_unless_quiet(served_table, tmp_path, capsys):
    assert cli.main(["prepare", "cifar10", "--data-dir", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "cifar-10-python.tar.gz" in err and "extract cifar-10-python.tar.gz" in err
    assert cli.main(["prepare", "cifar10", "--data-dir", str(tmp_path / "b"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_prepare_help_lists_every_dataset(capsys):
    with pytest.raises(SystemExit):
        cli.main(["prepare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in [*LAYOUT, "five_datasets", "imagenet", "all"]:
        assert name in text


def test_unknown_dataset_is_one_line(capsys):
    assert cli.main(["prepare", "cifar11"]) == 2
    assert "unknown dataset: 'cifar11' (must be one of: all, cifar10" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("dataset", "overrides"),
    [
        ("cifar10", ["dataset.val_size=8", "dataset.batch_size=16", "model=resnet18", "model.width=0.125"]),
        ("ptb", ["dataset.batch_size=4", "dataset.eval_batch_size=2"]),
        ("tinyimagenet", ["dataset.num_tasks=2", "dataset.classes_per_task=2", "dataset.image_size=16", *SMALL_CNN]),
        ("five_datasets", ["model.width=0.125", "dataset.batch_size=32"]),
    ],
)
def test_one_training_epoch_from_the_prepared_folder(dataset, overrides, served_table, tmp_path, capsys):
    assert run(capsys, "prepare", dataset, "--data-dir", str(tmp_path / "data"), "--quiet")[0] == 0
    settings = ["dataset.num_workers=0", "trainer.epochs=1", "trainer.lr_milestones=[]", "trainer.progress=false"]
    cfg = compose_run(
        [f"dataset={dataset}", f"paths.data_dir={tmp_path / 'data'}", *settings, *overrides], tmp_path / "run"
    )
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "done"
    if "final" in result:  # the supervised runs; the streams report per task
        assert math.isfinite(result["final"]["train_loss"])


def test_prepare_command_names_the_data_dir_of_the_default_layout(tmp_path):
    assert prepare_command("svhn", tmp_path / "five_datasets/svhn", "five_datasets/svhn") == (
        f"run python -m cmrepro.data prepare svhn --data-dir {tmp_path}"
    )
    # A folder set by hand (dataset.data_dir): say where prepare puts the data instead.
    custom = prepare_command("ptb", tmp_path / "my_ptb")
    assert custom.startswith("run python -m cmrepro.data prepare ptb --data-dir DIR") and "DIR/ptb" in custom


# ---------------------------------------------------------------- ImageNet


def test_imagenet_from_fake_official_archives(monkeypatch, tmp_path, capsys):
    import torchvision.datasets.imagenet as tv

    given = pf.write_imagenet_archives(tmp_path / "archives")
    # torchvision checks the real archives' MD5s: point it at the fakes' own.
    meta = {part: (path.name, hashlib.md5(path.read_bytes()).hexdigest()) for part, path in given["files"].items()}
    monkeypatch.setattr(tv, "ARCHIVE_META", meta)
    data = tmp_path / "data"
    (data / "imagenet" / "train").mkdir(parents=True)  # a half-built folder from an older attempt
    train_tar, val_tar, devkit = (str(given["files"][p]) for p in ("train", "val", "devkit"))
    code, lines = run(
        capsys, "prepare", "imagenet", "--data-dir", str(data), "--from", train_tar, val_tar, "--devkit", devkit
    )
    assert code == 0, lines
    assert lines[0].startswith("imagenet: ok, 3 classes, 6 train, 6 val")
    for wnid, names in given["val"].items():  # each val image in its ground-truth class folder
        assert sorted(p.name for p in (data / "imagenet/val" / wnid).iterdir()) == sorted(names)
    assert (data / "imagenet" / MARKER).is_file()
    code, lines = run(capsys, "prepare", "imagenet", "--data-dir", str(tmp_path / "x"), "--from", train_tar)
    assert code == 1 and "no ILSVRC2012_img_val.tar" in lines[0]


def test_imagenet_rejects_a_corrupt_archive_and_keeps_no_folder(monkeypatch, tmp_path, capsys):
    import torchvision.datasets.imagenet as tv

    given = pf.write_imagenet_archives(tmp_path / "archives")
    meta = {part: (path.name, "0" * 32) for part, path in given["files"].items()}
    monkeypatch.setattr(tv, "ARCHIVE_META", meta)
    files = [str(p) for p in given["files"].values()]
    code, lines = run(capsys, "prepare", "imagenet", "--data-dir", str(tmp_path / "d"), "--from", *files)
    assert code == 1 and "corrupted" in lines[0] and len(lines) == 1
    assert not (tmp_path / "d" / "imagenet").exists()
    shutil.rmtree(tmp_path / "archives")
