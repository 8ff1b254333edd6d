"""docs/extending.md: a new optimizer is one registration, reachable from a config file; run
directories are named after the optimizer config chosen, so two configs of one class never share
one; and the document's example trains end to end."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

import cmrepro.optim.factory as factory
from cmrepro.optim import (
    OPTIMIZER_NAMES,
    SAM,
    create_optimizer,
    optimizer_from_config,
    optimizer_names,
    register_optimizer,
)
from cmrepro.training import ConfigError, check_config

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
DOC = ROOT / "docs" / "extending.md"


@pytest.fixture(autouse=True)
def registry(monkeypatch):
    """Each test registers into a copy of the registry, and imports its modules afresh."""
    monkeypatch.setattr(factory, "_BASE_OPTIMIZERS", dict(factory._BASE_OPTIMIZERS))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("h4user"):
            del sys.modules[name]


class Sign(torch.optim.Optimizer):
    def __init__(self, params, lr=0.1):
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["lr"])
        return loss


def _params():
    return [torch.nn.Parameter(torch.ones(3))]


# ---- one registration ---------------------------------------------------------------------------


def test_a_decorated_class_is_known_to_create_optimizer_the_names_and_the_wrappers():
    names_before = len(OPTIMIZER_NAMES)
    assert "my_sign" not in optimizer_names()
    register_optimizer("my_sign")(Sign)
    assert "my_sign" in OPTIMIZER_NAMES and "my_sign" in optimizer_names()  # the view imported before sees it
    assert len(OPTIMIZER_NAMES) == names_before + 3  # my_sign, my_sam_sign, my_meg_sign
    assert type(create_optimizer("my_sign", _params(), lr=0.5)) is Sign
    sam = create_optimizer("my_sam_sign", _params(), lr=0.5, rho=0.1)
    assert isinstance(sam, SAM) and type(sam.base_optimizer) is Sign
    meg = create_optimizer("my_meg_sign", _params(), lr=0.5, gamma=0.1)
    assert type(meg.base_optimizer) is Sign
    with pytest.raises(ValueError, match="invalid rho for 'my_sign': only the SAM variants"):
        create_optimizer("my_sign", _params(), rho=0.1)


def test_a_class_one_does_not_own_is_registered_by_a_call_and_a_second_same_registration_is_a_no_op():
    assert register_optimizer("nadam", torch.optim.NAdam) is torch.optim.NAdam
    register_optimizer("nadam", torch.optim.NAdam)
    assert type(create_optimizer("nadam", _params(), lr=0.01)) is torch.optim.NAdam
    assert "nadam_sam" in OPTIMIZER_NAMES


def test_a_name_taken_by_another_class_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"optimizer name 'adam_cm' is taken by cmrepro\.optim\.adam_cm\.AdamCM; "):
        register_optimizer("adam_cm", Sign)
    assert type(create_optimizer("adam_cm", _params())) is not Sign


@pytest.mark.parametrize(
    "name, expected",
    [
        ("MyOpt", "must be lower-case words joined by '_'"),
        ("my-opt", "must be lower-case words joined by '_'"),
        ("adam_sam", "its second word 'sam' names the SAM wrapper"),
        ("x_meg_y", "its second word 'meg' names the MEG wrapper"),
    ],
)
def test_a_name_that_cannot_be_read_back_is_refused(name, expected):
    before = optimizer_names()
    with pytest.raises(ValueError, match=re.escape(expected)):
        register_optimizer(name, Sign)
    assert optimizer_names() == before


def test_the_packaged_names_are_the_papers():
    assert optimizer_names()[:7] == ("adam", "adamw", "sgd", "adam_cm", "adam_cg", "sgd_cm", "sgd_cg")
    assert {"adam_sam_cm", "adam_meg_cm", "sgd_sam_cg"} <= set(optimizer_names())


# ---- a user's module, named by the config ---------------------------------------------------------

USER_MODULE = '''
import torch
from cmrepro.optim import register_optimizer


@register_optimizer("{name}")
class Halver(torch.optim.SGD):
    """SGD at half the learning rate."""

    def __init__(self, params, lr=0.1, scale=0.5):
        super().__init__(params, lr=lr * scale)
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    package = tmp_path / "h4user"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "halver.py").write_text(USER_MODULE.format(name="halver"))
    (package / "silent.py").write_text("# registers nothing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "h4user.halver"


@pytest.fixture(scope="module")
def run_config() -> dict:
    """A composed, resolved run config whose optimizer section each test replaces."""
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name="config", overrides=["dataset=synthetic_image"])
    config = OmegaConf.to_container(cfg, resolve=False)
    config.pop("run_dir")  # needs Hydra's runtime
    return OmegaConf.to_container(OmegaConf.create(config), resolve=True)


def test_a_config_naming_the_module_builds_the_users_optimizer(user_module, run_config):
    section = {"name": "halver", "module": user_module, "lr": 0.2, "scale": 0.25, "weight_decay_form": "official"}
    assert "halver" not in optimizer_names()
    check_config({**run_config, "optimizer": section})  # imports the module before checking the name
    optimizer = optimizer_from_config(section, _params())
    assert type(optimizer).__name__ == "Halver" and optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    wrapped = optimizer_from_config({**section, "name": "halver_sam", "rho": 0.05}, _params())
    assert isinstance(wrapped, SAM)


def test_without_the_module_the_users_name_is_unknown(run_config):
    with pytest.raises(ConfigError, match=r"invalid optimizer\.name: 'halver' \(choose one of: adam, "):
        check_config({**run_config, "optimizer": {"name": "halver", "lr": 0.1}})


@pytest.mark.parametrize(
    "module, expected",
    [
        ("h4user.absent", r"invalid optimizer\.module: 'h4user\.absent' cannot be imported \(No module named"),
        ("h4user.silent", r"invalid optimizer\.name: 'halver' is not registered by module 'h4user\.silent'"),
    ],
)
def test_a_module_that_does_not_give_the_name_is_one_line(user_module, run_config, module, expected):
    with pytest.raises(ConfigError, match=expected) as refused:
        check_config({**run_config, "optimizer": {"name": "halver", "module": module, "lr": 0.1}})
    assert "\n" not in str(refused.value)


# ---- run directories by config choice -----------------------------------------------------------


def _dirs(conf_dir: Path, overrides: list[str]) -> tuple[str, str]:
    """The run directory and the sweep subdirectory the overrides compose to."""
    with initialize_config_dir(config_dir=str(conf_dir), version_base=None):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # what ${hydra:...} reads, as in a run
    return cfg.hydra.run.dir, cfg.hydra.sweep.subdir


def test_every_packaged_optimizer_config_keeps_its_run_directory():
    """Old runs do not move: the choice named the directory's optimizer part before, as the name
    did, because every file's stem is its name and no other config sets optimizer.name."""
    for path in sorted((CONF / "optimizer").glob("*.yaml")):
        assert yaml.safe_load(path.read_text())["name"] == path.stem, path
    for path in CONF.rglob("*.yaml"):
        if path.is_relative_to(CONF / "optimizer") or path.is_relative_to(CONF / "toy"):
            continue
        content = yaml.safe_load(path.read_text()) or {}
        params = (content.get("hydra") or {}).get("sweeper", {}).get("params") or {}
        assert "name" not in (content.get("optimizer") or {}), path
        assert "optimizer.name" not in params, path
    for option in ("adam", "adam_sam_cm", "sgd_cg"):
        run_dir, subdir = _dirs(CONF, [f"optimizer={option}", "dataset=synthetic_image", "seed=3"])
        assert run_dir == f"results/runs/synthetic_image/{option}/seed=3"
        assert subdir == f"synthetic_image/{option}/seed=3"
    assert _dirs(CONF, []) == ("results/runs/cifar100/adam_cm/", "cifar100/adam_cm/")  # the default config


