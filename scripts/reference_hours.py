"""H200-hours of every full-scale make target from one reference step time (docs/gpu_hours.md).

Used by ``scripts/estimate_hours.py --reference`` until a GPU bench file exists. The reference: a
CIFAR ResNet34 training step at batch 64 on one H200, 15.5-17 ms eager and 3.4 ms under
torch.compile(mode="reduce-overhead") (torch's own ResNet34 step, measured outside this project).

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
REFERENCE_DATASET, REFERENCE_BATCH = "cifar10", 64
# Seconds per reference step on one H200 (shared/DESIGN.md's performance notes): eager, its range, and compiled.
REFERENCE_SECONDS = {"eager": 0.017, "eager_low": 0.0155, "compiled": 0.0034}
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


def reference_rows(estimator: Estimator, bound: Estimator) -> list[dict]:
    """Rows as estimate_hours.py writes them: target, hours per dataset, total; at the eager reference
    time (17 ms, the conservative end), with the eager-low and compiled hours beside, and ``bound``'s
    (memory traffic counted) at 17 ms as ``hours_traffic_bound``."""
    rows = []
    for target, names in targets().items():
        row = {"target": target}
        units = reference_units(estimator, names)
        for mode, seconds in REFERENCE_SECONDS.items():
            suffix = "" if mode == "eager" else f"_{mode}"
            row[f"hours{suffix}"] = {dataset: value * seconds / 3600 for dataset, value in units.items()}
            row[f"total{suffix}"] = sum(row[f"hours{suffix}"].values())
        bounded = reference_units(bound, names)
        row["hours_traffic_bound"] = {d: v * REFERENCE_SECONDS["eager"] / 3600 for d, v in bounded.items()}
        row["total_traffic_bound"] = sum(row["hours_traffic_bound"].values())
        rows.append(row)
    return rows


def reference_estimate() -> dict:
    """The whole estimate as estimate_hours.py's JSON: meta (method, reference, costs) and rows."""
    costs = {name: step_cost(name) for name in DATASETS}
    metric_costs = MetricCosts.measured()
    estimator, bound = Estimator(costs, metric_costs), Estimator(costs, metric_costs, traffic=True)
    step_seconds = {
        name: estimator.step(name, cost.batch_size) * REFERENCE_SECONDS["eager"] for name, cost in costs.items()
    }
    meta = {
        "method": "reference",
        "sources": [{"device": "reference", "gpu": "NVIDIA H200 (reference step time, not measured by this project)"}],
        "reference": {"dataset": REFERENCE_DATASET, "batch_size": REFERENCE_BATCH, "seconds": REFERENCE_SECONDS},
        "metric_costs": vars(estimator.metric_costs),
        "costs": [vars(cost) for cost in costs.values()],
        "step_seconds": step_seconds,
    }
    return {"meta": meta, "rows": reference_rows(estimator, bound)}
