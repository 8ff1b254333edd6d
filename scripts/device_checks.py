#!/usr/bin/env python3
"""Every check that needs a GPU, as one command that ends in time and brings everything back.

A lent GPU machine is held for minutes (at most 10 a command, 15 in all), starts bare, and
returns only what is written under ``$OUT``. So the checks run as numbered steps, most
informative first, each under a cap of its own (``timeout``: a hung NCCL rendezvous, loader
worker or compile is killed with its whole process group and the next step runs) and all
under one deadline (``DEVICE_CHECKS_DEADLINE``, 510 s: a step starts only with the time it may
use, and is cut at the deadline). After every step three files are up to date in ``$OUT``
(``results/bench/device/`` without it):

- ``log.txt``: everything every step printed;
- ``steps.tsv``: one row per step: step, seconds, exit code, a one-line result;
- ``results.tgz``: every JSON, junit XML and small log the steps wrote, re-packed after each
  step (no checkpoints), so a kill loses at most the step in flight.

The steps: (0) versions, the carried wheels (``.whl/``, made by scripts/device_wheels.sh)
installed with ``pip --no-index --target``, and ``import cmrepro.train`` (on failure the check
stops at once, exit 3); (1) the ``cuda``-marked tests; (2) a real CUDA run (on-device data,
sharpness and m-sharpness on), the same run under torchrun on one GPU, compared, and a run
stopped by SIGTERM mid-epoch and resumed, compared with the same run uninterrupted; (3) the
eager training-step benchmark of every dataset and the GPU-hour estimate from it; (4) compiled
and (5) fused step benchmarks (``TORCH_LOGS=perf_hints``); (6) the analysis metrics, the CIFAR
data path and the optimizer step benchmarks, as time allows.

``DEVICE_CHECKS_DEVICE=cpu`` runs the real commands on a CPU instead (a rehearsal: the
benchmarks are cut by their caps). ``DEVICE_CHECKS_DRY=1`` runs the same steps with stub
commands (on a CPU, in seconds), to test the deadline, the caps, the kill of a hung step and
the three files: ``DEVICE_CHECKS_HANG``
names steps (comma-separated) whose stub hangs; ``DEVICE_CHECKS_CAP`` caps every step at that
many seconds. ``DEVICE_CHECKS_ONLY`` (step names, comma-separated) runs those alone, after step 0's
installs: a follow-up in what is left of a GPU window. Exit status: 0 when every step passed,
1 when one failed or was cut, 3 when step 0 failed.

    python3 scripts/device_checks.py            # or: make device-checks
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_S = 510.0  # the device command's own limit is 560 s: keep 50 s for packing and the copy back
MIN_STEP_S = 10.0  # a step that would get less is skipped, not started
KILL_GRACE_S = 5.0  # SIGTERM, then this long, then SIGKILL
SITE = Path("/tmp/cmrepro_site")  # where the carried wheels are installed
PACKED_SUFFIXES = {".json", ".jsonl", ".xml", ".log", ".txt", ".tsv", ".yaml", ".csv"}
PACKED_MAX_BYTES = 2 * 2**20  # a larger file (a stray dump) stays out of results.tgz
ABORT_EXIT = 3


@dataclass
class Step:
    """One check: ``argv`` run from the repository root under ``cap_s`` seconds."""

    name: str
    group: int  # the order: 0 setup, 1 tests, 2 runs, 3 eager, 4 compiled, 5 fused, 6 the rest
    cap_s: float
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    essential: bool = False  # step 0: without it nothing else can run
    ok_codes: tuple[int, ...] = (0,)


@dataclass
class Outcome:
    name: str
    seconds: float
    exit_code: int | None  # None: not started
    result: str
    passed: bool = False


# ---------------------------------------------------------------- the steps


def training_run(
    python: str, run_dir: Path, *extra: str, launcher: list[str] | None = None, device: str = "cuda"
) -> list[str]:
    """A small real CUDA run: synthetic CIFAR-shaped images kept on the GPU, a half-width
    ResNet18, Adam+CM, two epochs of four steps, sharpness and m-sharpness after each epoch."""
    overrides = [
        "dataset=synthetic_image",
        "dataset.num_train=1024",
        "dataset.num_val=512",
        "dataset.batch_size=256",
        "dataset.on_device=true",
        "model.width=0.5",
        "optimizer=adam_cm",
        "metrics=analysis",
        "metrics.sharpness.every_n_epochs=1",
        "metrics.sharpness.batches=2",
        "metrics.sharpness.max_iterations=10",
        "metrics.m_sharpness.every_n_epochs=1",
        "trainer.epochs=2",
        "trainer.lr_milestones=[]",
        "trainer.progress=false",
        f"trainer.device={device}",
        "trainer.keep_checkpoint=false",
        f"run_dir={run_dir}",
        *extra,
    ]
    return [*(launcher or [python]), "-m", "cmrepro.train", *overrides]


def cuda_test_files() -> list[str]:
    """Every test file that marks a test ``cuda``, found now so that new ones are not forgotten."""
    return sorted(
        str(path.relative_to(ROOT)) for path in (ROOT / "tests").glob("test_*.py") if "mark.cuda" in path.read_text()
    )


def bash(script: str) -> list[str]:
    return ["bash", "-c", script]


def steps(python: str, results: Path, device: str = "cuda") -> list[Step]:
    """The checks in order. ``device``: cuda; cpu rehearses the same commands on a machine
    without a GPU (DEVICE_CHECKS_DEVICE=cpu), to catch a bad argument before a GPU is lent."""
    runs = results / "runs"
    run = partial(training_run, python, device=device)
    torchrun = [python, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1"]
    compare = [python, "scripts/compare_runs.py"]
    bench = [python, "scripts/bench_train.py", "--device", device]
    timeout = ["--timeout=120"] if _has_module("pytest_timeout") else []
    # Four processes share the GPU: the compile-heavy tests compile on the CPU side in parallel.
    parallel = ["-n", "4"] if _has_module("xdist") else []
    perf_hints = {"TORCH_LOGS": "perf_hints"}
    stop_mid_epoch = {"CMREPRO_SIGNAL_AT_STEP": "6:TERM"}  # epoch 2, step 2 of 4
    deterministic = "trainer.deterministic=true"
    return [
        Step("versions", 0, 60, bash(_VERSIONS.format(python=python))),
        Step("wheels", 0, 90, [python, "-c", _INSTALL_WHEELS.format(site=SITE)], essential=True),
        Step("import", 0, 60, [python, "-c", _IMPORT], essential=True),
        Step(
            "cuda_tests",
            1,
            240,
            [python, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "-o", "junit_family=xunit2"]
            + timeout
            + parallel
            + [f"--junitxml={results / 'cuda_tests.xml'}", *cuda_test_files()],
        ),
        Step("cuda_run", 2, 120, run(runs / "one_process")),
        # The comparisons run with deterministic kernels: two default runs differ already in one
        # process (cuDNN autotuning, atomics), and on the first H200 run a default one-process run
        # and a default torchrun run differed by up to 0.5% (val accuracy by one image of 512).
        Step("straight_deterministic", 2, 120, run(runs / "straight", deterministic)),
        Step("torchrun_one_gpu", 2, 120, run(runs / "torchrun", deterministic, launcher=torchrun)),
        Step(
            "compare_torchrun",
            2,
            20,
            [*compare, str(runs / "straight"), str(runs / "torchrun"), "--rtol", "1e-6"]
            + ["--out", str(results / "compare_torchrun.json")],
        ),
        Step(
            "sigterm_mid_epoch",
            2,
            120,
            run(runs / "resumed", deterministic),
            env=stop_mid_epoch,
            ok_codes=(143,),  # interrupted by SIGTERM, checkpointed inside epoch 2
        ),
        Step("resume", 2, 120, run(runs / "resumed", deterministic)),
        Step(
            "compare_resume",
            2,
            20,
            [*compare, str(runs / "straight"), str(runs / "resumed"), "--out", str(results / "compare_resume.json")],
        ),
        Step(
            "bench_eager",
            3,
            150,
            [*bench, "--steps", "20", "--imagenet-steps", "10", "--imagenet-batch", "256"]
            + ["--out", str(results / "train_cuda.json")],
        ),
        Step(
            "estimate_hours",
            3,
            30,
            [python, "scripts/estimate_hours.py", str(results / "train_cuda.json")]
            + ["--out", str(results / "hours_cuda.json")],
        ),
        Step(
            "bench_compiled",
            4,
            240,
            [*bench, "--steps", "20", "--imagenet-steps", "10", "--imagenet-batch", "256"]
            + ["--datasets", "cifar100", "imagenet", "--compile", "reduce-overhead"]
            + ["--out", str(results / "train_cuda_compiled.json")],
            env=perf_hints,
        ),
        Step(
            "bench_fused",
            5,
            150,
            [
                *bench,
                "--steps",
                "20",
                "--datasets",
                "cifar100",
                "--fused",
                "--out",
                str(results / "train_fused_cuda.json"),
            ],
            env=perf_hints,
        ),
        Step(
            "bench_metrics",
            6,
            120,
            [python, "scripts/bench_metrics.py", "--device", device, "--out", str(results / "metrics_cuda.json")],
        ),
        Step(
            "data_path",
            6,
            120,
            [*bench, "--data-path", "loader", "on_device", "--num-workers", "8"]
            + ["--out", str(results / "data_path_cuda.json")],
        ),
        Step(
            "bench_optim",
            6,
            240,
            [python, "scripts/bench_optim.py", "--device", device, "--out", str(results / "optim_cuda.json")],
        ),
    ]


_VERSIONS = """
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "GPUs visible: $(nvidia-smi -L 2>/dev/null | wc -l)"
{python} -c 'import sys, platform; print("python", sys.version.split()[0], platform.machine())'
{python} -c 'import torch, torchvision as tv; print("torch", torch.__version__, "cuda", torch.version.cuda, \
  "cudnn", torch.backends.cudnn.version(), "torchvision", tv.__version__, \
  "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)'
