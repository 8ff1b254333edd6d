"""``python -m cmrepro.train ...`` for the tests, in a fresh process that starts warm.

A command-line test needs a process of its own: its exit code, its stdout and stderr, its
signals, its module state (Hydra's global state, the ledger of a sweep) are what it tests. What
it does not test is the 3-4 s every such process spends importing torch, torch._dynamo (the
first optimizer imports it), timm and Hydra: about fifty such commands in the suite spent three minutes of CPU on it.

So each test process keeps one *warm* interpreter, started once with those imports done and
nothing else (no tensor op has run: OpenMP's threads start in each child, not before the fork),
which forks one child per command. The child takes the command's working directory, environment,
stdin (/dev/null) and output files, reseeds ``random``, and runs ``cmrepro.train`` as ``python
-m`` does (``runpy``, as ``__main__``); it ends the way an interpreter ends (``SystemExit``,
atexit handlers, a traceback and exit 1 on an uncaught error), and its parent reports the exit
code as ``subprocess`` does (``-9`` for SIGKILL).

An uncaught error's traceback shows the warm interpreter's frames (``<string>``, ``runpy``)
above the command's own, where ``python -m`` shows ``runpy``'s alone; the lines from the
command's module down are the same (tests/test_warm_python.py compares the two).

What a fork could get wrong is whatever is decided while importing. Environment variables read
then (``OMP_NUM_THREADS``, ``PYTHON*``): the warm interpreter is started with the command's
environment, and started again when a command's differs (RUNTIME_VARIABLES aside). Warnings
printed while importing would go to the warm interpreter's stderr, not the command's: the tests of
imports themselves (tests/test_import_cost.py, tests/test_install_extras.py) and of commands that
set variables before importing torch (``cmrepro.toy``) start plain interpreters and never come
here. CMREPRO_TESTS_COLD=1 runs every command in a plain new interpreter.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

# The third-party modules a training command imports anyway, imported once (torch._dynamo: the
# first torch.optim optimizer's add_param_group imports it, 1 s alone). Not cmrepro's own: the
# command imports those itself, in its order, as ``python -m`` would.
WARM_IMPORTS = ("torch", "torch._dynamo", "torchvision", "timm", "hydra", "omegaconf")

# CMREPRO_TESTS_COLD=1: every command in a plain new interpreter (what the fork saves can then
# be measured, and the tests checked to pass without it).
COLD_VARIABLE = "CMREPRO_TESTS_COLD"

# Environment variables that may differ between the warm interpreter and a command it serves:
# cmrepro's own, read when the command runs (CMREPRO_KILL_AT_STEP, ...), and the one pytest sets
# to name each test. For any other difference, a new warm interpreter starts with the command's
# environment, so that everything read while importing is read from it.
RUNTIME_VARIABLES = ("CMREPRO_", "PYTEST_CURRENT_TEST")

SERVER = r"""
import importlib, json, os, random, runpy, sys

for name in sys.argv[1:]:
    importlib.import_module(name)

def child(request):
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    stdin = os.open(os.devnull, os.O_RDONLY)
    out = os.open(request["stdout"], os.O_WRONLY)
    err = os.open(request["stderr"], os.O_WRONLY)
    for source, target in ((stdin, 0), (out, 1), (err, 2)):
        os.dup2(source, target)
        os.close(source)
    os.closerange(3, 256)  # the server's pipes: the child must not hold them open
    random.seed()
    sys.argv = [request["module"], *request["args"]]
    runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    sys.exit(0)

for line in sys.stdin:
    request = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        child(request)  # never returns: SystemExit ends this process as it would any interpreter
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)
"""


def _import_time(env: dict[str, str]) -> dict[str, str]:
    """The part of ``env`` that a command may read while importing: all but RUNTIME_VARIABLES."""
    return {key: value for key, value in env.items() if not key.startswith(RUNTIME_VARIABLES)}


class WarmPython:
    """One warm interpreter, serving this test process's commands one at a time."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = _import_time(env)
        self.pending = b""
        self.server = subprocess.Popen(
            [sys.executable, "-c", SERVER, *WARM_IMPORTS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=self.env,
        )

    def serves(self, env: dict[str, str]) -> bool:
        """Whether a command with this environment runs here as it would in a fresh process."""
        return self.server.poll() is None and _import_time(env) == self.env

    def close(self) -> None:
        """Ends the server, which waits for its next line between commands: killed, not sent an
        end of input, since a process the test process forked (a DataLoader worker, a pool) holds
        the write end of its stdin open too."""
        self.server.kill()
        self.server.wait()
        assert self.server.stdin is not None and self.server.stdout is not None
        self.server.stdin.close()
        self.server.stdout.close()

    def run(self, module: str, args: list[str], cwd: Path, env: dict[str, str], timeout: float):
        with tempfile.TemporaryDirectory(prefix="warm_python_") as scratch:
            stdout, stderr = Path(scratch) / "stdout", Path(scratch) / "stderr"
            stdout.touch()
            stderr.touch()
            request = {"module": module, "args": args, "cwd": str(cwd), "env": env}
            self._send({**request, "stdout": str(stdout), "stderr": str(stderr)})
            pid = self._receive(timeout=10)["pid"]
            try:
                returncode = self._receive(timeout=timeout)["returncode"]
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                self._receive(timeout=10)
                raise subprocess.TimeoutExpired([module, *args], timeout) from None
            command = [sys.executable, "-m", module, *args]
            return subprocess.CompletedProcess(command, returncode, stdout.read_text(), stderr.read_text())

    def _send(self, request: dict) -> None:
        assert self.server.stdin is not None
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()

    def _receive(self, timeout: float) -> dict:
        """The server's next line, read from its pipe as it comes (a buffered reader could hold the
        second of two lines where select no longer sees it)."""
        assert self.server.stdout is not None
        fd = self.server.stdout.fileno()
        while b"\n" not in self.pending:
            if not select.select([fd], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired("warm python", timeout)
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError("the warm interpreter ended; its stderr is in the test's output")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)


_warm: WarmPython | None = None


@atexit.register
def _close_at_exit() -> None:
    """The test process ends its server with it (else a forked process holding its stdin could
    keep it waiting)."""
    if _warm is not None and _warm.server.poll() is None:
        _warm.close()


def run_module(module: str, args: list[str], cwd: Path, env: dict[str, str], timeout: float):
    """``python -m module args`` with ``env`` in ``cwd``, its output captured, as ``subprocess.run``
    reports it: in a child of the warm interpreter where that runs it alike, else a plain process."""
    global _warm
    if os.environ.get(COLD_VARIABLE) == "1":
        return run_module_cold(module, args, cwd, env, timeout)
    if _warm is None or not _warm.serves(env):
        if _warm is not None:
            _warm.close()
        _warm = WarmPython(env)
    return _warm.run(module, args, cwd, env, timeout)


def run_module_cold(module: str, args: list[str], cwd: Path, env: dict[str, str], timeout: float):
    """The same command in a plain new interpreter."""
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
