"""tests/warm_python.py reports a command as a plain new interpreter (``subprocess.run``) does:
exit code, stdout, stderr, working directory, environment, an uncaught error, a kill."""

from __future__ import annotations

import os
import textwrap

import pytest
import warm_python

PROBE = """
import os, signal, sys
print("argv", sys.argv[1:], "cwd", os.getcwd(), "var", os.environ.get("CMREPRO_WARM_PROBE"))
print("to stderr", file=sys.stderr)
how = sys.argv[1]
if how == "exit":
    sys.exit(3)
if how == "raise":
    raise RuntimeError("uncaught")
if how == "kill":
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("how", ["end", "exit", "raise", "kill"])
def test_a_command_ends_as_it_would_in_a_plain_interpreter(tmp_path, how):
    (tmp_path / "warm_probe.py").write_text(textwrap.dedent(PROBE))
    env = {**os.environ, "CMREPRO_WARM_PROBE": how}
    warm = warm_python.run_module("warm_probe", [how, "x y"], cwd=tmp_path, env=env, timeout=60)
    cold = warm_python.run_module_cold("warm_probe", [how, "x y"], cwd=tmp_path, env=env, timeout=60)
    assert warm.returncode == cold.returncode == {"end": 0, "exit": 3, "raise": 1, "kill": -9}[how]
    assert warm.stdout == cold.stdout == f"argv ['{how}', 'x y'] cwd {tmp_path} var {how}\n"
    if how == "raise":  # the same traceback from the module's frame on; the server's frames above it
        assert warm.stderr.splitlines()[-3:] == cold.stderr.splitlines()[-3:]
        assert warm.stderr.splitlines()[-1] == "RuntimeError: uncaught"
    else:
        assert warm.stderr == cold.stderr == "to stderr\n"
