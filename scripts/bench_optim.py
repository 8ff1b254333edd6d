#!/usr/bin/env python
"""Time one optimizer step over the parameters of a CIFAR ResNet34.

21.3M parameters in 110 tensors (torchvision's ResNet34 with the CIFAR stem:
3x3 first convolution, no max-pool, 100 classes). Gradients are fixed random
tensors, so only the optimizer step is timed. Rows: torch.optim.Adam and SGD
(foreach, and fused where the device has it), every cmrepro optimizer eager
and fused (``fused=True``: one compiled kernel per bucket and step), SAM's
optimizer-side work around Adam+CM, and the naive per-parameter model of the
same semantics that the tests use as their oracle (tests/oracle.py), which
walks parameters one by one and reads keys on the host, as the official code
does. On CUDA, Adam+CM (eager and fused) is also timed replayed from a CUDA graph.

Each row reports its ratio to ``torch.optim.Adam(fused=True)`` and to its own
torch counterpart (Adam for the Adam variants, SGD with the same momentum for
the SGD variants, fused where the device has it, else foreach), all measured in
the same run, and, for fused rows, the one-time compile time in its own column
(paid in the warm-up steps, not in the timed ones).

Prints a table and writes JSON. Example:
    python scripts/bench_optim.py --device cpu --out results/bench/optim_cpu.json
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench_json import write_bench_json  # noqa: E402  (beside this script)

from cmrepro.optim import SAM, SGDCG, SGDCM, AdamCG, AdamCM, fused  # noqa: E402


def cifar_resnet34_params(device: torch.device) -> list[torch.Tensor]:
    model = torchvision.models.resnet34(num_classes=100)
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = torch.nn.Identity()
    params = [p.detach().to(device).requires_grad_() for p in model.parameters()]
    g = torch.Generator(device="cpu").manual_seed(0)
    for p in params:
        p.grad = (torch.randn(p.shape, generator=g) * 1e-2).to(device)
    return params


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def graph_step(step: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """Capture ``step`` (already warmed up) in a CUDA graph; return its replay."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(3):
            step()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def stream_bandwidth(device: torch.device, n: int, repeats: int) -> float:
    """Bytes per second of ``c = a + 2 b`` over ``n`` float32 (two reads, one write): the memory speed."""
    a, b, c = (torch.rand(n, device=device) for _ in range(3))
    times = time_steps(lambda: torch.add(a, b, alpha=2.0, out=c), device, 3, repeats)
    return 3 * 4 * n / (statistics.median(times) / 1e3)


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of persistent optimizer state, counting each storage once (cmrepro's are shared flat storages)."""
    storages = {}
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                storage = value.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def torch_has_fused(device: torch.device) -> bool:
    try:
        torch.optim.Adam([torch.zeros(1, device=device, requires_grad=True)], fused=True)
        return True
    except (RuntimeError, ValueError):
        return False


def candidates(device: torch.device) -> dict[str, Callable[[list[torch.Tensor]], Callable[[], object]]]:
    rows: dict[str, Callable] = {
        "torch Adam foreach": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True).step,
        "torch SGD foreach (momentum 0.9)": lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, foreach=True).step,
    }
    if torch_has_fused(device):
        rows["torch Adam fused"] = lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True).step
        rows["torch SGD fused (momentum 0.9)"] = lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, fused=True).step
    rows.update(
        {
            "AdamCM": lambda ps: AdamCM(ps, lr=1e-3).step,
            "AdamCM fused": lambda ps: AdamCM(ps, lr=1e-3, fused=True).step,
            "AdamCM bf16 buffer": lambda ps: AdamCM(ps, lr=1e-3, buffer_dtype=torch.bfloat16).step,
            "AdamCM fused bf16 buffer": lambda ps: AdamCM(ps, lr=1e-3, buffer_dtype=torch.bfloat16, fused=True).step,
            "AdamCM single-tensor": lambda ps: AdamCM(ps, lr=1e-3, foreach=False).step,
            "AdamCG": lambda ps: AdamCG(ps, lr=1e-3).step,
            "AdamCG fused": lambda ps: AdamCG(ps, lr=1e-3, fused=True).step,
            "SGDCM": lambda ps: SGDCM(ps, lr=1e-3).step,
            "SGDCM fused": lambda ps: SGDCM(ps, lr=1e-3, fused=True).step,
            "SGDCG": lambda ps: SGDCG(ps, lr=1e-3, momentum=0.9).step,
            "SGDCG fused": lambda ps: SGDCG(ps, lr=1e-3, momentum=0.9, fused=True).step,
            "SAM(AdamCM), no-op closure": sam_adam_cm,
            "naive per-parameter Adam+CM": naive_adam_cm,
        }
    )
    return rows


