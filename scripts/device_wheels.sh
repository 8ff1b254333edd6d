#!/usr/bin/env bash
# Wheels of what cmrepro imports that the lent GPU machine's Python lacks (the device tool's
# KINDS.md lists its packages): hydra-core, omegaconf and antlr4 for the configs,
# efficientnet-pytorch for ImageNet, expecttest for torch's optimizer test machinery. All pure Python, so wheels built here install there
# (Python 3.12). They go to .whl/, which git ignores locally and the device run carries:
#
#   bash scripts/device_wheels.sh
#   device run, carry [".whl"]:  python3 scripts/device_checks.py
set -euo pipefail
cd "$(dirname "$0")/.."
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qsx "/.whl/" "$exclude" || echo "/.whl/" >> "$exclude"
rm -rf .whl
"${PYTHON:-.venv/bin/python}" -m pip wheel -q --no-deps -w .whl \
  hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3 efficientnet-pytorch==0.7.1 expecttest==0.3.0
ls .whl
