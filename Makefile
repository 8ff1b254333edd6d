# One-command set-up and test. PYTHON picks the interpreter that creates .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch build that lies on the development machines' disk; override on a
# cluster, e.g. `make install TORCH_PIN="torch torchvision"`.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install test data lint bench-optim reproduce-toy toy-protocols toy-meg-grid toy-stability clean reproduce-table2 reproduce-table3 reproduce-table4 \
	grid-table2 grid-table3 grid-table4 \
	figure8 figure9 figure10 figure19 figure20 analysis-figures bench-metrics device-checks \
	figure8-smoke figure9-smoke figure10-smoke figure19-smoke figure20-smoke analysis-figures-smoke

# The suite, the Slurm launcher and the test tools (pyproject.toml's [all]); `pip install .` is torch alone.
install: ## create .venv: torch and the whole suite; network-bound, not timed
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install $(TORCH_PIN)
	$(PY) -m pip install -e ".[all]"

# One line per target (the "## ..." after it): what it does and how long it took, on the idle
# 2-core development machine where measured (README), or "GPUs" where it needs them.
.PHONY: help
help: ## this list
	@sed -e 's/$$(ANALYSIS_FIGURES:%=%-smoke)/$(ANALYSIS_FIGURES:%=%-smoke)/' \
		-e 's/$$(ANALYSIS_FIGURES)/$(ANALYSIS_FIGURES)/' $(firstword $(MAKEFILE_LIST)) | \
		awk 'index($$0, ": ") && /## / && !/^[#\t]/ { target = substr($$0, 1, index($$0, ": ") - 1); \
		sub(/^.*## /, ""); if (length(target) > 22) printf "  %s\n  %-22s %s\n", target, "", $$0; \
		else printf "  %-22s %s\n", target, $$0 }'

# The suite in TEST_JOBS processes (pytest-xdist): most tests wait on subprocesses of their own
# (CLI runs, torchrun, sweeps), so two workers keep both cores busy; worksteal hands a worker
# that ran out of tests half of the other's, so one long test at the end does not leave a core idle.
TEST_JOBS ?= 2
TEST_FLAGS := -q -n $(TEST_JOBS) --dist worksteal
test: ## the whole test suite in TEST_JOBS processes; 5 min 42 s
	$(PY) -m pytest $(TEST_FLAGS)

# The unit tests alone, for the inner loop: the tests that start processes, train or sweep end to end
# are marked slow by tests/slow_marks.py and left out. CI (.ci/run) runs the whole `make test`.
.PHONY: test-quick
test-quick: ## the unit tests alone (-m "not slow"), for the inner loop; 1 min 24 s
	$(PY) -m pytest $(TEST_FLAGS) -m "not slow"

# Fetch, check and unpack datasets into paths.data_dir ($CMREPRO_DATA or data/), e.g.
# make data DATASETS="cifar10 ptb"; imagenet needs its archives: python -m cmrepro.data prepare imagenet --from ...
DATASETS ?= all
data: ## fetch, check and unpack DATASETS (default all) into paths.data_dir; network-bound
	$(PY) -m cmrepro.data prepare $(DATASETS)

lint: ## ruff check and format check of cmrepro, tests, scripts; about 1 s
	$(PY) -m ruff check cmrepro tests scripts
	$(PY) -m ruff format --check cmrepro tests scripts

TOY_EXPERIMENTS := table1 table5 figure1 figure13 figure14 figure3 figure4 figure16 figure5 figure17 figure18 \
	figure6 figure7_left figure7_right figure2 figure11 figure12 figure15_ackley figure15_goldstein_price

# Every toy experiment of Sections 3.2 and 4: CSVs in results/toy, PNGs in
# results/figures, and results/toy/README.md beside the paper's numbers.
# One Hydra sweep in one process, so its worker processes start once for all experiments.
comma := ,
empty :=
space := $(empty) $(empty)
reproduce-toy: ## every toy experiment, its figures and verdicts; 1 min 42 s
	$(PY) -m cmrepro.toy -m experiment=$(subst $(space),$(comma),$(strip $(TOY_EXPERIMENTS)))
	$(PY) -m cmrepro.report index
	$(PY) -m cmrepro.toy.verdicts