def counterpart(name: str, names: set[str]) -> str | None:
    """The torch row a row is compared with: Adam or SGD (momentum 0.9), fused if timed, else foreach."""
    family = "SGD" if "SGD" in name else "Adam"
    for kind in ("fused", "foreach"):
        row = f"torch {family} {kind}" + (" (momentum 0.9)" if family == "SGD" else "")
        if row in names:
            return row
    return None


def sam_adam_cm(params: list[torch.Tensor]) -> Callable[[], object]:
    """SAM's optimizer-side work (perturb, restore, base step); the closure's passes are not timed."""
    optimizer = SAM(params, AdamCM, lr=1e-3)
    return functools.partial(optimizer.step, lambda: None)


def naive_adam_cm(params: list[torch.Tensor]) -> Callable[[], object]:
    from oracle import Oracle

    group = dict(params=params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decay=0.7, topC=5)
    return Oracle("adam_cm", [group]).step


@dataclass
class Row:
    """One row, built and warmed up: its step, parameters, and the one-time costs."""

    name: str
    step: Callable[[], object]
    params: list[torch.Tensor]
    warmup_s: float
    compile_s: float | None

    def result(self, times: list[float]) -> dict:
        optimizer = getattr(getattr(self.step, "func", self.step), "__self__", None)
        per_param = None
        if isinstance(optimizer, torch.optim.Optimizer):
            per_param = state_bytes(optimizer) / sum(p.numel() for p in self.params)
        return dict(
            optimizer=self.name,
            median_ms=statistics.median(times),
            min_ms=min(times),
            state_bytes_per_param=per_param,
            compile_s=self.compile_s,
            warmup_s=self.warmup_s,
        )


def prepare(name: str, device: torch.device, warmup: int) -> Row:
    """Build a row and run its warm-up steps (state creation and, for fused rows, compilation)."""
    params = cifar_resnet34_params(device)
    step = candidates(device)[name](params)
    compiled_before = fused.compile_seconds()
    started = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(device)
    compile_s = fused.compile_seconds() - compiled_before
    ours_fused = "fused" in name and not name.startswith("torch")
    return Row(name, step, params, time.perf_counter() - started, compile_s if ours_fused else None)


