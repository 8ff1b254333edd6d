"""Tiny dataset archives in the real formats, served from a local HTTP server, and a source
table pointing at them with their own digests: what ``prepare`` tests download from.
The archives are built with the on-disk writers of :mod:`data_fixtures` and :mod:`online_fixtures`."""

from __future__ import annotations

import hashlib
import io
import shutil
import socket
import tarfile
import tempfile
import threading
import time
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import data_fixtures
import online_fixtures

import cmrepro.data.__main__ as cli
import cmrepro.data.prepare as prepare_module
import cmrepro.data.sources as sources_module
from cmrepro.data.sources import Packaging, Remote, sources

# What verify counts on each fixture dataset (the writers' sizes below).
FIXTURE_COUNTS = {
    "cifar10": {"train": 40, "test": 10, "classes": 10},
    "cifar100": {"train": 40, "test": 10, "classes": 100},
    "ptb": None,
    "tinyimagenet": {"classes": 4, "train": 12, "val": 8},
    "mnist": {"train": 20, "test": 10},
    "fashion_mnist": {"train": 20, "test": 10},
    "svhn": {"train": 20, "test": 10},
    "notmnist": {"images": 30, "letters": 10, "unreadable skipped": 2},
}


def _tar(folder: Path, arcname_of: dict[str, Path]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for arcname, path in arcname_of.items():
            tar.add(path, arcname=arcname)
    return buffer.getvalue()


def _zip(folder: Path, top: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for path in sorted((folder / top).rglob("*")):
            zipped.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def build_archives() -> dict[str, dict[str, bytes]]:
    """dataset -> {file name as in the source table: bytes}."""
    out: dict[str, dict[str, bytes]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data_fixtures.write_cifar10(root / "c10", n_train=40, n_test=10)
        out["cifar10"] = {
            "cifar-10-python.tar.gz": _tar(root, {"cifar-10-batches-py": root / "c10/cifar-10-batches-py"})
        }
        data_fixtures.write_cifar100(root / "c100", n_train=40, n_test=10)
        out["cifar100"] = {"cifar-100-python.tar.gz": _tar(root, {"cifar-100-python": root / "c100/cifar-100-python"})}
        # Mikolov's archive: members named ./simple-examples/data/ptb.*.txt, among other files.
        data_fixtures.write_ptb(root / "ptb")
        members = {f"./simple-examples/data/ptb.{s}.txt": root / f"ptb/ptb.{s}.txt" for s in ("train", "valid", "test")}
        (root / "README").write_text("rnnlm examples\n")
        out["ptb"] = {"simple-examples.tgz": _tar(root, {"./simple-examples/README": root / "README", **members})}
        out["ptb"].update({path.name: path.read_bytes() for path in members.values()})  # the files mirror
        online_fixtures.write_tiny_imagenet(root / "tiny", num_classes=4, train_per_class=3, val_per_class=2, size=8)
        out["tinyimagenet"] = {"tiny-imagenet-200.zip": _zip(root / "tiny", "tiny-imagenet-200")}
        for name, folder in (("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")):
            online_fixtures.write_mnist_like(root / name, folder, n_train=20, n_test=10, gz=True)
            out[name] = {p.name: p.read_bytes() for p in (root / name / folder / "raw").iterdir()}
        online_fixtures.write_svhn(root / "svhn", n_train=20, n_test=10)
        out["svhn"] = {p.name: p.read_bytes() for p in (root / "svhn").iterdir()}
        online_fixtures.write_notmnist(root / "notmnist", per_letter=3)
        notmnist = {"notMNIST_small": root / "notmnist/notMNIST_small"}
        out["notmnist"] = {
            "notMNIST_small.tar.gz": _tar(root, notmnist),
            "notMNIST_small.zip": _zip(root / "notmnist", "notMNIST_small"),
        }
    return out


class Server:
    """A local HTTP server of ``files`` (URL path -> bytes) that honours Range requests.
    ``corrupt``: paths served with their bytes changed; ``drop``: paths whose next full
    response stops halfway (the connection closes); ``misrange``: paths whose Range answers
    are a 206 of the whole file (``Content-Range`` from byte 0, not where asked); ``trickle``:
    paths sent a byte every ``TRICKLE_S`` seconds for ``TRICKLE_FOR_S`` seconds, then cut.
    ``requests`` logs (path, Range header)."""

    TRICKLE_S = 0.05
    TRICKLE_FOR_S = 4.0

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.corrupt: set[str] = set()
        self.drop: set[str] = set()
        self.misrange: set[str] = set()
        self.trickle: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep the test output clean
                pass

            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                if self.path in server.corrupt:
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    if self.path in server.misrange:
                        start = 0
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if self.path in server.drop and not start:
                    server.drop.discard(self.path)
                    self.wfile.write(body[: len(body) // 2])
                    return  # HTTP/1.0: the connection closes short of Content-Length
                if self.path in server.trickle:
                    self.trickle(body[start:])
                    return
                self.wfile.write(body[start:])

            def trickle(self, body: bytes) -> None:
                end = time.monotonic() + server.TRICKLE_FOR_S
                for index in range(len(body)):
                    if time.monotonic() > end:
                        return
                    try:
                        self.wfile.write(body[index : index + 1])
                        self.wfile.flush()
                    except OSError:  # the client left
                        return
                    time.sleep(server.TRICKLE_S)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _served_packaging(packaging: Packaging, files: dict[str, bytes], prefixes: tuple[str, ...]) -> Packaging:
    """``packaging`` with each file at ``<prefix><file>`` and checked against the fixture's own
    MD5 and size, and its ``contents`` against the fixture files of the same names."""
    remotes = []
    for remote in packaging.remotes:
        body = files[remote.filename]
        urls = tuple(prefix + remote.filename for prefix in prefixes)
        remotes.append(Remote(remote.filename, urls, md5=hashlib.md5(body).hexdigest(), size=len(body)))
    contents = {placed: hashlib.md5(files[Path(placed).name]).hexdigest() for placed in packaging.contents}
    return replace(packaging, remotes=tuple(remotes), contents=contents)


def fixture_table(archives: dict[str, dict[str, bytes]], base: str, mirrors: tuple[str, ...] = ()) -> dict:
    """The shipped source table with each file served at ``<mirror or base><dataset>/<file>``."""
    table = {}
    for name, source in sources().items():
        prefixes = tuple(f"{prefix}{name}/" for prefix in (*mirrors, base))
        packagings = tuple(_served_packaging(p, archives[name], prefixes) for p in source.packagings)
        table[name] = replace(source, packagings=packagings, counts=FIXTURE_COUNTS[name])
    return table


def served(archives: dict[str, dict[str, bytes]]) -> dict[str, bytes]:
    return {f"/{name}/{file}": body for name, files in archives.items() for file, body in files.items()}


# ---------------------------------------------------------------- the command line


def use_table(monkeypatch, table: dict) -> None:
    """Point every reader of the source table at ``table``."""
    for module in (sources_module, prepare_module, cli):
        monkeypatch.setattr(module, "sources", lambda: table)


def run_with_notes(capsys, *args: str) -> tuple[int, list[str], str]:
    """``python -m cmrepro.data *args``: exit status, stdout lines (one a dataset) and stderr."""
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def run(capsys, *args: str) -> tuple[int, list[str]]:
    return run_with_notes(capsys, *args)[:2]


# ---------------------------------------------------------------- ImageNet

IMAGENET_WNIDS = ("n01440764", "n01443537", "n01484850")


def _meta_mat(path: Path) -> None:
    """The devkit's ``meta.mat``: a ``synsets`` struct array of the leaf classes (ILSVRC2012_ID
    1..3) and one inner node (num_children > 0) that torchvision must skip."""
    import numpy as np
    from scipy.io import savemat

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height"]
    rows = [
        (i + 1, wnid, f"thing {i}, item {i}", "a thing", 0, np.zeros((1, 0)), 0)
        for i, wnid in enumerate(IMAGENET_WNIDS)
    ]
    rows.append((1001, "n00001740", "entity", "the top", 3, np.array([[1, 2, 3]]), 19))
    synsets = np.zeros((len(rows), 1), dtype=[(f, object) for f in fields])
    for index, row in enumerate(rows):
        synsets[index, 0] = row
    savemat(str(path), {"synsets": synsets})


def _jpeg(path: Path, level: int) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8), (level, level, level)).save(path, format="JPEG")


def write_imagenet_archives(folder: Path, per_class: int = 2) -> dict[str, object]:
    """ILSVRC2012_img_train.tar (one ``<wnid>.tar`` per class), ILSVRC2012_img_val.tar (flat
    ``ILSVRC2012_val_%08d.JPEG``) and ILSVRC2012_devkit_t12.tar.gz (meta.mat and the val ground
    truth, one ILSVRC2012_ID a line). Returns ``files`` (part -> path) and ``val`` (wnid -> names)."""
    folder.mkdir(parents=True)
    work = folder / "work"
    train_tar = folder / "ILSVRC2012_img_train.tar"
    with tarfile.open(train_tar, "w") as outer:
        for index, wnid in enumerate(IMAGENET_WNIDS):
            (work / wnid).mkdir(parents=True)
            for i in range(per_class):
                _jpeg(work / wnid / f"{wnid}_{i}.JPEG", 40 * index)
            with tarfile.open(work / f"{wnid}.tar", "w") as inner:
                for image in sorted((work / wnid).iterdir()):
                    inner.add(image, arcname=image.name)
            outer.add(work / f"{wnid}.tar", arcname=f"{wnid}.tar")
    val: dict[str, list[str]] = {wnid: [] for wnid in IMAGENET_WNIDS}
    truth = []
    (work / "val").mkdir()
    for k in range(per_class * len(IMAGENET_WNIDS)):
        label = (k * 2 + 1) % len(IMAGENET_WNIDS)  # not in class order
        name = f"ILSVRC2012_val_{k + 1:08d}.JPEG"
        _jpeg(work / "val" / name, 40 * label)
        val[IMAGENET_WNIDS[label]].append(name)
        truth.append(f"{label + 1}\n")
    val_tar = folder / "ILSVRC2012_img_val.tar"
    with tarfile.open(val_tar, "w") as tar:
        for image in sorted((work / "val").iterdir()):
            tar.add(image, arcname=image.name)
    devkit = work / "ILSVRC2012_devkit_t12" / "data"
    devkit.mkdir(parents=True)
    _meta_mat(devkit / "meta.mat")
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(truth))
    devkit_tar = folder / "ILSVRC2012_devkit_t12.tar.gz"
    with tarfile.open(devkit_tar, "w:gz") as tar:
        tar.add(work / "ILSVRC2012_devkit_t12", arcname="ILSVRC2012_devkit_t12")
    shutil.rmtree(work)
    return {"files": {"train": train_tar, "val": val_tar, "devkit": devkit_tar}, "val": val}
