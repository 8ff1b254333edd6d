# One-command set-up and test. PYTHON picks the interpreter that creates .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch build that lies on the development machines' disk; override on a
# cluster, e.g. `make install TORCH_PIN="torch torchvision"`.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install test lint bench-optim reproduce-toy clean

install:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install $(TORCH_PIN)
	$(PY) -m pip install -e ".[dev]"

test:
	$(PY) -m pytest -q

lint:
	$(PY) -m ruff check cmrepro tests scripts
	$(PY) -m ruff format --check cmrepro tests scripts

TOY_EXPERIMENTS := table1 table5 figure1 figure13 figure14 figure3 figure4 figure16 figure5 figure17 figure18 \
	figure6 figure7_left figure7_right

# Every toy experiment of Sections 3.2 and 4: CSVs in results/toy, PNGs in
# results/figures, and results/toy/README.md beside the paper's numbers.
reproduce-toy:
	@for experiment in $(TOY_EXPERIMENTS); do $(PY) -m cmrepro.toy experiment=$$experiment || exit 1; done

bench-optim:
	$(PY) scripts/bench_optim.py --device cpu --out results/bench/optim_cpu.json

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
