"""H200-hours of every full-scale make target from one reference step time (docs/gpu_hours.md).

Used by ``scripts/estimate_hours.py --reference`` for the targets no GPU bench file covers (the analysis
figures, reproduce-meg) and for every target beside the measured hours. The reference step is this
repository's own measurement: the CIFAR ResNet34 training step (Adam+CM, fp32, batch 64) that
``make device-checks`` timed on one H200 (scripts/bench_train.py), read from
results/bench/device/train_cuda.json (eager) and train_cuda_compiled.json
(trainer.compile=reduce-overhead). A run without those files stops with one line naming them.

A piece of GPU work (a training step, an evaluation batch) is estimated as the reference time times
its work relative to the reference step: the larger of its FLOP ratio and its operator-call ratio
(``scripts/step_costs.py``). A large convolutional step is bound by arithmetic, a small model's
(PTB's LSTM, TinyImageNet's CNN at batch 10) by the kernels it launches; the one reference step
calibrates both, and taking the larger never lets a tiny step cost less than its launches. A
depthwise network (EfficientNet-B0) is bound by memory instead: the memory-traffic ratio, which
the reference step (itself not memory-bound) over-prices, gives a second, upper figure
(``hours_traffic_bound``) beside the estimate.
Every run of a target is enumerated from its experiment file and sweep (conf/experiment): its
dataset, optimizer (SAM variants: two forward-backward passes per step), batch size, epochs, the
evaluation passes, and the sharpness and m-sharpness estimates its metrics config asks for
(their cost in training steps measured on the CPU: results/bench/metrics_cpu.json).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench_train import DATASETS, composed
from omegaconf import OmegaConf
from step_costs import StepCost, step_cost

from cmrepro.reproduce import EXPERIMENTS, experiments, sweep_choices

ROOT = Path(__file__).resolve().parents[1]
# The reference step: CIFAR100's ResNet34 step at batch 64, the one CIFAR step `make device-checks` times both
# eager and compiled, so the two figures are of one step. CIFAR10's step is the same network with a 10-class
# head: its eager time is a second timing of the reference step, and the faster of the two is "eager_low".
REFERENCE_DATASET, REFERENCE_BATCH = "cifar100", 64
CIFAR = ("cifar10", "cifar100")
DEVICE_BENCH = ROOT / "results" / "bench" / "device"
EAGER_BENCH = DEVICE_BENCH / "train_cuda.json"  # scripts/bench_train.py --device cuda
COMPILED_BENCH = DEVICE_BENCH / "train_cuda_compiled.json"  # ... --compile reduce-overhead
SAM_STEP_FACTOR = 2  # SAM's ascent pass: a second forward-backward per step
# Validation examples of one full pass (Table 6; PTB in tokens of ptb.valid.txt). A task stream is
# evaluated on every task's validation tenth after each task's last epoch (cmrepro/training/streams.py).
VALIDATION = {
    "cifar10": 10_000,
    "cifar100": 10_000,
    "imagenet": 50_000,
    "ptb": 73_760,
    "tinyimagenet": 10_000,
    "five_datasets": int(0.1 * (50_000 + 60_000 + 60_000 + 73_257) + 0.09 * 18_724),
}
TASKS = {"tinyimagenet": 40, "five_datasets": 5}
METRIC_BENCH = ROOT / "results" / "bench" / "metrics_cpu.json"
FIGURES = ("figure8", "figure9", "figure10", "figure19", "figure20")


class MissingReference(Exception):
    """The device benchmark the reference step is read from is absent, unreadable, or lacks the step."""


@dataclass(frozen=True)
class ReferenceStep:
    """Seconds of the reference step on the GPU, as measured, and the files they were read from."""

    seconds: dict[str, float]  # "eager": REFERENCE_DATASET's; "eager_low": the faster CIFAR one; "compiled"
    sources: list[dict]  # per bench file: its path, the GPU and torch it ran on


def _shown(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def read_bench(path: Path) -> dict:
    """A scripts/bench_train.py JSON, or MissingReference saying how to get it."""
    if not path.is_file():
        raise MissingReference(
            f"no {_shown(path)}: the reference step is measured on a GPU by `make device-checks` "
            "(results/bench/device/README.md)"
        )
    try:
        bench = json.loads(path.read_text())
    except ValueError as error:
        raise MissingReference(f"{_shown(path)} is not JSON ({error})") from None
    if not isinstance(bench, dict) or not {"meta", "results"} <= bench.keys():
        raise MissingReference(f"{_shown(path)} is not a scripts/bench_train.py file (no meta and results)")
    return bench


def measured_step(bench: dict, path: Path, dataset: str, compiled: bool) -> float:
    """Seconds per step of ``dataset``'s configuration at the reference batch, eager or compiled."""
    for row in bench["results"]:
        # Timed at the batch itself: bench_train.py scales a step timed at a smaller batch up to the config's.
        timed_at = (row.get("batch_size"), row.get("timed_batch_size", row.get("batch_size")))
        if row.get("dataset") == dataset and timed_at == (REFERENCE_BATCH, REFERENCE_BATCH):
            if bool(row.get("compile")) == compiled and "seconds_per_step" in row:
                return float(row["seconds_per_step"])
    kind = "compiled" if compiled else "eager"
    raise MissingReference(f"{_shown(path)} has no {kind} {dataset} step at batch {REFERENCE_BATCH}")