"""

# pip with no index and no dependencies: the carried wheels are exactly what the machine lacks.
_INSTALL_WHEELS = """
import glob, subprocess, sys
wheels = sorted(glob.glob(".whl/*.whl"))
if not wheels:
    print("no .whl/ carried: using the machine's packages as they are")
    sys.exit(0)
print("installing", len(wheels), "wheels:", " ".join(w.split("/")[-1] for w in wheels))
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
    "--no-compile", "--no-cache-dir", "--upgrade", "--target", "{site}", *wheels]))
"""

_IMPORT = """
import importlib, sys
missing = []
for name in ("hydra", "omegaconf", "efficientnet_pytorch", "timm", "pandas", "cmrepro.train", "cmrepro.optim"):
    try:
        importlib.import_module(name)
    except Exception as error:
        missing.append(f"{name} ({type(error).__name__}: {error})")
if missing:
    print("cannot import: " + "; ".join(missing) + " (bash scripts/device_wheels.sh, and carry .whl)")
    sys.exit(1)
print("import cmrepro.train: ok")
"""


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# ---------------------------------------------------------------- running them


def dry_run_steps(all_steps: list[Step], python: str, results: Path, hanging: set[str]) -> list[Step]:
    """The same steps with stub commands: each prints a line and writes a small JSON into
    ``results``; those named in ``hanging`` sleep until they are killed."""
    stubbed = []
    for step in all_steps:
        written = results / f"{step.name}.json"
        stub = (
            "import json, pathlib, sys, time\n"
            f"print('dry run: {step.name}', flush=True)\n"
            f"pathlib.Path({str(written)!r}).write_text(json.dumps({{'step': {step.name!r}}}))\n"
            + ("time.sleep(3600)\n" if step.name in hanging else "")
            + (f"sys.exit({step.ok_codes[0]})\n" if step.ok_codes[0] else "")
        )
        stubbed.append(
            Step(step.name, step.group, step.cap_s, [python, "-c", stub], step.env, step.essential, step.ok_codes)
        )
    return stubbed


class Log:
    """Everything printed, to stdout and to ``log.txt``, line by line."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("a", buffering=1)
        self.lock = threading.Lock()

    def write(self, line: str) -> None:
        with self.lock:
            sys.stdout.write(line)
            sys.stdout.flush()
            self.file.write(line)

    def say(self, message: str) -> None:
        self.write(f"device_checks: {message}\n")


