"""The optimizer-only install: ``pip install cmrepro`` needs torch alone, and the commands say
which extra they need instead of failing inside an import.

The end-to-end test installs the package into a fresh virtual environment that sees torch and
nothing else. Installing torch there from a wheel would unpack gigabytes (this machine's build
pulls the CUDA libraries); instead a directory of symbolic links to the installed files of
torch's own dependency closure (read from this environment's metadata) is put on the fresh
environment's path by a ``.pth`` file: a second or two. pip then installs the package with its
dependencies and no index, so it succeeds only if torch is all the core asks for.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata as metadata
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cmrepro import suite_check
from cmrepro.suite_check import SUITE_MODULES, missing_suite_packages, require_suite, running_as_command

ROOT = Path(__file__).resolve().parents[1]
SUITE_ONLY = ("hydra", "omegaconf", "pandas", "wandb", "timm", "torchvision", "matplotlib")
COMMANDS = ("cmrepro.train", "cmrepro.reproduce", "cmrepro.data", "cmrepro.report", "cmrepro.toy")


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# ---------------------------------------------------------------- the declared extras


def test_the_core_depends_on_torch_alone_and_the_suite_extra_matches_the_check():
    from packaging.requirements import Requirement

    project = _pyproject()["project"]
    assert [Requirement(text).name for text in project["dependencies"]] == ["torch"]
    extras = project["optional-dependencies"]
    assert [Requirement(text).name for text in extras["suite"]] == list(SUITE_MODULES)
    assert {Requirement(text).name for text in extras["slurm"]} == {"cmrepro", "hydra-submitit-launcher"}
    assert Requirement(extras["all"][0]).extras == {"suite", "slurm", "dev"}
    assert project["license"] == "MIT"  # the SPDX form: the table form warns at every build


def test_the_optimizers_import_nothing_but_torch_and_the_standard_library():
    """In this full environment too: an optional ``try: import numpy`` would pass the fresh venv."""
    script = textwrap.dedent(
        """
        import sys
        import torch  # torch itself may import numpy and friends when they are there
        before = set(sys.modules)
        import cmrepro.optim
        tops = {name.split(".")[0] for name in set(sys.modules) - before}
        print(sorted(n for n in tops if n not in sys.stdlib_module_names and not n.startswith("_")))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "['cmrepro']", out.stdout + out.stderr


# ---------------------------------------------------------------- the check, with imports blocked


class _Blocker:
    """A meta-path finder that makes ``names`` (and their submodules) unimportable."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, name: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


@pytest.fixture
def block(monkeypatch):
    def blocked(*names: str) -> None:
        for name in list(sys.modules):  # find_spec answers from sys.modules for what is imported
            if name.split(".")[0] in names:
                monkeypatch.delitem(sys.modules, name)
        monkeypatch.setattr(sys, "meta_path", [_Blocker(set(names)), *sys.meta_path])

    return blocked


def test_a_blocked_suite_module_is_named_in_one_line_and_exit_2(block, capsys):
    assert missing_suite_packages() == []  # the test environment has the suite
    block("hydra", "hydra_plugins", "pandas")
    assert missing_suite_packages() == ["hydra-core", "hydra-joblib-launcher", "pandas"]
    with pytest.raises(SystemExit) as exit_info:
        require_suite("cmrepro.train")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "cmrepro.train: this command needs the suite: pip install 'cmrepro[suite]' "
        "(missing: hydra-core, hydra-joblib-launcher, pandas)\n"
    )


def test_a_long_list_of_missing_modules_is_cut_short():
    line = suite_check.suite_missing_line("cmrepro.toy", list(SUITE_MODULES))
    more = len(SUITE_MODULES) - 3
    assert line.endswith(f"(missing: torchvision, hydra-core, hydra-joblib-launcher and {more} more)")


def test_nothing_is_said_when_the_suite_is_there(capsys):
    require_suite("cmrepro.train")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("argv", "running"),
    [
        (["python", "-m", "cmrepro.report", "table2"], True),
        (["python", "-W", "error", "-X", "dev", "-m", "cmrepro.report.__main__"], True),
        (["python", "-mcmrepro.report"], True),
        (["python", "-m", "cmrepro.reproduce", "table2"], False),  # imports the report package
        (["python", "script.py", "-m", "cmrepro.report"], False),  # the script's own arguments
        (["python", "-c", "import cmrepro.report", "-m", "cmrepro.report"], False),
        (["python"], False),
    ],
)
def test_a_package_knows_when_it_runs_as_the_command(monkeypatch, argv, running):
    monkeypatch.setattr(sys, "orig_argv", argv)
    assert running_as_command("cmrepro.report") is running


def test_a_library_import_is_not_ended_by_the_check(block, monkeypatch):
    block("pandas")
    monkeypatch.setattr(sys, "orig_argv", ["python", "my_script.py"])
    suite_check.require_suite_when_run("cmrepro.report")  # no SystemExit: the ImportError is the caller's
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "cmrepro.report"])
    with pytest.raises(SystemExit):
        suite_check.require_suite_when_run("cmrepro.report")


# ---------------------------------------------------------------- a fresh venv with torch alone


def _requirement_closure(name: str) -> set[str]:
    """The distributions ``name`` needs here, with the extras its requirements ask for."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: dict[str, frozenset[str]] = {}
    pending = [(name, frozenset())]
    while pending:
        dist_name, extras = pending.pop()
        key = canonicalize_name(dist_name)
        if key in seen and extras <= seen[key]:
            continue
        seen[key] = seen.get(key, frozenset()) | extras
        for text in metadata.distribution(dist_name).requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or any(requirement.marker.evaluate({"extra": e}) for e in ("", *extras)):
                pending.append((requirement.name, frozenset(requirement.extras)))
    return set(seen)