def reference_step(eager: Path | None = None, compiled: Path | None = None) -> ReferenceStep:
    """The reference step as the repository measured it (default: EAGER_BENCH, COMPILED_BENCH)."""
    eager, compiled = eager or EAGER_BENCH, compiled or COMPILED_BENCH
    eager_bench, compiled_bench = read_bench(eager), read_bench(compiled)
    cifar = {name: measured_step(eager_bench, eager, name, compiled=False) for name in CIFAR}
    seconds = {
        "eager": cifar[REFERENCE_DATASET],
        "eager_low": min(cifar.values()),
        "compiled": measured_step(compiled_bench, compiled, REFERENCE_DATASET, compiled=True),
    }
    sources = [
        {"file": _shown(path), "gpu": bench["meta"].get("gpu"), "torch": bench["meta"].get("torch")}
        for path, bench in ((eager, eager_bench), (compiled, compiled_bench))
    ]
    return ReferenceStep(seconds, sources)


def targets() -> dict[str, list[str]]:
    """Each full-scale make target and the experiments it runs (conf/experiment/<...>.yaml)."""
    found = {}
    for table in ("table2", "table3", "table4"):
        found[f"reproduce-{table}"] = experiments(table, "best")
        found[f"grid-{table}"] = experiments(table, "grid")
    found["reproduce-meg"] = experiments("appendix", "best")
    for figure in FIGURES:
        found[figure] = [f"{figure}/{path.stem}" for path in sorted((EXPERIMENTS / figure).glob("*.yaml"))]
    return found


@dataclass(frozen=True)
class Run:
    """What the estimate needs of one run of an experiment's sweep."""

    dataset: str
    optimizer: str
    batch_size: int
    epochs: int
    sharpness_estimates: int
    sharpness_products: int  # Hessian-vector products per estimate, at most: batches x max_iterations
    m_sharpness_estimates: int
    m_sharpness_batches: int


def estimates_due(epochs: int, every: int, enabled: bool) -> int:
    """A metric taken every ``every`` epochs and after the last (cmrepro.metrics.settings)."""
    if not enabled:
        return 0
    return epochs // every + (1 if epochs % every else 0)


def _metrics(experiment: dict) -> dict:
    """The experiment's resolved metrics config: conf/metrics/<its choice> with its own values merged."""
    choice = _default(experiment, "metrics", "default")
    layers = [OmegaConf.load(ROOT / "conf" / "metrics" / "default.yaml")]
    if choice != "default":
        layers.append(OmegaConf.load(ROOT / "conf" / "metrics" / f"{choice}.yaml"))
    merged = OmegaConf.merge(*[{k: v for k, v in layer.items() if k != "defaults"} for layer in layers])
    merged = OmegaConf.merge(merged, experiment.get("metrics") or {})
    return OmegaConf.to_container(OmegaConf.create({"metrics": merged}), resolve=True)["metrics"]