def measure(name: str, device: torch.device, warmup: int, repeats: int) -> list[dict]:
    """Time one row; returns one result (two for Adam+CM on CUDA: eager and graph)."""
    row = prepare(name, device, warmup)
    times = time_steps(row.step, device, 0, max(3, repeats // 4) if name.startswith("naive") else repeats)
    results = [row.result(times)]
    if name in ("AdamCM", "AdamCM fused") and device.type == "cuda":
        replay = graph_step(row.step, device)
        times = time_steps(replay, device, 3, repeats)
        results.append(dict(optimizer=f"{name} CUDA graph", median_ms=statistics.median(times), min_ms=min(times)))
    return results


def measure_interleaved(names: list[str], device: torch.device, warmup: int, repeats: int) -> list[dict]:
    """Time rows in one process, one step of each in turn: on a shared machine, load that
    comes and goes then slows every row alike, so their ratios hold."""
    rows = [prepare(name, device, warmup) for name in names]
    times: dict[str, list[float]] = {row.name: [] for row in rows}
    for _ in range(repeats):
        for row in rows:
            times[row.name] += time_steps(row.step, device, 0, 1)
    return [row.result(times[row.name]) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=8, help="untimed steps (fill the buffers: > topC)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--only", nargs="*", help="substrings of the rows to run")
    parser.add_argument("--skip", nargs="*", default=[], help="substrings of the rows to leave out (after --only)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="time the rows (pick a few with --only) in one process, one step of each in turn: steadier ratios "
        "on a machine shared with other work",
    )
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: time one row, print JSON
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_optim: --device cuda but CUDA is not available")
    if args.row:
        print(json.dumps(measure(args.row, device, args.warmup, args.repeats)))
        return

    names = [name for name in candidates(device) if not args.only or any(s in name for s in args.only)]
    names = [name for name in names if not any(s in name for s in args.skip)]
    if args.interleave:
        results = measure_interleaved(names, device, args.warmup, args.repeats)
    else:
        results = measure_each_in_its_process(names, args)
    report(results, device, args)


def measure_each_in_its_process(names: list[str], args: argparse.Namespace) -> list[dict]:
    # Each row runs in a fresh process: the allocator state left by one
    # optimizer (glibc's mmap threshold, CUDA's cache) must not favour the next.
    results = []
    for name in names:
        command = [
            sys.executable,
            __file__,
            "--row",
            name,
            "--device",
            args.device,
            "--warmup",
            str(args.warmup),
            "--repeats",
            str(args.repeats),
        ]
        if args.threads:
            command += ["--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"bench_optim: row {name!r} failed:\n{done.stderr}")
        results += json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name:32s} {results[-1]['median_ms']:9.2f} ms", file=sys.stderr)
    return results


def report(results: list[dict], device: torch.device, args: argparse.Namespace) -> None:
    """Print the table (ratios to the torch rows of the same run) and write the JSON."""
    n_params = sum(p.numel() for p in cifar_resnet34_params(torch.device("cpu")))
    bandwidth = stream_bandwidth(device, n_params, args.repeats)
    base = {r["optimizer"]: r["median_ms"] for r in results}
    print(
        f"\none step over {n_params / 1e6:.1f}M parameters in 110 tensors on {device}"
        f" (torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}"
        f"{', rows interleaved in one process' if args.interleave else ', each row in its own process'})"
    )
    print(
        f"{'optimizer':32s} {'median ms':>10s} {'min ms':>9s} {'x Adam foreach':>15s} {'x Adam fused':>13s}"
        f" {'x torch twin':>13s}  {'torch twin':32s} {'compile s':>10s} {'passes':>7s} {'state B/param':>14s}"
    )

    def cell(value, fmt):
        return format(value, fmt) if value is not None else "-"

    for r in results:
        twin = counterpart(r["optimizer"], set(base))
        r["x_foreach_adam"] = r["median_ms"] / base["torch Adam foreach"] if "torch Adam foreach" in base else None
        r["x_fused_adam"] = r["median_ms"] / base["torch Adam fused"] if "torch Adam fused" in base else None
        r["torch_counterpart"] = twin
        r["x_counterpart"] = r["median_ms"] / base[twin] if twin else None
        # The step's time as full passes over 4-byte parameters at the measured memory speed.
        r["passes"] = r["median_ms"] / 1e3 * bandwidth / (4 * n_params)
        print(
            f"{r['optimizer']:32s} {r['median_ms']:10.2f} {r['min_ms']:9.2f} {cell(r['x_foreach_adam'], '.2f'):>15s}"
            f" {cell(r['x_fused_adam'], '.2f'):>13s} {cell(r['x_counterpart'], '.2f'):>13s}  {twin or '-':32s}"
            f" {cell(r.get('compile_s'), '.1f'):>10s} {r['passes']:7.1f}"
            f" {cell(r.get('state_bytes_per_param'), '.1f'):>14s}"
        )
    print(
        f"passes: time x {bandwidth / 1e9:.1f} GB/s (c = a + 2b over {n_params / 1e6:.1f}M float32 here) / 4 bytes x"
        " parameters; the least a step moves: Adam 7 (read g, p, m, v; write p, m, v), Adam+CM fused 12"
        " (also the running sum and one buffer row, read and written, and the gradient read once more for the key)"
    )
    if args.out:
        write_bench_json(
            args.out,
            device,
            results,
            n_params=n_params,
            n_tensors=110,
            repeats=args.repeats,
            interleaved=args.interleave,
            stream_bandwidth_bytes_per_s=bandwidth,
        )


if __name__ == "__main__":
    main()