def _link_installed_files(distributions: set[str], into: Path) -> None:
    """Symbolic links in ``into`` to every top-level file and folder the distributions installed."""
    into.mkdir()
    for name in sorted(distributions):
        dist = metadata.distribution(name)
        if dist.files is None:
            pytest.skip(f"{name} was installed without a RECORD of its files")
        for top in {file.parts[0] for file in dist.files or ()}:
            if top in ("..", "__pycache__") or top.endswith(".pth") or (into / top).exists():
                continue  # scripts outside site-packages; .pth files would not run from here anyway
            (into / top).symlink_to(Path(dist.locate_file(top)))


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_an_optimizer_only_install_in_a_fresh_venv_with_torch_alone(tmp_path):
    pytest.importorskip("packaging")
    torch_alone = _requirement_closure("torch")
    assert not torch_alone & {"hydra-core", "omegaconf", "pandas", "wandb", "timm"}, torch_alone

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    (site_packages,) = venv.glob("lib/python*/site-packages")
    _link_installed_files(torch_alone, tmp_path / "torch_alone")
    (site_packages / "torch_alone.pth").write_text(f"{tmp_path / 'torch_alone'}\n")

    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("cmrepro", "hydra_plugins"):  # hydra_plugins: the sweep's plugin ships too, inert without Hydra
        if (ROOT / package).is_dir():
            shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    # This environment's pip installs into the fresh one (which has none); no index: torch is
    # already there, so anything else the core asked for would fail the install. No isolation:
    # the build uses the setuptools that torch itself requires.
    install = _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--no-build-isolation", "."],
        cwd=source,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    for warning in ("project.license", "BuildBackendWarning", "SetuptoolsDeprecationWarning"):
        assert warning not in install.stdout + install.stderr

    script = textwrap.dedent(
        f"""
        import importlib.metadata, importlib.util
        import torch
        import cmrepro.optim
        from cmrepro.optim import AdamCM

        print(cmrepro.optim.__file__)
        model = torch.nn.Linear(3, 1)
        opt = AdamCM(model.parameters(), lr=0.1)
        before = model.weight.detach().clone()
        for _ in range(3):
            opt.zero_grad()
            model(torch.ones(4, 3)).pow(2).mean().backward()
            opt.step()
        print(bool((model.weight != before).all()))
        print([name for name in {SUITE_ONLY!r} if importlib.util.find_spec(name) is not None])
        print([r for r in importlib.metadata.requires("cmrepro") if "extra ==" not in r])
        """
    )
    out = _run([str(python), "-c", script], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    where, stepped, importable, core = out.stdout.splitlines()
    assert Path(where).is_relative_to(site_packages)  # the installed copy, not the checkout
    assert stepped == "True"
    assert importable == "[]"
    assert core.replace(" ", "") in ("['torch<2.15,>=2.7']", "['torch>=2.7,<2.15']")

    # Each command: one line naming the extra, exit 2, no traceback. Started together: most of
    # them end before importing torch.
    runs = {
        command: subprocess.Popen(
            [str(python), "-m", command], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for command in COMMANDS
    }
    for command, process in runs.items():
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 2, (command, stderr)
        assert stdout == ""
        assert stderr.startswith(f"{command}: this command needs the suite: pip install 'cmrepro[suite]' (missing: ")
        assert stderr.count("\n") == 1 and stderr.endswith(f"and {len(SUITE_MODULES) - 3} more)\n"), stderr