def _default(experiment: dict, group: str, fallback: str) -> str:
    for entry in experiment.get("defaults", []):
        if isinstance(entry, dict) and f"override /{group}" in entry:
            return entry[f"override /{group}"]
    return fallback


def runs_of(name: str) -> Iterator[Run]:
    """Every run of experiment ``name``'s sweep."""
    experiment = OmegaConf.to_container(OmegaConf.load(EXPERIMENTS / f"{name}.yaml"))
    dataset = _default(experiment, "dataset", "cifar100")
    base = config(dataset)
    metrics = _metrics(experiment)
    epochs = (experiment.get("trainer") or {}).get("epochs") or base["trainer"]["epochs"]
    choices = sweep_choices(name)
    keys = list(choices)
    for values in itertools.product(*choices.values()):
        chosen = dict(zip(keys, values))
        optimizer = chosen.get("optimizer") or _default(experiment, "optimizer", base["optimizer"]["name"])
        batch = int(chosen.get("dataset.batch_size") or (experiment.get("dataset") or {}).get("batch_size")
                    or base["dataset"]["batch_size"])  # fmt: skip
        sharpness, m_sharpness = metrics["sharpness"], metrics["m_sharpness"]
        yield Run(
            dataset, optimizer, batch, epochs,
            estimates_due(epochs, sharpness["every_n_epochs"], sharpness["enabled"]),
            sharpness["batches"] * sharpness["max_iterations"],
            estimates_due(epochs, m_sharpness["every_n_epochs"], m_sharpness["enabled"]),
            m_sharpness["batches"],
        )  # fmt: skip


@dataclass(frozen=True)
class MetricCosts:
    """Measured costs of the analysis metrics in training steps (results/bench/metrics_cpu.json)."""

    hvp_over_step: float  # one Hessian-vector product on one batch
    m_sharpness_over_step: float  # one m-sharpness estimate
    m_sharpness_batches: int  # ... over this many batches

    @classmethod
    def measured(cls, path: Path = METRIC_BENCH) -> MetricCosts:
        row = json.loads(path.read_text())["results"][0]
        step = row["seconds_per_train_step"]
        return cls(row["hvp_over_step"], row["seconds_per_m_sharpness"] / step, 4)


class Estimator:
    """Reference-seconds of each run: its time divided by the reference step's."""

    def __init__(self, costs: dict[str, StepCost], metric_costs: MetricCosts, traffic: bool = False):
        self.costs, self.metric_costs, self.traffic = costs, metric_costs, traffic
        self.reference = costs[REFERENCE_DATASET]

    def work(self, flops: float, calls: int, traffic: float) -> float:
        """In reference steps: the larger of the FLOP and operator-call ratios, and with ``self.traffic``
        the memory-traffic ratio too (the bound for memory-bound models, docs/gpu_hours.md)."""
        reference = self.reference
        ratios = [flops / reference.train_flops_at(REFERENCE_BATCH), calls / reference.train_calls]
        if self.traffic:
            ratios.append(traffic / reference.train_bytes_at(REFERENCE_BATCH))
        return max(ratios)

    def step(self, dataset: str, batch: int) -> float:
        cost = self.costs[dataset]
        return self.work(cost.train_flops_at(batch), cost.train_calls, cost.train_bytes_at(batch))

    def evaluation(self, dataset: str) -> float:
        """Reference steps of the evaluation passes of a whole run but its epochs' count: one full
        validation pass (supervised runs, once per epoch), or a stream's passes after each task."""
        cost = self.costs[dataset]
        examples = VALIDATION[dataset] * TASKS.get(dataset, 1)
        per_batch = cost.eval_batch_size * (base_bptt(dataset) or 1)
        return math.ceil(examples / per_batch) * self.work(cost.eval_flops, cost.eval_calls, cost.eval_bytes)

    def run(self, run: Run) -> float:
        step = self.step(run.dataset, run.batch_size)
        sam = SAM_STEP_FACTOR if "sam" in run.optimizer else 1
        epochs = run.epochs
        training = epochs * steps_per_epoch(run.dataset, run.batch_size) * step * sam
        passes = 1 if run.dataset in TASKS else epochs  # a stream evaluates after each task, not each epoch
        evaluation = passes * self.evaluation(run.dataset)
        m = self.metric_costs
        sharpness = run.sharpness_estimates * run.sharpness_products * m.hvp_over_step * step
        m_sharpness = (
            run.m_sharpness_estimates * m.m_sharpness_over_step * run.m_sharpness_batches / m.m_sharpness_batches * step
        )
        return training + evaluation + sharpness + m_sharpness


