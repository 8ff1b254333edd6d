#!/usr/bin/env bash
# Every GPU check as one command (scripts/device_checks.py says what, in which order, and what
# comes back): on a GPU machine with no .venv, the machine's python3 and the wheels that
# scripts/device_wheels.sh packs into .whl/.
set -uo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" scripts/device_checks.py "$@"
