"""Do the toy verdicts survive a last-bit change of the initial points?

Runs the toy experiments again with every initial point moved by ``--jitter``
(seeded normal noise, 1e-12 by default: the size of the differences between
CPUs' math kernels) into a scratch directory, then compares each claim's
verdict with ``results/toy/claims.csv``. Prints one line per claim whose
verdict changed and a summary; writes JSON with ``--out``; exits 1 when a
verdict changed.

    python scripts/toy_stability.py --out results/bench/toy_stability.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from bench_json import write_bench_json  # noqa: E402


def experiments() -> list[str]:
    """The experiments whose runs the claims read (TOY_EXPERIMENTS would also redraw every figure)."""
    from cmrepro.toy.registry import load

    return sorted({source.removesuffix("_runs") for claim in load().claims for source in claim.sources})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jitter", type=float, default=1e-12)
    parser.add_argument("--reference", type=Path, default=ROOT / "results" / "toy" / "claims.csv")
    parser.add_argument("--out", type=Path, default=None, help="write the comparison as JSON")
    args = parser.parse_args()
    reference = pd.read_csv(args.reference)
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "cmrepro.toy",
                "-m",
                f"experiment={','.join(experiments())}",
                f"output_dir={scratch}",
                f"figures_dir={scratch}",
                f"start_jitter={args.jitter}",
            ],
            check=True,
            cwd=ROOT,
        )
        seconds = time.perf_counter() - started
        moved = pd.read_csv(Path(scratch) / "claims.csv")
    both = reference.merge(moved, on=["id"], suffixes=("", "_moved"))
    changed = both[both.verdict != both.verdict_moved]
    for row in changed.itertuples():
        print(f"CHANGED {row.artefact}: {row.claim}: {row.verdict} -> {row.verdict_moved}")
    print(
        f"{len(both)} claims, {len(changed)} verdicts changed with starts moved by {args.jitter:g} "
        f"({seconds:.0f} s); largest estimate shift {float((both.estimate - both.estimate_moved).abs().max()):.3g}"
    )
    if args.out:
        import torch

        write_bench_json(
            args.out,
            torch.device("cpu"),
            changed[["artefact", "claim", "verdict", "verdict_moved"]].to_dict("records"),
            jitter=args.jitter,
            claims=len(both),
            changed=len(changed),
            seconds=seconds,
        )
    return 1 if len(changed) else 0


if __name__ == "__main__":
    sys.exit(main())
