"""Records: one writer, the same fields in every record, one home for results."""
import fnmatch
import json
import re
from pathlib import Path

import pytest

from fot_edu.evaluation import records
from fot_edu.evaluation.records import FIELDS, RECORDS_DIR, Recording, write_record

ROOT = Path(__file__).resolve().parents[1]


def test_write_record_puts_the_recording_fields_first_then_the_results(tmp_path):
    recording = Recording(seed=7, command="python experiments/x.py --flag")
    path = write_record(tmp_path / "sub" / "x.json", recording, result={"r_8": 0.5, "n": 64})
    record = json.loads(path.read_text())
    assert list(record)[:len(FIELDS)] == list(FIELDS)
    assert record["command"] == "python experiments/x.py --flag" and record["seed"] == 7
    assert record["result"] == {"r_8": 0.5, "n": 64}
    assert set(record["load"]) == {"before", "after"} and record["seconds"] >= 0
    assert "cores" in record["machine"] and "torch" in record["machine"]
    assert not list(tmp_path.glob("sub/*.tmp"))  # written atomically: no temporary file left


def test_write_record_refuses_a_field_that_would_overwrite_the_recording(tmp_path):
    with pytest.raises(ValueError, match="seed"):
        write_record(tmp_path / "x.json", Recording(seed=0), seed=1)


def test_the_commit_says_when_the_tree_had_uncommitted_changes(tmp_path, monkeypatch):
    calls = []

    class Done:
        def __init__(self, stdout="", returncode=0):
            self.stdout, self.returncode = stdout, returncode

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return Done("abc1234\n") if "rev-parse" in cmd else Done(returncode=1)

    monkeypatch.setattr(records.subprocess, "run", fake_run)
    assert records.git_commit() == "abc1234 (with uncommitted changes)"
    monkeypatch.setattr(records.subprocess, "run",
                        lambda cmd, **kw: Done("abc1234\n") if "rev-parse" in cmd else Done())
    assert records.git_commit() == "abc1234"
    monkeypatch.setattr(records.subprocess, "run", lambda cmd, **kw: Done(""))
    assert records.git_commit() is None


@pytest.mark.parametrize("path", sorted(RECORDS_DIR.glob("*.json")), ids=lambda p: p.name)
def test_every_committed_record_has_the_same_first_fields(path):
    record = json.loads(path.read_text())
    assert list(record)[:len(FIELDS)] == list(FIELDS), f"{path.name}: {list(record)[:6]}"
    assert record["command"].startswith("python ")
    assert set(record["load"]) == {"before", "after"}


def test_results_have_one_home_with_an_index():
    index = (ROOT / "results" / "README.md").read_text()
    patterns = [name for name in re.findall(r"`([^`\s]+)`", index) if "*" in name]
    for path in sorted((ROOT / "results").rglob("*")):
        if path.is_file() and path.name != "README.md":
            listed = path.name in index or any(fnmatch.fnmatch(path.name, p) for p in patterns)
            assert listed, f"results/README.md does not list {path.name}"
    assert not (ROOT / "docs" / "records").exists() and not (ROOT / "docs" / "results").exists()
    readme = (ROOT / "README.md").read_text()
    for image in [line.split("](", 1)[1].split(")")[0] for line in readme.splitlines()
                  if line.startswith("![")]:
        assert image.startswith("results/figures/"), f"README shows {image} from outside results/"