# Table 1 under the other protocols the paper leaves open (results/toy/README.md, "Table 1 under
# other protocols"); not part of reproduce-toy, to keep that under 3 minutes on 2 cores.
toy-protocols: ## Table 1 under the other protocols the paper leaves open; not timed
	$(PY) -m cmrepro.toy experiment=table1_protocols

# Figure 15's Adam+MEG grid search (results/toy/figure15_meg_grid.csv); its chosen rows are copied into
# conf/toy/experiment/figure15_*.yaml (tests/test_toy_measures.py checks they agree). A tuning step, like
# the grid-* targets: not part of reproduce-toy, which stays under 3 minutes on 2 cores.
toy-meg-grid: ## Figure 15's Adam+MEG grid search (a tuning step); not timed
	$(PY) -m cmrepro.toy experiment=figure15_meg_grid

# Re-runs the claims' experiments with every start moved by 1e-12 and lists any verdict that changes.
toy-stability: ## the toy claims re-run with every start moved by 1e-12; not timed
	$(PY) scripts/toy_stability.py --out results/bench/toy_stability.json

# The paper's tables (python -m cmrepro.reproduce): the best settings x five seeds, then
# the report in results/tables beside the paper's numbers; grid-* runs the hyperparameter
# grids and reports the best setting found. Interrupt and re-run at will: finished runs
# are skipped, killed ones resume.
#   SCALE=smoke      every run shrunk to seconds on a CPU (results/smoke/)
#   LAUNCHER=joblib  JOBS parallel local workers; LAUNCHER=slurm: Slurm job arrays
#   OVERRIDES="..."  Hydra overrides for every run, e.g. hydra.launcher.partition=gpu
SCALE ?= full
LAUNCHER ?= local
JOBS ?= 2
OVERRIDES ?=
REPRODUCE = $(PY) -m cmrepro.reproduce --scale $(SCALE) --launcher $(LAUNCHER) --jobs $(JOBS)

reproduce-table2 reproduce-table3 reproduce-table4: ## a table and its report: GPUs; SCALE=smoke LAUNCHER=joblib: 1 min 26 s, 33 s, 2 min 10 s
	$(REPRODUCE) $(@:reproduce-%=%) $(OVERRIDES)

grid-table2 grid-table3 grid-table4: ## a table's hyperparameter grids and the best setting found: GPUs
	$(REPRODUCE) --grid $(@:grid-%=%) $(OVERRIDES)

# Appendix A.2.1: Adam+MEG on CIFAR10 (conf/experiment/appendix), five seeds, then
# results/tables/appendix.md beside the paper's 93.8 +- 0.3; its Adam+CM and Adam+SAM+CM cells
# are Table 2's runs (make reproduce-table2). SCALE=smoke: under a minute on a CPU.
.PHONY: reproduce-meg
reproduce-meg: ## Appendix A.2.1, Adam+MEG on CIFAR10, 5 seeds: GPUs; SCALE=smoke not timed
	$(REPRODUCE) appendix $(OVERRIDES)

bench-optim: ## the optimizer-step benchmark on the CPU; not timed
	$(PY) scripts/bench_optim.py --device cpu --out results/bench/optim_cpu.json

# Training-time analysis (docs/analysis.md): Figures 8, 9, 10, 19, 20 and Table 14.
# `make figure8` runs the figure's experiments (finished runs are skipped, killed ones
# resume) and draws results/figures/figure8_cifar100.png; `make figure8-smoke` does the
# same on stand-in data in minutes on a CPU (results/smoke/figures/), with fewer seeds,
# one learning rate per grid and a cheap sharpness every epoch. OVERRIDES applies to every run.
ANALYSIS_FIGURES := figure8 figure9 figure10 figure19 figure20
figure8_RUNS := figure8/cifar100_adam figure8/cifar100_adam_cg figure8/cifar100_adam_cm figure8/cifar100_adam_sam \
	figure8/cifar100_adam_sam_cm
