"""Distributed data-parallel building blocks: the process environment, the sharded data, the
CPU sync BatchNorm, exact reductions, and a failed rank ending the job.

The multi-process tests start two gloo processes running this file as a script (``worker``),
with torchrun's variables set by hand, and compare what they computed with one process at the
same global batch.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from cmrepro.data.base import (
    DataBundle,
    EpochBatchSampler,
    SameEveryEpoch,
    Shard,
    ShuffledTrainLoader,
    eval_loader,
    shard_bundle,
)
from cmrepro.optim import create_optimizer
from cmrepro.training.distributed import (
    DistEnv,
    convert_sync_batchnorm,
    exit_on_failure,
    init_distributed,
    reduce_sums,
    shutdown_distributed,
    unwrap,
    wrap_model,
)
from cmrepro.training.steps import StepSettings, optimizer_step
from cmrepro.training.sync_batchnorm import CPUSyncBatchNorm

CPU = torch.device("cpu")

# ---------------------------------------------------------------- environment


TORCHRUN = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "29400"}
SLURM = {
    "SLURM_PROCID": "5",
    "SLURM_NTASKS": "8",
    "SLURM_STEP_NUM_TASKS": "8",
    "SLURM_LOCALID": "1",
    "SLURM_JOB_NODELIST": "gpu[07-10]",
    "SLURM_JOB_ID": "4123456",
}


def test_env_from_torchrun_variables():
    env = DistEnv.from_environ({**TORCHRUN, **SLURM})  # torchrun's variables win
    assert env == DistEnv(1, 2, 1, "torchrun", "10.0.0.5", 29400)
    assert env.enabled and not env.is_main and env.shard == Shard(1, 2)


def test_env_torchrun_group_of_one_is_enabled():
    env = DistEnv.from_environ({**TORCHRUN, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
    assert env.enabled and env.is_main


def test_env_from_slurm_variables():
    env = DistEnv.from_environ(SLURM, hostnames=lambda nodes: {"gpu[07-10]": ["gpu07", "gpu08"]}[nodes])
    assert env == DistEnv(5, 8, 1, "slurm", "gpu07", 20000 + 3456)


def test_env_slurm_master_from_environment():
    def no_lookup(nodes):
        raise AssertionError("MASTER_ADDR is set: no host lookup")

    env = DistEnv.from_environ({**SLURM, "MASTER_ADDR": "head", "MASTER_PORT": "1234"}, hostnames=no_lookup)
    assert (env.master_addr, env.master_port) == ("head", 1234)


def test_env_single_process_without_launcher_variables():
    for environ in ({}, {**SLURM, "SLURM_NTASKS": "1"}):
        env = DistEnv.from_environ(environ)
        assert env == DistEnv() and not env.enabled and env.is_main
    device = init_distributed(DistEnv(), torch.device("cpu"))
    assert device == CPU and not dist.is_initialized()
    model = nn.Linear(2, 2)
    assert wrap_model(model, DistEnv(), CPU) is model and unwrap(model) is model


@pytest.mark.parametrize(
    "environ, needle",
    [
        ({"RANK": "0", "WORLD_SIZE": "2"}, "LOCAL_RANK, MASTER_ADDR, MASTER_PORT not"),
        ({**TORCHRUN, "WORLD_SIZE": "two"}, "WORLD_SIZE='two' must be an integer"),
        ({**SLURM, "SLURM_JOB_NODELIST": ""}, "set MASTER_ADDR"),
    ],
)
def test_env_bad_variables_are_one_line_errors(environ, needle):
    with pytest.raises(ValueError, match="^[^\n]*$") as caught:
        DistEnv.from_environ(environ, hostnames=lambda nodes: ["x"])
    assert needle in str(caught.value)


def test_failure_helper_leaves_single_process_errors_alone():
    with pytest.raises(KeyError), exit_on_failure(DistEnv()):
        raise KeyError("x")


# ---------------------------------------------------------------- sharded data


@pytest.mark.parametrize("size, batch_size, world", [(21, 8, 2), (22, 9, 3), (24, 8, 4), (21, 8, 1)])
def test_shards_put_together_are_the_single_process_batches(size, batch_size, world):
    single = EpochBatchSampler(size, batch_size, seed=5)
    shards = [EpochBatchSampler(size, batch_size, seed=5, shard=Shard(r, world)) for r in range(world)]
    for epoch in (0, 3):
        for sampler in (single, *shards):
            sampler.set_epoch(epoch)
        per_rank = [list(s) for s in shards]
        assert all(len(s) == len(single) for s in shards)
        for step, batch in enumerate(single):
            parts = [batches[step] for batches in per_rank]
            assert sum(parts, []) == batch
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
            # Each example's share of the gradient averaged over the ranks, mean_r(w_r * mean of its part),
            # is its share in the single-process mean: w_r / (world * n_r) == 1 / n.
            shares = [s.loss_weight(step) / (world * len(part)) for s, part in zip(shards, parts)]
            assert shares == pytest.approx([1 / len(batch)] * world, rel=1e-15)


def test_loss_weights_of_a_last_unequal_batch():
    shards = [EpochBatchSampler(21, 8, seed=0, shard=Shard(r, 2)) for r in range(2)]
    assert [s.loss_weight(step) for s in shards for step in range(3)] == [1.0, 1.0, 1.2, 1.0, 1.0, 0.8]
    assert EpochBatchSampler(21, 8, seed=0).loss_weight(2) == 1.0


@pytest.mark.parametrize(
    "size, batch_size, world, needle",
    [
        (40, 10, 4, "dataset.batch_size=10 does not split across 4 processes"),
        (17, 8, 4, "holds 1, fewer than the 4 processes"),
    ],
)
def test_unsplittable_batches_are_one_line_errors(size, batch_size, world, needle):
    with pytest.raises(ValueError, match="^[^\n]*$") as caught:
        EpochBatchSampler(size, batch_size, seed=0, shard=Shard(0, world))
    assert needle in str(caught.value)


def indexed(count: int) -> TensorDataset:
    return TensorDataset(torch.arange(count), torch.zeros(count, dtype=torch.int64))


def test_sharded_train_loader_gives_the_parts_of_the_single_process_batches():
    single = ShuffledTrainLoader(indexed(21), 8, seed=2, options={})
    ranks = [single.sharded(Shard(r, 2)) for r in range(2)]
    batches = [x.tolist() for x, _ in single(1)]
    parts = [[x.tolist() for x, _ in loader(1)] for loader in ranks]
    assert [a + b for a, b in zip(*parts)] == batches
    assert [loader.loss_weight(2) for loader in ranks] == [1.2, 0.8]
    # Workers' augmentation seeds: unchanged in one process, different on each rank.
    seeds = {loader.worker_seed(1) for loader in ranks}
    assert len(seeds) == 2 and single.worker_seed(1) not in seeds


def test_sharded_eval_loaders_are_disjoint_and_cover_the_set():
    whole = eval_loader(indexed(7), 2, {})
    parts = [[x.tolist() for x, _ in whole.sharded(Shard(r, 3))] for r in range(3)]
    assert parts == [[[0, 1], [2]], [[3, 4]], [[5, 6]]]
    assert [x.tolist() for x, _ in eval_loader(indexed(7), 2, {}, Shard(2, 3))] == [[5, 6]]


def test_shard_bundle_splits_every_loader_and_refuses_fixed_order_data():
    bundle = DataBundle("classification", ShuffledTrainLoader(indexed(21), 8, 0, {}), eval_loader(indexed(7), 4, {}),
                        None, 3, None, (1,))  # fmt: skip
    sharded = shard_bundle(bundle, Shard(1, 2))
    assert [len(x) for x, _ in sharded.train(0)] == [4, 4, 2]
    assert [x.tolist() for x, _ in sharded.val] == [[4, 5, 6]]
    text = DataBundle("language_model", SameEveryEpoch([1]), [1], None, None, 10, ())
    with pytest.raises(ValueError, match="train, val loaders cannot be split across 2 processes"):
        shard_bundle(text, Shard(0, 2))


# ---------------------------------------------------------------- sync BatchNorm, one process


def test_cpu_sync_batchnorm_is_plain_batchnorm_without_a_group():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=None), nn.Flatten(), nn.BatchNorm1d(64))
    converted = convert_sync_batchnorm(nn.Sequential(*[m for m in model]), CPU)
    assert [type(m) for m in converted if isinstance(m, nn.modules.batchnorm._BatchNorm)] == [CPUSyncBatchNorm] * 2
    reference = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=None), nn.Flatten(), nn.BatchNorm1d(64))
    reference.load_state_dict(model.state_dict())
    x = torch.randn(5, 3, 6, 6)
    torch.testing.assert_close(converted(x), reference(x))
    torch.testing.assert_close(converted.state_dict(), reference.state_dict())


# ---------------------------------------------------------------- two processes

OPTIMIZERS = {
    "adam": {"lr": 1e-2},
    "adam_cm": {"lr": 1e-2, "topC": 3},
    "adam_sam_cm": {"lr": 1e-2, "topC": 3, "rho": 0.05},
}
TRAIN_SIZE, GLOBAL_BATCH, EPOCHS = 21, 8, 3  # steps of 8, 8, 5 examples: the last split 3 + 2


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False),  # no bias before BatchNorm: its gradient would be rounding noise
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 1, bias=False),
        nn.BatchNorm2d(4, momentum=None),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def tiny_images(count: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    return TensorDataset(
        torch.randn(count, 3, 6, 6, generator=generator), torch.randint(0, 3, (count,), generator=generator)
    )


def weighted_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, weight: float) -> torch.Tensor:
    return F.cross_entropy(model(x), y) * weight


def train_tiny(name: str, env: DistEnv) -> dict:
    """Train the tiny model with optimizer ``name`` at the global batch; one process when
    ``env`` is not enabled (plain BatchNorm, no wrapper)."""
    model = tiny_model()
    shard = env.shard if env.enabled else None
    loader = ShuffledTrainLoader(tiny_images(TRAIN_SIZE, seed=1), GLOBAL_BATCH, seed=4, options={}, shard=shard)
    if env.enabled:
        model = wrap_model(convert_sync_batchnorm(model, CPU), env, CPU)
    optimizer = create_optimizer(name, model.parameters(), model=model, **OPTIMIZERS[name])
    settings = StepSettings(CPU, "fp32", None)
    for epoch in range(EPOCHS):
        for step, (x, y) in enumerate(loader(epoch)):
            # The weight goes inside the loss closure, so that SAM's second pass gets it too.
            loss = partial(weighted_loss, model, x, y, loader.loss_weight(step))
            optimizer_step(loss, model, optimizer, settings)
    return {"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict()}


def evaluation_sums(env: DistEnv) -> torch.Tensor:
    """``[loss sum, correct, count]`` over this rank's part of a 7-example set, reduced over the ranks."""
    model = tiny_model().eval()
    shard = env.shard if env.enabled else None
    sums = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        for x, y in eval_loader(tiny_images(7, seed=2), 2, {}, shard):
            logits = model(x)
            sums += torch.stack(
                [F.cross_entropy(logits, y, reduction="sum").double(), (logits.argmax(1) == y).sum().double(),
                 torch.tensor(float(len(y)), dtype=torch.float64)]
            )  # fmt: skip
    return reduce_sums(sums)


