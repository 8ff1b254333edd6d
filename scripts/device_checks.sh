#!/usr/bin/env bash
# Every check that needs a GPU, as one command for a session lent a GPU machine: the CUDA
# tests (optimizer trajectories against the oracle, CUDA-graph capture without host syncs,
# CPU<->CUDA state, sharpness, a bf16 run, a compiled run), then the GPU benchmarks of the
# optimizers, of the training steps of every configuration (eager; compiled for CIFAR100 and
# ImageNet, each compilation taking about a minute), the whole CIFAR100 training step with
# AdamCM(fused=True) over the one with Adam(fused=True), and of the analysis metrics, then the
# full-scale GPU-hour estimate of every paper target; the CIFAR data pipeline (loader against
# dataset.on_device) and a torchrun run on every GPU beside the same run in one process. Results go to $OUT (the device tool's
# folder), else results/bench/device/: eight files. The optimizer benchmark includes the fused
# rows (fused=True, with their compile time) and each row's ratio to Adam(fused=True). A failing step is reported and the others
# still run; the exit status is non-zero if any failed. Wheels first: scripts/device_wheels.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-results/bench/device}
python=${PYTHON:-python3}
mkdir -p "$out"
if [ -d .whl ]; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "device_checks: could not install .whl/*.whl" >&2; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
failed=()
step() {
  echo "== $*"
  "$@" || failed+=("$*")
}
step nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step "$python" -m pytest -q -m cuda -p no:cacheprovider -o junit_family=xunit2 --junitxml="$out/cuda_tests.xml" \
  tests/test_optim_api.py tests/test_optim_state.py tests/test_optim_oracle.py tests/test_metrics.py tests/test_train.py \
  tests/test_compile.py tests/test_optim_fused.py
step "$python" scripts/bench_optim.py --device cuda --out "$out/optim_cuda.json"
step "$python" scripts/bench_train.py --device cuda --steps 20 --imagenet-steps 10 --imagenet-batch 256 \
  --out "$out/train_cuda.json"
step "$python" scripts/bench_train.py --device cuda --steps 20 --imagenet-steps 10 --imagenet-batch 256 \
  --datasets cifar100 imagenet --compile reduce-overhead --out "$out/train_cuda_compiled.json"
step "$python" scripts/bench_train.py --device cuda --steps 20 --datasets tinyimagenet five_datasets \
  --out "$out/streams_cuda.json"
step "$python" scripts/bench_train.py --device cuda --steps 20 --datasets cifar100 --fused \
  --out "$out/train_fused_cuda.json"
step "$python" scripts/bench_metrics.py --device cuda --out "$out/metrics_cuda.json"
# The CIFAR data pipeline alone, per epoch: DataLoader (8 workers) against dataset.on_device.
step "$python" scripts/bench_train.py --device cuda --data-path loader on_device --num-workers 8 \
  --out "$out/data_path_cuda.json"
# One run under torchrun on every visible GPU (DDP, NCCL, SyncBatchNorm), then the same run in
# one process: their metrics should agree to float32 rounding (compare the two metrics.jsonl).
gpus=$(nvidia-smi -L | wc -l)
ddp_run=(dataset=synthetic_image model.width=0.5 dataset.num_train=2048 dataset.batch_size=256 trainer.epochs=2
  trainer.lr_milestones=[] trainer.progress=false trainer.device=cuda optimizer=adam_cm)
step "$python" -m torch.distributed.run --standalone --nproc-per-node="$gpus" -m cmrepro.train "${ddp_run[@]}" \
  run_dir="$out/torchrun_run"
step "$python" -m cmrepro.train "${ddp_run[@]}" run_dir="$out/one_process_run"
step "$python" scripts/estimate_hours.py "$out/train_cuda.json" "$out/streams_cuda.json" --out "$out/hours_cuda.json"
step "$python" scripts/estimate_hours.py "$out/train_cuda.json" "$out/streams_cuda.json" \
  "$out/train_cuda_compiled.json"  # printed only: the compiled steps replace the eager ones they cover
if ((${#failed[@]})); then
  printf 'device_checks: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "device_checks: all passed; results in $out"
