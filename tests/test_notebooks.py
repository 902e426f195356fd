"""Notebooks are committed clean and thin; `make test` runs them under nbmake (FOT_EDU_FAST=1)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
EXPECTED = ["00_start_here", "01_memory_attention", "02_knn_lookup", "03_distraction_issue",
            "04_crossbatch_training", "05_long_context", "06_passkey_retrieval",
            "07_classroom_demo"]


def test_every_tutorial_notebook_exists():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean_and_thin(path):
    book = json.loads(path.read_text())
    assert book["metadata"]["kernelspec"]["name"] == "python3"
    assert "widgets" not in book["metadata"]  # no stored widget state
    code = [c for c in book["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert len(code) <= 25
    source = "\n".join("".join(c["source"]) for c in book["cells"])
    assert "from fot_edu" in source
    assert "PLOTLY_RENDERER" not in source and "cdn" not in source.lower()
    assert "def " not in source  # notebooks use the library; they define nothing of their own
    assert book["cells"][0]["cell_type"] == "markdown" and ("§" in source or "Fig. " in source)


def test_nbstripout_verify():
    result = subprocess.run([sys.executable, "-m", "nbstripout", "--verify", *map(str, NOTEBOOKS)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