@functools.cache
def config(dataset: str) -> dict:
    """``dataset``'s resolved run config (composed once: Hydra takes a second or more)."""
    return composed(dataset)


def base_bptt(dataset: str) -> int | None:
    return config(dataset)["dataset"].get("bptt") if dataset == "ptb" else None


def steps_per_epoch(dataset: str, batch: int) -> int:
    """As scripts/bench_train.py counts them (for a stream: one epoch of every task), at ``batch``."""
    if dataset == "ptb":
        return DATASETS[dataset]["train"] // (batch * base_bptt(dataset))
    return -(-DATASETS[dataset]["train"] // batch)


def reference_units(estimator: Estimator, names: list[str]) -> dict[str, float]:
    """Reference steps of every run of the experiments ``names``, per dataset."""
    units: dict[str, float] = {}
    for name in names:
        for run in runs_of(name):
            units[run.dataset] = units.get(run.dataset, 0.0) + estimator.run(run)
    return units


def reference_rows(estimator: Estimator, bound: Estimator, seconds: dict[str, float]) -> list[dict]:
    """Rows as estimate_hours.py writes them: target, hours per dataset, total; at the reference step's
    eager time (``seconds["eager"]``), with the other times' hours beside (``hours_eager_low``,
    ``hours_compiled``), and ``bound``'s (memory traffic counted) at the eager time as
    ``hours_traffic_bound``."""
    rows = []
    for target, names in targets().items():
        row = {"target": target}
        units = reference_units(estimator, names)
        for mode, mode_seconds in seconds.items():
            suffix = "" if mode == "eager" else f"_{mode}"
            row[f"hours{suffix}"] = {dataset: value * mode_seconds / 3600 for dataset, value in units.items()}
            row[f"total{suffix}"] = sum(row[f"hours{suffix}"].values())
        bounded = reference_units(bound, names)
        row["hours_traffic_bound"] = {d: v * seconds["eager"] / 3600 for d, v in bounded.items()}
        row["total_traffic_bound"] = sum(row["hours_traffic_bound"].values())
        rows.append(row)
    return rows


def reference_estimate() -> dict:
    """The whole estimate as estimate_hours.py's JSON: meta (method, reference, costs) and rows.
    Reads the reference step first: without it there is nothing to price (MissingReference)."""
    reference = reference_step()
    costs = {name: step_cost(name) for name in DATASETS}
    metric_costs = MetricCosts.measured()
    estimator, bound = Estimator(costs, metric_costs), Estimator(costs, metric_costs, traffic=True)
    eager = reference.seconds["eager"]
    step_seconds = {name: estimator.step(name, cost.batch_size) * eager for name, cost in costs.items()}
    meta = {
        "method": "reference",
        # "reference", not "cuda": the results index takes a cuda source for a measurement of every target.
        "sources": [{"device": "reference", **source} for source in reference.sources],
        "reference": {"dataset": REFERENCE_DATASET, "batch_size": REFERENCE_BATCH, "seconds": reference.seconds},
        "metric_costs": vars(estimator.metric_costs),
        "costs": [vars(cost) for cost in costs.values()],
        "step_seconds": step_seconds,
    }
    return {"meta": meta, "rows": reference_rows(estimator, bound, reference.seconds)}
