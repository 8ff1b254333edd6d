"""GPU-hours: the FLOP counts behind the reference estimate (scripts/step_costs.py), the reference step
read from the repository's own H200 measurement (results/bench/device/), the estimate's arithmetic
(scripts/reference_hours.py), estimate_hours.py's command lines, and what the results index says with a
reference estimate, a measured GPU file, or both."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import estimate_hours  # noqa: E402
import reference_hours as ref  # noqa: E402
from step_costs import StepCost, flop_counter  # noqa: E402

from cmrepro.report import index  # noqa: E402


def forward_and_step_flops(groups: int) -> tuple[int, int, int]:
    conv = torch.nn.Conv2d(16, 16, 3, padding=1, groups=groups).to("meta")
    x = torch.randn(4, 16, 8, 8, device="meta", requires_grad=True)
    with FlopCounterMode(display=False) as forward:
        conv(x)
    with FlopCounterMode(display=False) as torch_own:
        conv(x).sum().backward()
    with flop_counter() as ours:
        conv(x).sum().backward()
    return forward.get_total_flops(), torch_own.get_total_flops(), ours.get_total_flops()


def test_a_grouped_convolutions_backward_costs_twice_its_forward():
    forward, torch_own, ours = forward_and_step_flops(groups=1)
    assert ours == torch_own == 3 * forward  # ungrouped: torch's formula is right and ours agrees
    forward, torch_own, ours = forward_and_step_flops(groups=16)
    assert ours == 3 * forward and torch_own > 10 * forward  # depthwise: torch's own counts it 16 times over


def cost(dataset: str, flops: float, calls: int, traffic: float, batch: int = 64) -> StepCost:
    return StepCost(dataset, "m", batch, flops, calls, traffic, 256, flops, calls, traffic)


METRICS = ref.MetricCosts(hvp_over_step=3.0, m_sharpness_over_step=4.0, m_sharpness_batches=4)


REF = ref.REFERENCE_DATASET


def estimator(traffic: bool = False, **others: StepCost) -> ref.Estimator:
    return ref.Estimator({REF: cost(REF, 100.0, 50, 1000.0), **others}, METRICS, traffic)


def test_work_is_the_larger_of_the_flop_and_call_ratios_and_traffic_bounds_it():
    e = estimator(
        big=cost("big", 300.0, 50, 1000.0),  # arithmetic-bound: 3 reference steps
        tiny=cost("tiny", 1.0, 100, 10.0),  # launch-bound: twice the reference's calls
        wide=cost("wide", 100.0, 50, 5000.0),  # memory-bound
    )
    assert e.step(REF, 64) == 1.0  # the reference step is one reference step
    assert e.step(REF, 128) == 2.0  # twice the batch, twice the FLOPs and activations
    assert (e.step("big", 64), e.step("tiny", 64), e.step("wide", 64)) == (3.0, 2.0, 1.0)
    bound = estimator(True, wide=cost("wide", 100.0, 50, 5000.0))
    assert bound.step("wide", 64) == 5.0 and bound.step(REF, 64) == 1.0


def test_a_run_counts_sam_twice_evaluation_and_the_sharpness_estimates():
    e = estimator()
    plain = ref.Run(REF, "adam_cm", 64, epochs=10, sharpness_estimates=0, sharpness_products=0,
                    m_sharpness_estimates=0, m_sharpness_batches=4)  # fmt: skip
    steps = 10 * ref.steps_per_epoch(REF, 64)  # 625 per epoch
    evaluation = 10 * (10_000 // 256 + 1) * 1.0  # 40 batches of 256 a pass, one pass per epoch
    assert e.run(plain) == pytest.approx(steps + evaluation)
    sam = ref.Run(REF, "adam_sam_cm", 64, 10, 0, 0, 0, 4)
    assert e.run(sam) == pytest.approx(2 * steps + evaluation)
    sharp = ref.Run(REF, "adam", 64, 10, sharpness_estimates=2, sharpness_products=120,
                    m_sharpness_estimates=10, m_sharpness_batches=4)  # fmt: skip
    assert e.run(sharp) == pytest.approx(steps + evaluation + 2 * 120 * 3.0 + 10 * 4.0)


def test_metric_estimates_are_due_every_n_epochs_and_after_the_last():
    assert ref.estimates_due(100, 5, True) == 20 and ref.estimates_due(7, 5, True) == 2
    assert ref.estimates_due(100, 1, True) == 100 and ref.estimates_due(100, 5, False) == 0


def test_the_runs_of_an_analysis_figure_follow_its_sweep_and_metrics():
    runs = list(ref.runs_of("figure19/cifar10"))
    assert [r.optimizer for r in runs] == ["adam", "adam_cg", "adam_sam", "adam_cm"]
    assert {(r.epochs, r.m_sharpness_estimates, r.sharpness_estimates) for r in runs} == {(100, 100, 0)}
    batches = sorted({r.batch_size for r in ref.runs_of("figure10/cifar10_batch_size")})
    assert batches == [64, 128, 256, 512]
    figure9 = list(ref.runs_of("figure9/cifar10_adam_cm"))
    assert len(figure9) == 6 and figure9[0].sharpness_estimates == 10 and figure9[0].sharpness_products == 4 * 30
    assert set(ref.targets()) >= {"reproduce-table2", "grid-table4", "reproduce-meg", "figure8", "figure20"}


def test_estimate_hours_needs_bench_files_or_reference(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["estimate_hours.py"])
    with pytest.raises(SystemExit) as exit_:
        estimate_hours.main()
    assert exit_.value.code == 2 and "--reference" in capsys.readouterr().err


def test_the_device_checks_command_line_still_writes_its_json(monkeypatch, tmp_path, capsys):
    bench = tmp_path / "train_cuda.json"
    row = {"dataset": "cifar10", "seconds_per_step": 0.01, "steps_per_epoch": 625}
    bench.write_text(json.dumps({"meta": {"device": "cuda", "gpu": "NVIDIA H200"}, "results": [row]}))
    out = tmp_path / "hours_cuda.json"
    monkeypatch.setattr(sys, "argv", ["estimate_hours.py", str(bench), "--out", str(out)])
    estimate_hours.main()
    written = json.loads(out.read_text())
    table2 = next(r for r in written["rows"] if r["target"] == "reproduce-table2")
    assert set(written) == {"meta", "rows"} and table2["hours"]["cifar10"] > 0


# ---- the reference step: the repository's own H200 measurement ------------------------------------
def bench_row(dataset: str, seconds: float, compile_mode: str | None = None, batch: int = 64) -> dict:
    return {"dataset": dataset, "compile": compile_mode, "batch_size": batch, "timed_batch_size": batch,
            "seconds_per_step": seconds}  # fmt: skip


def write_bench(path: Path, *rows: dict) -> Path:
    path.write_text(json.dumps({"meta": {"device": "cuda", "gpu": "NVIDIA H200", "torch": "2.11"}, "results": rows}))
    return path


def test_the_reference_step_is_read_from_the_device_checks_bench_files():
    measured = {}
    for name in ("train_cuda.json", "train_cuda_compiled.json"):
        for row in json.loads((ROOT / "results" / "bench" / "device" / name).read_text())["results"]:
            measured[(row["dataset"], row["compile"])] = row["seconds_per_step"]
    step = ref.reference_step()
    assert step.seconds == {
        "eager": measured[("cifar100", None)],  # the CIFAR step timed both eager and compiled
        "eager_low": min(measured[("cifar10", None)], measured[("cifar100", None)]),
        "compiled": measured[("cifar100", "reduce-overhead")],
    }
    assert [s["file"] for s in step.sources] == [
        "results/bench/device/train_cuda.json", "results/bench/device/train_cuda_compiled.json"
    ]  # fmt: skip
    assert {s["gpu"] for s in step.sources} == {"NVIDIA H200"}


def test_the_reference_step_follows_whatever_the_bench_files_say(tmp_path):
    eager = write_bench(tmp_path / "eager.json", bench_row("imagenet", 0.5), bench_row("cifar10", 0.009),
                        bench_row("cifar100", 0.02, batch=128), bench_row("cifar100", 0.010))  # fmt: skip
    compiled = write_bench(
        tmp_path / "compiled.json", bench_row("cifar100", 0.011), bench_row("cifar100", 0.004, "reduce-overhead")
    )
    step = ref.reference_step(eager, compiled)
    assert step.seconds == {"eager": 0.010, "eager_low": 0.009, "compiled": 0.004}


def test_a_missing_or_incomplete_bench_file_stops_with_one_line(tmp_path, monkeypatch, capsys):
    eager = write_bench(tmp_path / "eager.json", bench_row("cifar10", 0.009), bench_row("cifar100", 0.010))
    eager_only = write_bench(tmp_path / "compiled.json", bench_row("cifar100", 0.010))
    with pytest.raises(ref.MissingReference, match=r"compiled.json has no compiled cifar100 step at batch 64$"):
        ref.reference_step(eager, eager_only)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ref.MissingReference, match="broken.json is not JSON"):
        ref.reference_step(eager, tmp_path / "broken.json")
    monkeypatch.setattr(ref, "EAGER_BENCH", tmp_path / "absent.json")
    monkeypatch.setattr(sys, "argv", ["estimate_hours.py", "--reference"])
    with pytest.raises(SystemExit) as exit_:
        estimate_hours.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert err.startswith("estimate_hours.py: error: no ") and "absent.json" in err and "make device-checks" in err


def test_each_total_is_priced_at_its_measured_step_time(monkeypatch):
    monkeypatch.setattr(ref, "targets", lambda: {"figure20": ["figure20/cifar10_adam"]})
    units = {False: {"cifar10": 3.6e6}, True: {"cifar10": 7.2e6}}  # reference steps (traffic-priced: twice)
    monkeypatch.setattr(ref, "reference_units", lambda e, names: units[e.traffic])
    seconds = {"eager": 0.0135, "eager_low": 0.0129, "compiled": 0.0087}  # 3.6e6 steps: hours = 1000 x seconds
    (row,) = ref.reference_rows(estimator(), estimator(True), seconds)
    assert row["hours"] == {"cifar10": pytest.approx(13.5)} and row["total"] == pytest.approx(13.5)
    assert row["total_eager_low"] == pytest.approx(12.9) and row["total_compiled"] == pytest.approx(8.7)
    assert row["total_traffic_bound"] == pytest.approx(27.0)  # at the eager time


def test_the_committed_estimate_is_priced_at_the_committed_measurement():
    """results/bench/hours_reference.json is regenerated whenever results/bench/device/ is re-measured."""
    committed = json.loads((ROOT / "results" / "bench" / "hours_reference.json").read_text())["meta"]
    assert committed["reference"]["seconds"] == ref.reference_step().seconds
    assert committed["reference"]["dataset"] == ref.REFERENCE_DATASET
    assert {s["device"] for s in committed["sources"]} == {"reference"}  # never read by the index as measured


# ---- the results index -------------------------------------------------------------------------
def write_hours(root: Path, name: str, rows: dict[str, dict[str, float]], device: str, method: str | None = None):
    meta = {"sources": [{"device": device, "gpu": "NVIDIA H200" if device == "cuda" else None}]}
    if method:
        meta["method"] = method
    data = {"meta": meta, "rows": [{"target": t, "hours": h, "total": sum(h.values())} for t, h in rows.items()]}
    path = root / "results" / "bench" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_the_index_shows_the_reference_estimate_until_a_gpu_file_replaces_it(tmp_path):
    write_hours(tmp_path, "hours_reference.json", {"reproduce-table2": {"cifar10": 11.0, "imagenet": 190.0},
                                                   "figure8": {"cifar100": 7.1}}, "reference", "reference")  # fmt: skip
    estimates = index.read_hour_estimates(tmp_path)
    status = index.gpu_status("reproduce-table2", estimates)
    assert status.startswith(
        "needs GPUs (~201 H200-hours (estimated: the H200 CIFAR ResNet34 step `make device-checks`"
    )
    write_hours(tmp_path, "device/hours_cuda.json", {"reproduce-table2": {"cifar10": 9.0, "imagenet": float("nan")}},
                "cuda")  # fmt: skip
    estimates = index.read_hour_estimates(tmp_path)
    status = index.gpu_status("reproduce-table2", estimates)
    assert status.startswith("needs GPUs (about 199 GPU-hours on NVIDIA H200, results/bench/device/hours_cuda.json")
    assert "imagenet from the reference estimate" in status
    assert index.gpu_status("figure8", estimates).startswith("needs GPUs (~7.1 H200-hours (estimated")


def test_the_index_never_shows_smoke_verdicts_as_results(tmp_path):
    path = tmp_path / "results" / "claims" / "section5.csv"
    path.parent.mkdir(parents=True)
    smoke = "id,artefact,verdict,scale\nt2.a,Table 2,supported,smoke\n"  # as if copied where full-scale ones go
    path.write_text(smoke)
    table2 = next(a for a in index.ARTEFACTS if a.name == "Table 2")
    assert "claims" not in index.status(table2, None, [], tmp_path)
    path.write_text(smoke + "t2.b,Table 2,inconclusive,full\nt2.c,Table 2,not run,\n")
    assert "full-scale claims: 1 inconclusive · needs GPUs" in index.status(table2, None, [], tmp_path)


def test_the_index_counts_full_scale_cells_against_the_paper_and_never_smoke_ones(tmp_path):
    path = tmp_path / "results" / "tables" / "table3.csv"
    path.parent.mkdir(parents=True)
    head = "dataset,optimizer,metric,scale,paper_verdict\n"
    path.write_text(head + "cifar10,sgd,val_accuracy,smoke,differs (smoke: stand-in data, not evidence)\n")
    table3 = next(a for a in index.ARTEFACTS if a.name == "Table 3")
    assert "cells" not in index.status(table3, None, [], tmp_path)
    rows = "cifar10,sgd,val_accuracy,full,matches the paper\ncifar10,sgd,speedup,full,\n"
    rows += "cifar100,sgd,val_accuracy,full,differs\n"
    path.write_text(head + rows)
    assert index.status(table3, None, [], tmp_path).startswith("cells: 1 matches the paper, 1 differs · needs GPUs")
