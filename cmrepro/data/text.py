"""Word-level language modelling on Penn Treebank (Mikolov's ``ptb.*.txt`` files), and the
batching that turns any token stream into time-major BPTT windows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import torch

from .base import DEFAULT_CONTEXT, DataBundle, DataContext, SameEveryEpoch, data_error, prepare_command
from .settings import PtbSettings

PTB_URL = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"
PTB_FILES = {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"}
EOS = "<eos>"
UNK = "<unk>"


def _ptb_how(root: Path) -> str:
    hand = f"or copy data/ptb.train.txt, ptb.valid.txt and ptb.test.txt of {PTB_URL} into {root}"
    return f"{prepare_command('ptb', root)}, {hand}"


def check_ptb_files(root: Path) -> dict[str, Path]:
    """The three PTB files under ``root`` by split, else DataError."""
    paths = {split: root / name for split, name in PTB_FILES.items()}
    expected = f"{root} holding {', '.join(PTB_FILES.values())}"
    if not root.is_dir():
        found = "a file, not a directory" if root.exists() else "no such directory"
        raise data_error("ptb", expected, found, _ptb_how(root))
    missing = [path.name for path in paths.values() if not path.is_file()]
    if missing:
        found = f"a directory with {len(paths) - len(missing)} of {len(paths)} files (missing {', '.join(missing)})"
        raise data_error("ptb", expected, found, _ptb_how(root))
    return paths


def read_sentences(path: Path) -> list[list[str]]:
    """The words of each line of ``path``, each line ending with ``<eos>``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        found = f"an unreadable file ({type(exc).__name__}: {exc})"
        raise data_error("ptb", path, found, _ptb_how(path.parent)) from exc
    return [line.split() + [EOS] for line in text.splitlines()]


def build_vocabulary(sentences: Iterable[list[str]]) -> dict[str, int]:
    """Word -> id, ids in order of first appearance."""
    vocabulary: dict[str, int] = {}
    for sentence in sentences:
        for word in sentence:
            vocabulary.setdefault(word, len(vocabulary))
    return vocabulary


def encode(sentences: list[list[str]], vocabulary: Mapping[str, int], path: Path) -> torch.Tensor:
    """The ids of every word, in order, as one int64 stream; words missing from the
    vocabulary become ``<unk>`` when the vocabulary has it, else DataError."""
    unknown = vocabulary.get(UNK)
    ids: list[int] = []
    for line_number, sentence in enumerate(sentences, start=1):
        for word in sentence:
            index = vocabulary.get(word, unknown)
            if index is None:
                found = f"the word {word!r} on line {line_number}, absent from the training file, which has no {UNK}"
                expected = f"{path} using only words of the training file"
                raise data_error("ptb", expected, found, _ptb_how(path.parent))
            ids.append(index)
    return torch.tensor(ids, dtype=torch.int64)


def batchify(ids: torch.Tensor, columns: int) -> torch.Tensor:
    """The stream ``ids`` cut into ``columns`` contiguous pieces, one per column of a
    ``[len(ids) // columns, columns]`` tensor; the remainder is dropped."""
    rows = len(ids) // columns
    return ids[: rows * columns].view(columns, rows).t().contiguous()


class BpttBatches:
    """Windows of ``bptt`` rows of a batchified ``[rows, B]`` stream, in order:
    ``(x, y)`` with ``y`` the rows after ``x``'s. The last window may be shorter."""

    def __init__(self, data: torch.Tensor, bptt: int) -> None:
        self.data = data
        self.bptt = bptt

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # Rows up to the last but one can be inputs: the last row only serves as a target.
        for start in range(0, len(self.data) - 1, self.bptt):
            length = min(self.bptt, len(self.data) - 1 - start)
            yield self.data[start : start + length], self.data[start + 1 : start + 1 + length]

    def __len__(self) -> int:
        return -(-(len(self.data) - 1) // self.bptt)


def too_short(length: int, columns: int) -> str | None:
    """Why a stream of ``length`` tokens gives no BPTT window at ``columns`` columns, or None."""
    if length // columns >= 2:
        return None
    return f"{length} tokens, fewer than the {2 * columns} that batch size {columns} needs"


def build_ptb(cfg: Mapping, seed: int, context: DataContext = DEFAULT_CONTEXT) -> DataBundle:
    """Penn Treebank: vocabulary from the training file only; train, valid (and test when
    ``use_test``) as BPTT windows. ``seed`` is unused: text is read in order."""
    settings = PtbSettings.from_config(cfg)
    paths = check_ptb_files(settings.root)
    train_sentences = read_sentences(paths["train"])
    vocabulary = build_vocabulary(train_sentences)

    def split(name: str, columns: int) -> BpttBatches:
        sentences = train_sentences if name == "train" else read_sentences(paths[name])
        ids = encode(sentences, vocabulary, paths[name])
        shortage = too_short(len(ids), columns)
        if shortage:
            raise data_error("ptb", paths[name], shortage, f"use the full files of {PTB_URL} or a smaller batch size")
        return BpttBatches(batchify(ids, columns), settings.bptt)

    return DataBundle(
        task="language_model",
        train=SameEveryEpoch(split("train", settings.batch_size)),
        val=split("valid", settings.eval_batch_size),
        test=split("test", settings.eval_batch_size) if settings.use_test else None,
        num_classes=None,
        vocab_size=len(vocabulary),
        input_shape=(),
    )