def worker(out_dir: str) -> None:
    """One rank: train with each optimizer and evaluate, save the results; then rank 1 fails
    while rank 0 waits for it in a collective. (One launch for both tests: starting a process
    that imports torch and cmrepro takes seconds.)"""
    env = DistEnv.from_environ()
    # Long enough for a rank whose imports were slow on a busy machine to join.
    init_distributed(env, CPU, timeout=timedelta(seconds=60))
    with exit_on_failure(env):
        results = {name: train_tiny(name, env) for name in OPTIMIZERS}
        results["eval"] = evaluation_sums(env)
        torch.save(results, Path(out_dir) / f"rank{env.rank}.pt")
        dist.barrier()
        if env.rank == 1:
            raise ValueError("boom\non two lines")
        (Path(out_dir) / "failing").write_text(str(time.time()))
        dist.all_reduce(torch.ones(1))  # rank 0 waits here for a rank that is gone
    shutdown_distributed()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(out_dir: Path, world: int = 2) -> list[subprocess.Popen]:
    """``world`` processes running :func:`worker`, with the variables torchrun would set."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(world), OMP_NUM_THREADS="1")
    command = [sys.executable, __file__, str(out_dir)]
    return [
        subprocess.Popen(
            command, env={**environ, "RANK": str(r), "LOCAL_RANK": str(r)}, stderr=subprocess.PIPE, text=True
        )
        for r in range(world)
    ]


def finish(processes: list[subprocess.Popen], timeout: float) -> list[tuple[int, str]]:
    """``(exit code, stderr)`` of each process; a process still running after ``timeout``
    seconds is killed and fails the test."""
    results = []
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            _, stderr = process.communicate(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            pytest.fail(f"a rank still ran after {timeout} s")
        results.append((process.returncode, stderr))
    return results


def assert_same_state(a, b, path: str = "") -> None:
    """``a`` and ``b`` equal bit for bit (nested dicts, lists, tensors, numbers)."""
    assert type(a) is type(b), path
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same_state(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    else:
        assert a == b, path


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """The two ranks' run (:func:`worker`) and one process's results: ``(out_dir, [(exit code,
    stderr)] per rank, results of one process, the time both ranks had ended)``."""
    out_dir = tmp_path_factory.mktemp("ranks")
    ended = finish(launch(out_dir), timeout=240)
    ended_at = time.time()
    single = {name: train_tiny(name, DistEnv()) for name in OPTIMIZERS}
    single["eval"] = evaluation_sums(DistEnv())
    return out_dir, ended, single, ended_at


def test_two_ranks_train_as_one_process_at_the_global_batch(two_ranks):
    """DDP + CPU sync BatchNorm + the loss weight of the unequal last batch: parameters and
    BatchNorm statistics as one process's (1e-5), for Adam, Adam+CM and Adam+SAM+CM, and the
    optimizer state identical on both ranks; evaluation sums over disjoint parts exact."""
    out_dir, ended, single, _ = two_ranks
    for r, (_, stderr) in enumerate(ended):
        assert (out_dir / f"rank{r}.pt").exists(), stderr
    ranks = [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for name in OPTIMIZERS:
        torch.testing.assert_close(
            ranks[0][name]["model"], single[name]["model"], rtol=0, atol=1e-5, msg=partial("{}: {}".format, name)
        )
        assert_same_state(ranks[0][name]["model"], ranks[1][name]["model"], name)
        assert_same_state(ranks[0][name]["optimizer"], ranks[1][name]["optimizer"], name)
    for rank in ranks:
        torch.testing.assert_close(rank["eval"], single["eval"], rtol=1e-12, atol=0)
    assert single["eval"][2] == 7


def test_a_failing_rank_ends_every_rank_in_bounded_time(two_ranks):
    """Rank 1 raises; rank 0, waiting for it in an all-reduce, ends too, within 30 s."""
    out_dir, ((code0, err0), (code1, err1)), _, ended_at = two_ranks
    assert ended_at - float((out_dir / "failing").read_text()) < 30
    assert code1 == 1 and "cmrepro.train: rank 1 of 2 failed: ValueError: boom on two lines\n" in err1
    assert code0 != 0 and "cmrepro.train: rank 0 of 2 failed: " in err0


if __name__ == "__main__":
    worker(*sys.argv[1:])