@pytest.fixture
def conf_copy(tmp_path) -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    big = textwrap.dedent("""\
        defaults:
          - adam_cm
          - _self_
        topC: 20
        """)
    (conf / "optimizer" / "adam_cm_big_buffer.yaml").write_text(big)
    return conf


def test_two_configs_of_one_optimizer_class_get_run_directories_of_their_own(conf_copy):
    with initialize_config_dir(config_dir=str(conf_copy), version_base=None):
        big = compose(config_name="config", overrides=["optimizer=adam_cm_big_buffer"])
    assert big.optimizer.name == "adam_cm" and big.optimizer.topC == 20
    assert _dirs(conf_copy, ["optimizer=adam_cm_big_buffer"]) == (
        "results/runs/cifar100/adam_cm_big_buffer/",
        "cifar100/adam_cm_big_buffer/",
    )
    assert _dirs(conf_copy, ["optimizer=adam_cm"]) == ("results/runs/cifar100/adam_cm/", "cifar100/adam_cm/")


# ---- the document's example, end to end ---------------------------------------------------------


def _doc_files() -> dict[str, str]:
    """The document's code blocks that start with a ``# <path>`` line, by path."""
    blocks = re.findall(r"```(?:python|yaml)\n# (\S+)\n(.*?)```", DOC.read_text(), flags=re.S)
    return {path: text for path, text in blocks}


