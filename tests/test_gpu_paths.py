"""The CUDA paths' logic, shown on a CPU (issue: the first GPU window): what a GPU run would
get wrong that no CPU run shows, each checked by the mechanism that prevents it."""

from __future__ import annotations

from pathlib import Path

import data_fixtures
import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils._python_dispatch import TorchDispatchMode
from train_helpers import compose_run, run_cli

from cmrepro.data import DataContext, build_data
from cmrepro.data.on_device import DeviceImages, Normalise, OnDeviceTrainLoader
from cmrepro.data.vision import CIFAR_FORMATS
from cmrepro.training import compiled as compiled_module
from cmrepro.training import distributed, train
from cmrepro.training.distributed import DistEnv, cuda_device


class _RecordDivisions(TorchDispatchMode):
    """The divisor of every aten.div call made inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.divisors: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket is torch.ops.aten.div:
            self.divisors.append(args[1])
        return func(*args, **(kwargs or {}))


def test_cuda_would_divide_by_255_as_a_multiplication_and_change_126_pixel_values() -> None:
    """Why the on-device images divide by a tensor: CUDA computes ``x / 255`` (a host scalar) as
    ``x * (1 / 255)``, which is another float32 for 126 of the 256 pixel values."""
    values = torch.arange(256, dtype=torch.float32)
    as_cuda_does = values * torch.tensor(1 / 255, dtype=torch.float32)
    assert int((values / 255 != as_cuda_does).sum()) == 126


def test_on_device_images_divide_by_a_tensor_on_their_own_device() -> None:
    """On the meta device (no data, any device's dispatch): the division's divisor is a tensor on
    the images' device, not a Python number, so CUDA makes it a true division as the CPU loader does."""
    images = DeviceImages(
        torch.zeros(4, 3, 8, 8, dtype=torch.uint8, device="meta"),
        torch.zeros(4, dtype=torch.int64, device="meta"),
        torch.device("meta"),
        Normalise((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
    )
    with _RecordDivisions() as record:
        images.batch(slice(0, 2))
    scale_division = record.divisors[0]
    assert isinstance(scale_division, torch.Tensor) and scale_division.device.type == "meta"


def test_on_device_images_are_the_loader_paths_bits_on_the_cpu() -> None:
    pixels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16).contiguous()
    normalise = Normalise((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261))
    images = DeviceImages(pixels, torch.zeros(1, dtype=torch.int64), torch.device("cpu"), normalise)
    mean = torch.tensor(normalise.mean).view(1, -1, 1, 1)
    std = torch.tensor(normalise.std).view(1, -1, 1, 1)
    expected = (pixels.float() / 255 - mean) / std  # torchvision's ToTensor then Normalize, on a CPU
    assert torch.equal(images.batch(slice(0, 1))[0], expected)


# ---------------------------------------------------------------- Slurm's GPUs and tasks

SLURM_STEP = {
    "SLURM_PROCID": "5",
    "SLURM_NTASKS": "8",
    "SLURM_STEP_NUM_TASKS": "8",
    "SLURM_LOCALID": "5",
    "SLURM_JOB_NODELIST": "gpu07",
    "SLURM_JOB_ID": "42",
}


def test_a_task_that_sees_one_gpu_uses_it_whatever_its_local_id() -> None:
    """srun --gpus-per-task=1 (or --gpu-bind): each task sees one GPU, SLURM_LOCALID goes to 7."""
    env = DistEnv.from_environ(SLURM_STEP, hostnames=lambda nodes: ["gpu07"])
    assert env.local_rank == 5
    assert cuda_device(env, visible=1) == torch.device("cuda", 0)
    assert cuda_device(env, visible=8) == torch.device("cuda", 5)


def test_a_local_rank_beyond_the_visible_gpus_is_one_line() -> None:
    env = DistEnv.from_environ(SLURM_STEP, hostnames=lambda nodes: ["gpu07"])
    with pytest.raises(ValueError, match="^[^\n]*$") as refused:
        cuda_device(env, visible=4)
    assert "local rank 5" in str(refused.value) and "sees 4 GPUs" in str(refused.value)


@pytest.mark.parametrize("step_tasks", [None, "1"])
def test_a_bare_python_in_a_job_of_several_tasks_runs_alone_and_says_so(step_tasks) -> None:
    """python inside sbatch without srun: SLURM_NTASKS=8, one process; a process group would wait
    dist_timeout_s for seven ranks that never start."""
    environ = {k: v for k, v in SLURM_STEP.items() if k != "SLURM_STEP_NUM_TASKS"}
    if step_tasks is not None:
        environ["SLURM_STEP_NUM_TASKS"] = step_tasks
    said: list[str] = []
    env = DistEnv.from_environ(environ, hostnames=lambda nodes: ["gpu07"], warn=said.append)
    assert env == DistEnv() and not env.enabled
    assert len(said) == 1 and "SLURM_NTASKS=8" in said[0] and "srun" in said[0]


def test_a_slurm_step_of_several_tasks_is_a_process_group_of_that_size() -> None:
    said: list[str] = []
    env = DistEnv.from_environ(SLURM_STEP, hostnames=lambda nodes: ["gpu07"], warn=said.append)
    assert (env.world_size, env.rank, env.launcher, said) == (8, 5, "slurm", [])


# ---------------------------------------------------------------- diagnosable first failures


class _Exited(Exception):
    pass


@pytest.mark.parametrize("asked", [False, True])
def test_a_failing_rank_prints_its_traceback_when_asked(monkeypatch, capsys, asked) -> None:
    def fake_exit(code: int) -> None:
        raise _Exited(code)

    monkeypatch.setattr(distributed.os, "_exit", fake_exit)
    if asked:
        monkeypatch.setenv("CMREPRO_TRACEBACK", "1")
    else:
        monkeypatch.delenv("CMREPRO_TRACEBACK", raising=False)
    env = DistEnv(rank=1, world_size=2, launcher="torchrun")

    def deep_failure() -> None:
        raise RuntimeError("NCCL error: unhandled cuda error")

    with pytest.raises(_Exited):
        with distributed.exit_on_failure(env):
            deep_failure()
    err = capsys.readouterr().err
    assert (
        err.rstrip().splitlines()[-1]
        == "cmrepro.train: rank 1 of 2 failed: RuntimeError: NCCL error: unhandled cuda error"
    )
    assert ("Traceback (most recent call last)" in err and "deep_failure" in err) is asked


# ---------------------------------------------------------------- compile with DDP


def test_in_a_process_group_the_ddp_wrapper_is_compiled_and_the_evaluator_apart(monkeypatch, tmp_path) -> None:
    compiled: list = []

    def record_compile(module, mode=None):
        compiled.append(module)
        return module  # the module itself: what is compiled is what matters here

    monkeypatch.setattr(compiled_module.torch, "compile", record_compile)
    model = nn.Linear(3, 2)
    runner, evaluator = compiled_module.training_modules(model, "default", DistEnv(), torch.device("cpu"))
    assert runner is evaluator and runner.eager is model and compiled == [model]  # one process: compiled once

    compiled.clear()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        env = DistEnv(launcher="torchrun")
        runner, evaluator = compiled_module.training_modules(model, "default", env, torch.device("cpu"))
        assert isinstance(runner.eager, DistributedDataParallel) and runner.eager.module is model
        assert compiled == [runner.eager, model] and evaluator.eager is model
    finally:
        dist.destroy_process_group()


def test_compile_with_sync_batchnorm_on_several_processes_is_refused_in_one_line() -> None:
    two = DistEnv(rank=0, world_size=2, launcher="torchrun")
    with pytest.raises(ValueError, match="^[^\n]*$") as refused:
        compiled_module.check_compile_in_process_group("reduce-overhead", True, two)
    assert "trainer.sync_batchnorm=false" in str(refused.value) and "2 processes" in str(refused.value)
    compiled_module.check_compile_in_process_group("reduce-overhead", False, two)
    compiled_module.check_compile_in_process_group(False, True, two)
    compiled_module.check_compile_in_process_group(True, True, DistEnv(launcher="torchrun"))  # a group of one


# ---------------------------------------------------------------- CIFAR kept on the GPU by default


def auto_cifar(root: Path) -> dict:
    return {"name": "cifar10", "data_dir": str(root), "batch_size": 16, "eval_batch_size": 8, "val_size": 20,
            "num_workers": 0, "on_device": "auto"}  # fmt: skip


def test_on_device_auto_keeps_cifar_on_the_host_for_a_cpu_run(tmp_path) -> None:
    data_fixtures.write_cifar10(tmp_path, n_train=40, n_test=8)
    data = build_data(auto_cifar(tmp_path), seed=0, context=DataContext(device=torch.device("cpu")))
    assert not isinstance(data.train, OnDeviceTrainLoader)
    # a dataset that cannot keep its data on the device is not refused under auto
    text = {"name": "synthetic_text", "on_device": "auto", "batch_size": 4, "bptt": 5}
    assert build_data(text, seed=0).train is not None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_device_auto_keeps_cifar_on_the_gpu_for_a_cuda_run(tmp_path) -> None:
    data_fixtures.write_cifar10(tmp_path, n_train=40, n_test=8)
    data = build_data(auto_cifar(tmp_path), seed=0, context=DataContext(device=torch.device("cuda")))
    assert isinstance(data.train, OnDeviceTrainLoader)
    x, y = next(iter(data.train(0)))
    assert x.is_cuda and y.is_cuda


# ---------------------------------------------------------------- one compilation per run


def graphs_compiled(overrides: list[str], run_dir: Path, monkeypatch) -> int:
    """How many graphs Dynamo hands its backend during a whole trainer.compile run."""
    graphs: list[int] = []

    def counting_backend(graph_module, example_inputs):
        graphs.append(len(example_inputs))
        return graph_module.forward  # run the traced graph as it is: only the count matters

    def compile_counting(module, mode=None):
        return REAL_COMPILE(module, backend=counting_backend)

    monkeypatch.setattr(compiled_module.torch, "compile", compile_counting)
    torch._dynamo.reset()
    train(compose_run([*TINY_COMPILED, *overrides], run_dir), run_dir)
    torch._dynamo.reset()
    return len(graphs)


REAL_COMPILE = torch.compile
TINY_COMPILED = ["dataset=synthetic_image", "model=lamaml_cnn", "model.width=0.125", "dataset.image_size=16",
                 "dataset.batch_size=16", "dataset.eval_batch_size=16", "trainer.epochs=2", "trainer.lr_milestones=[]",
                 "trainer.progress=false", "trainer.compile=true", "trainer.checkpoint=false"]  # fmt: skip


def test_uneven_last_batches_do_not_compile_the_model_again(tmp_path, monkeypatch) -> None:
    """40 training and 24 validation images in batches of 16: a last batch of 8 in training and in
    evaluation, every epoch. Two graphs, the training one and the evaluation one (without
    OneShapeCompiled, four: each mode's is compiled again for the batch of 8)."""
    assert graphs_compiled(["dataset.num_train=40", "dataset.num_val=24"], tmp_path, monkeypatch) == 2


# ---------------------------------------------------------------- the supported torch range


def test_the_declared_torch_range_holds_the_versions_it_was_tested_on() -> None:
    """pyproject's torch range covers this machine's build and the GPU machine's (2.11)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    torch_req = next(Requirement(d) for d in project["dependencies"] if Requirement(d).name == "torch")
    assert Version("2.11.0") in torch_req.specifier and Version(torch.__version__.split("+")[0]) in torch_req.specifier


# ---------------------------------------------------------------- on a GPU (make device-checks)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_compiled_ddp_step_on_the_gpu_slurm_gave_this_task(tmp_path) -> None:
    """One NCCL process whose Slurm local id (3) exceeds its one visible GPU's index: it trains on
    cuda:0; the compiled DDP runner's steps (a last batch of another size included, run eager)
    match the plain model's."""
    from cmrepro.models import ModelSpec, build_model

    torch.manual_seed(0)
    spec = ModelSpec("classification", num_classes=10, image_size=16)
    config = {"name": "lamaml_cnn", "channels": 32, "hidden": 64, "conv_layers": 2, "width": 1.0}
    env = DistEnv(rank=0, world_size=1, local_rank=3, launcher="torchrun")
    visible = torch.cuda.device_count()
    device = distributed.cuda_device(env, 1) if visible == 1 else torch.device("cuda", 0)
    assert device == torch.device("cuda", 0)
    torch.cuda.set_device(device)
    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = build_model(config, spec).to(device)
        twin = build_model(config, spec).to(device)
        twin.load_state_dict(model.state_dict())
        runner, _ = compiled_module.training_modules(model, "default", env, device)
        assert isinstance(runner.eager, DistributedDataParallel)
        for size in (16, 16, 8):
            x = torch.randn(size, 3, 16, 16, device=device)
            y = torch.randint(0, 10, (size,), device=device)
            for net, module in ((runner, model), (twin, twin)):
                module.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(net(x), y).backward()
            for a, b in zip(model.parameters(), twin.parameters()):
                torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-5)
        assert runner.batch_sizes == {True: 16}
    finally:
        dist.destroy_process_group()


def test_cmrepro_traceback_shows_what_lies_behind_a_one_line_error(tmp_path) -> None:
    """Unreadable data is one line; with CMREPRO_TRACEBACK=1 the traceback comes before it. (The
    files are all there, so the pre-launch check passes them and the run's reader finds them broken.)"""
    folder = tmp_path / "cifar10" / CIFAR_FORMATS["cifar10"].folder
    folder.mkdir(parents=True)
    for name in CIFAR_FORMATS["cifar10"].files:
        (folder / name).write_bytes(b"not a pickle")
    done = run_cli(
        ["dataset=cifar10", f"paths.data_dir={tmp_path}", f"paths.output_dir={tmp_path / 'runs'}"],
        env={"CMREPRO_TRACEBACK": "1"},
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert "Traceback (most recent call last)" in done.stderr and "DataError" in done.stderr
    assert lines[-1].startswith("cmrepro.train: cifar10:") and "python -m cmrepro.data prepare cifar10" in lines[-1]
