"""trainer.compile: compiled forward passes train like eager ones; checkpoints and metrics use the plain model.

torch.compile runs here with the aot_eager backend: it traces forward and backward
through Dynamo and AOTAutograd like the default backend, without generating
kernels (inductor takes ~45 s per tiny model on this 2-core CPU). The real
backend runs on a GPU in the cuda-marked test.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch._dynamo.utils import counters
from train_helpers import QUICK, QUICK_STREAM, compose_run

from cmrepro.training import ConfigError, check_config, train

IMAGES = [
    "dataset=synthetic_image",
    "optimizer=adam_sam_cm",
    *QUICK,
    "trainer.epochs=2",
    "trainer.lr_milestones=[]",
    "trainer.max_steps_per_epoch=2",
    "metrics.sharpness.enabled=true",
    "metrics.sharpness.batches=1",
    "metrics.sharpness.max_iterations=3",
    "metrics.m_sharpness.enabled=true",
    "metrics.m_sharpness.batches=1",
]
STREAM = [*QUICK_STREAM, "optimizer=adam_cm", "trainer.epochs=1"]


@pytest.fixture
def compiled_modes(monkeypatch) -> list:
    """torch.compile with the aot_eager backend; the list of modes it was asked for."""
    real, modes = torch.compile, []

    def aot_eager(module, mode=None):
        modes.append(mode)
        return real(module, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", aot_eager)
    torch._dynamo.reset()
    counters.clear()
    return modes


def _rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _close(a: dict, b: dict, keys) -> bool:
    return all(math.isclose(a[key], b[key], rel_tol=1e-4, abs_tol=1e-6) for key in keys)


@pytest.mark.parametrize("value", ["fast", 1, "inductor"])
def test_a_bad_compile_value_is_a_config_error(value, tmp_path):
    with pytest.raises(ConfigError, match="invalid trainer.compile: .*reduce-overhead"):
        check_config(compose_run([f"trainer.compile={value}"], tmp_path))


def test_a_compiled_run_matches_the_eager_run_and_writes_the_same_checkpoint(compiled_modes, tmp_path):
    eager = train(compose_run(IMAGES, tmp_path / "eager"), tmp_path / "eager")
    assert compiled_modes == []  # off by default
    compiled = train(
        compose_run([*IMAGES, "trainer.compile=reduce-overhead"], tmp_path / "compiled"), tmp_path / "compiled"
    )
    assert compiled_modes == ["reduce-overhead"] and counters["aot_autograd"]["ok"] > 0
    assert eager["status"] == compiled["status"] == "done"
    keys = ["train_loss", "val_loss", "val_accuracy", "sharpness", "m_sharpness", "distance"]
    for a, b in zip(_rows(tmp_path / "eager"), _rows(tmp_path / "compiled"), strict=True):
        assert _close(a, b, keys), (a, b)
    # The plain model is checkpointed: no "_orig_mod." prefix, so either kind of run resumes the other's.
    saved = [torch.load(tmp_path / run / "checkpoint.pt", weights_only=True)["model"] for run in ("eager", "compiled")]
    assert list(saved[0]) == list(saved[1])


def test_the_lstm_runs_eager_under_compile_and_says_so(compiled_modes, tmp_path, capsys):
    # Dynamo does not trace nn.LSTM: compiling would be a graph break and an eager run at a cost.
    text = [
        "dataset=synthetic_text",
        "optimizer=adam_sam_cm",
        "trainer.epochs=1",
        "trainer.lr_milestones=[]",
        "dataset.num_train_tokens=3000",
        "dataset.num_val_tokens=800",
        "trainer.progress=false",
    ]
    eager = train(compose_run(text, tmp_path / "eager"), tmp_path / "eager")
    compiled = train(compose_run([*text, "trainer.compile=true"], tmp_path / "compiled"), tmp_path / "compiled")
    assert compiled_modes == [] and "trainer.compile ignored" in capsys.readouterr().err
    assert compiled["final"]["val_perplexity"] == eager["final"]["val_perplexity"]


def test_a_compiled_stream_run_matches_the_eager_one(compiled_modes, tmp_path):
    eager = train(compose_run(STREAM, tmp_path / "eager"), tmp_path / "eager")
    compiled = train(compose_run([*STREAM, "trainer.compile=true"], tmp_path / "compiled"), tmp_path / "compiled")
    assert compiled_modes == ["default"]
    # One training graph and one evaluation graph for all three tasks: the heads' slicing is outside.
    assert counters["stats"]["unique_graphs"] == 2
    assert compiled["status"] == "done"
    for a, b in zip(eager["accuracy_matrix"], compiled["accuracy_matrix"], strict=True):
        assert a == pytest.approx(b, abs=1e-6)
    assert compiled["best"]["learning_accuracy"] == pytest.approx(eager["best"]["learning_accuracy"], abs=1e-6)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_compiled_cuda_run_with_cuda_graphs(tmp_path):
    overrides = [*IMAGES, "trainer.device=cuda", "trainer.compile=reduce-overhead"]
    result = train(compose_run(overrides, tmp_path), tmp_path)
    assert result["status"] == "done" and math.isfinite(result["final"]["sharpness"])