def _doc_block_with(marker: str) -> str:
    return next(b for b in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S) if marker in b)


def _doc_command() -> str:
    lines = DOC.read_text().splitlines()
    return next(line for line in lines if line.startswith("PYTHONPATH=. python -m cmrepro.train"))


def test_the_documents_registration_of_a_class_one_does_not_own_runs():
    exec(compile(_doc_block_with('register_optimizer("nadam"'), str(DOC), "exec"), {})
    assert type(create_optimizer("nadam", _params())) is torch.optim.NAdam


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """cmrepro, conf/ and Hydra's plugins copied (the entry point finds conf/ beside its package),
    with the document's files written into it."""
    root = tmp_path_factory.mktemp("checkout")
    for tree in ("cmrepro", "conf", "hydra_plugins"):  # the package, its configs, its Hydra plugins
        if (ROOT / tree).is_dir():
            shutil.copytree(ROOT / tree, root / tree, ignore=shutil.ignore_patterns("__pycache__"))
    files = _doc_files()
    assert {"mypkg/signum.py", "mypkg/__init__.py", "conf/optimizer/signum.yaml"} <= set(files)
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def _train(root: Path, command: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CMREPRO_DATA")}
    return subprocess.run(
        ["bash", "-c", command], cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_documents_optimizer_trains_from_its_config_file(checkout):
    command = _doc_command().replace(" python ", f" {sys.executable} ", 1) + " paths.output_dir=runs"
    done = _train(checkout, command)
    assert done.returncode == 0, done.stderr[-2000:]
    [result] = (checkout / "runs" / "synthetic_image" / "signum").glob("*/result.json")
    assert '"status": "done"' in result.read_text()
    assert "trainer.max_steps_per_epoch=2" in result.parent.name


def test_a_sweep_over_two_configs_of_one_class_writes_two_run_directories(checkout):
    (checkout / "conf/optimizer/adam_cm_big_buffer.yaml").write_text("defaults:\n  - adam_cm\n  - _self_\ntopC: 20\n")
    tiny = "dataset=synthetic_image model.width=0.125 trainer.epochs=1 'trainer.lr_milestones=[]' "
    tiny += "trainer.max_steps_per_epoch=1 dataset.num_val=16 paths.output_dir=sweep"
    done = _train(checkout, f"{sys.executable} -m cmrepro.train -m optimizer=adam_cm,adam_cm_big_buffer {tiny}")
    assert done.returncode == 0, done.stderr[-2000:]
    results = {p.parent.parent.name: p for p in (checkout / "sweep" / "synthetic_image").glob("*/*/result.json")}
    assert set(results) == {"adam_cm", "adam_cm_big_buffer"}
    assert '"topC": 20' in results["adam_cm_big_buffer"].read_text()
    assert '"topC": 5' in results["adam_cm"].read_text()