def run_step(step: Step, seconds: float, env: dict[str, str], log: Log) -> tuple[int | None, str, bool]:
    """Run ``step`` for at most ``seconds``; ``(exit code, its last line of output, killed)``.

    It runs in a process group of its own, so that a kill takes its children too (torchrun's
    workers, loader workers, compile workers)."""
    process = subprocess.Popen(
        step.argv,
        cwd=ROOT,
        env={**env, **step.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    last = [""]

    def pump() -> None:
        for line in process.stdout:
            log.write(line)
            if line.strip():
                last[0] = line.strip()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    killed = False
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        killed = True
        _kill_group(process)
    reader.join(timeout=KILL_GRACE_S)
    return process.returncode, last[0], killed


def _kill_group(process: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=KILL_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def pack(results: Path, archive: Path) -> None:
    """``results``' small text files into ``archive``, written whole and renamed, so a kill
    mid-pack leaves the previous archive."""
    temporary = archive.with_name(archive.name + ".tmp")
    with tarfile.open(temporary, "w:gz") as tar:
        for path in sorted(results.rglob("*")):
            if path.is_file() and path.suffix in PACKED_SUFFIXES and path.stat().st_size <= PACKED_MAX_BYTES:
                tar.add(path, arcname=str(path.relative_to(results)))
    os.replace(temporary, archive)


def write_table(outcomes: list[Outcome], path: Path) -> None:
    lines = ["step\tseconds\texit\tresult"]
    for o in outcomes:
        code = "-" if o.exit_code is None else str(o.exit_code)
        result = " ".join(o.result.split())[:200]
        lines.append(f"{o.name}\t{o.seconds:.1f}\t{code}\t{result}")
    path.write_text("\n".join(lines) + "\n")


def step_environment(python: str) -> dict[str, str]:
    """What every step runs with: the carried packages first, full tracebacks, unbuffered output."""
    env = dict(os.environ)
    paths = [str(SITE), str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.update(CMREPRO_TRACEBACK="1", HYDRA_FULL_ERROR="1", PYTHONUNBUFFERED="1", PYTHON=python)
    return env


def main() -> int:
    started = time.monotonic()
    out = Path(os.environ.get("OUT") or ROOT / "results" / "bench" / "device")
    out.mkdir(parents=True, exist_ok=True)
    deadline = float(os.environ.get("DEVICE_CHECKS_DEADLINE", DEADLINE_S))
    cap = float(os.environ["DEVICE_CHECKS_CAP"]) if os.environ.get("DEVICE_CHECKS_CAP") else None
    dry = os.environ.get("DEVICE_CHECKS_DRY") == "1"
    python = os.environ.get("PYTHON") or sys.executable
    work = Path(tempfile.mkdtemp(prefix="cmrepro_device_checks_"))
    results = work / "results"
    results.mkdir()
    for name in ("log.txt", "steps.tsv", "results.tgz"):
        (out / name).unlink(missing_ok=True)
    log = Log(out / "log.txt")
    all_steps = steps(python, results, os.environ.get("DEVICE_CHECKS_DEVICE", "cuda"))
    only = set(filter(None, os.environ.get("DEVICE_CHECKS_ONLY", "").split(",")))
    if only:  # a follow-up on a machine still warm: these steps, after step 0's installs
        all_steps = [step for step in all_steps if step.essential or step.name in only]
    if dry:
        hanging = set(filter(None, os.environ.get("DEVICE_CHECKS_HANG", "").split(",")))
        all_steps = dry_run_steps(all_steps, python, results, hanging)
    log.say(
        f"{len(all_steps)} steps, deadline {deadline:.0f} s{' (dry run: stub commands)' if dry else ''}; "
        f"results in {out}. One GPU: multi-GPU training (NCCL across GPUs, SyncBatchNorm over several "
        "ranks, a dead rank's timeout) stays untested here."
    )
    env = step_environment(python)
    outcomes: list[Outcome] = []
    aborted = False
    for step in all_steps:
        left = deadline - (time.monotonic() - started)
        capped = step.cap_s if cap is None else min(step.cap_s, cap)
        budget = min(capped, left)
        if aborted or left < min(MIN_STEP_S, capped):
            why = "step 0 failed" if aborted else f"deadline: {max(left, 0):.0f} s left"
            outcomes.append(Outcome(step.name, 0.0, None, f"skipped ({why})"))
            continue
        log.say(f"== step {step.group} {step.name} (at most {budget:.0f} s)")
        began = time.monotonic()
        code, last, killed = run_step(step, budget, env, log)
        seconds = time.monotonic() - began
        if killed:
            result = f"killed after {seconds:.0f} s (cap {budget:.0f} s); last output: {last}"
            code = code if code is not None else -9
        else:
            result = last or "(no output)"
        passed = code in step.ok_codes and not killed
        outcomes.append(Outcome(step.name, seconds, code, result, passed))
        log.say(f"{step.name}: {'passed' if passed else 'FAILED'} in {seconds:.1f} s (exit {code})")
        if step.essential and not passed:
            aborted = True
        write_table(outcomes, out / "steps.tsv")
        shutil.copy(out / "steps.tsv", results / "steps.tsv")
        pack(results, out / "results.tgz")
    write_table(outcomes, out / "steps.tsv")
    shutil.copy(out / "steps.tsv", results / "steps.tsv")
    pack(results, out / "results.tgz")
    failed = [o.name for o in outcomes if not o.passed]
    total = time.monotonic() - started
    if aborted:
        log.say(f"step 0 failed after {total:.0f} s: nothing else could run ({', '.join(failed)})")
        return ABORT_EXIT
    if failed:
        log.say(f"{len(failed)} of {len(outcomes)} steps failed or were skipped in {total:.0f} s: {', '.join(failed)}")
        return 1
    log.say(f"all {len(outcomes)} steps passed in {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
