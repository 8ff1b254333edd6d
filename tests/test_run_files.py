"""Reading a run's metrics.jsonl while it may be torn (a kill, a full disk, a reader racing a writer)."""

from __future__ import annotations

import json

import pytest
from run_fixtures import write_run

from cmrepro.report import load_metrics
from cmrepro.run_files import RunFileError, read_jsonl


def test_a_torn_last_line_is_dropped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')
    assert read_jsonl(path) == [{"epoch": 1}, {"epoch": 2}]
    assert read_jsonl(tmp_path / "absent.jsonl") == []


def test_a_bad_line_before_the_last_is_an_error_naming_it(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1}\n{"epo\n{"epoch": 3}\n')
    with pytest.raises(RunFileError, match=r"metrics.jsonl line 2 is not JSON"):
        read_jsonl(path)
    path.write_text('{"epoch": 1}\nnot json\n')  # a complete last line is not a torn append
    with pytest.raises(RunFileError, match="line 2"):
        read_jsonl(path)


def test_the_report_reads_a_torn_run_and_skips_a_corrupt_one(tmp_path, capsys):
    torn = write_run(tmp_path, "a", curve=[50.0, 60.0])
    with (torn / "metrics.jsonl").open("a") as file:
        file.write('{"epoch": 3, "val_acc')
    corrupt = write_run(tmp_path, "b", seed=1, curve=[40.0, 45.0])
    (corrupt / "metrics.jsonl").write_text('garbage\n{"epoch": 2, "val_accuracy": 45.0}\n')
    metrics = load_metrics(tmp_path)
    assert sorted(metrics["val_accuracy"]) == [50.0, 60.0]
    assert "skipping the curves of a run" in capsys.readouterr().err
    assert json.loads((torn / "result.json").read_text())["status"] == "done"