figure9_RUNS := figure9/cifar10_adam_cm figure9/cifar100_adam_cm
figure10_RUNS := figure10/cifar10_batch_size figure10/cifar100_batch_size figure10/cifar10_buffer_size \
	figure10/cifar100_buffer_size
figure19_RUNS := figure19/cifar10 figure19/cifar100
figure20_RUNS := figure20/cifar10_adam
SMOKE_ANALYSIS := scale=smoke metrics.sharpness.every_n_epochs=1 metrics.sharpness.batches=1 \
	metrics.sharpness.max_iterations=3
figure8_SMOKE := seed=0,1
figure9_SMOKE := seed=0
figure10_SMOKE := optimizer.lr=0.001
figure20_SMOKE := seed=0,1

$(ANALYSIS_FIGURES): %: ## one analysis figure's runs and plot: GPUs
	@for e in $($*_RUNS); do $(PY) -m cmrepro.train -m experiment=$$e $(OVERRIDES) || exit 1; done
	$(PY) -m cmrepro.report $* --runs results/runs --out results

$(ANALYSIS_FIGURES:%=%-smoke): %-smoke: ## the same on stand-in data on the CPU; figure8-smoke about 2 min
	@for e in $($*_RUNS); do $(PY) -m cmrepro.train -m experiment=$$e $(SMOKE_ANALYSIS) $($*_SMOKE) $(OVERRIDES) \
		|| exit 1; done
	$(PY) -m cmrepro.report $* --runs results/smoke/runs --out results/smoke

analysis-figures: $(ANALYSIS_FIGURES) ## Figures 8, 9, 10, 19, 20: GPUs
analysis-figures-smoke: $(ANALYSIS_FIGURES:%=%-smoke) ## the five on stand-in data on the CPU; not timed

bench-metrics: ## the metrics benchmark on the CPU; not timed
	$(PY) scripts/bench_metrics.py --threads 1 --out results/bench/metrics_cpu.json

# Every GPU check on one machine with a CUDA device, as one command of at most ~9 minutes
# (scripts/device_checks.py: the steps, their caps, the deadline): log.txt, steps.tsv and
# results.tgz into $$OUT or results/bench/device/. With .venv's python if there is one, else
# the machine's python3 (a bare GPU image: carry the wheels of scripts/device_wheels.sh).
device-checks: ## every GPU check, one command of at most about 9 min: GPUs
	PYTHON=$$(test -x $(PY) && echo $(PY) || echo python3) bash scripts/device_checks.sh

# Every artefact of the paper, then results/README.md (the index of every table and figure:
# command, outputs, status; `python -m cmrepro.report index` rewrites it alone). SCALE=smoke runs
# each training artefact's smoke version (stand-in data, on a CPU); full scale needs GPUs and the
# datasets. SCALE, LAUNCHER, JOBS and OVERRIDES reach every step.
.PHONY: reproduce-all index
reproduce-all: ## every artefact, then results/README.md: GPUs; SCALE=smoke: 10 min 59 s
	$(MAKE) reproduce-toy
	$(MAKE) reproduce-table2 reproduce-table3 reproduce-table4 reproduce-meg SCALE=$(SCALE)
	$(MAKE) $(if $(filter smoke,$(SCALE)),analysis-figures-smoke,analysis-figures)
	$(MAKE) claims SCALE=$(SCALE)
	$(MAKE) index

index: ## results/README.md, the index of every table and figure; not timed
	$(PY) -m cmrepro.report index

# The claims of Section 5 and Appendix A.3 (conf/claims/section5.yaml) over the training runs, each
# printed with its verdict and written to results/claims/section5.csv; SCALE=smoke judges the smoke
# runs into results/smoke/claims/, every line marked "smoke: stand-in data, not evidence".
.PHONY: claims
claims: ## the claims of Section 5 judged over the training runs; not timed
	$(PY) -m cmrepro.report.claims \
		$(if $(filter smoke,$(SCALE)),--runs results/smoke/runs --out results/smoke,--runs results/runs --out results)

clean: ## remove .venv and the build files; seconds
	rm -rf $(VENV) .pytest_cache build *.egg-info
