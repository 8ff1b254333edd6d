"""What a command pays in imports before it does anything: a refused command line, a help page, a
missing dataset or a sweep's launcher process ends before any model is built, so none of them
should wait for timm and torchvision (about 2 of the 4 seconds ``python -m cmrepro.train`` took
to start, paid again by every CLI process the test suite starts)."""

from __future__ import annotations

import subprocess
import sys

from train_helpers import ROOT

from cmrepro.models import ModelSpec, build_model

PROBE = (
    "import sys, cmrepro.train, cmrepro.training, cmrepro.models; "
    "print(sorted(name for name in ('timm', 'torchvision') if name in sys.modules))"
)


def test_the_training_entry_point_imports_no_model_library_until_a_model_is_built():
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_cifar_resnet_still_builds_with_timm_imported_on_demand():
    model = build_model({"name": "resnet18", "width": 0.125}, ModelSpec("classification", num_classes=10))
    assert "timm" in sys.modules and model.maxpool.__class__.__name__ == "Identity"
