"""Notebooks are committed clean and thin; `make test` runs them under nbmake (FOT_EDU_FAST=1)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
EXPECTED = ["00_start_here", "01_memory_attention", "02_knn_lookup", "03_distraction_issue",
            "04_crossbatch_training", "05_long_context", "06_passkey_retrieval",
            "07_classroom_demo", "08_longllama_recipe"]


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
    # notebooks use the library; a function is defined only in an exercise, as its solution
    for cell in code:
        text = "".join(cell["source"])
        assert "def " not in text or "### BEGIN SOLUTION" in text, text[:200]
    assert book["cells"][0]["cell_type"] == "markdown" and ("§" in source or "Fig. " in source)


LESSON_PREFIXES = ("01", "02", "03", "04", "05", "06", "08")  # 00 and 07 are a tour and a demo
LESSONS = [p for p in NOTEBOOKS if p.stem[:2] in LESSON_PREFIXES]


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_has_goals_exercises_and_questions(path):
    cells = json.loads(path.read_text())["cells"]
    text = ["".join(c["source"]) for c in cells]
    assert "you will learn" in text[0].lower() and "time" in text[0].lower()
    solutions = [t for t in text if "### BEGIN SOLUTION" in t and "### END SOLUTION" in t]
    # each exercise is set once in the course, where its mechanism is taught (tests/test_nbgrader.py)
    checks = [t for t in text if ".assert_correct(" in t]
    assert len(solutions) >= 1 and len(checks) >= len(solutions)
    assert "question" in text[-1].lower() and "summary" in text[-1].lower()


@pytest.mark.slow
def test_student_versions_run_and_say_not_implemented(tmp_path):
    """`python -m fot_edu exercises strip` makes student notebooks; each runs to its end (fast
    mode, errors allowed as nbgrader's autograder allows them): every test cell fails with "not
    implemented yet", and no other cell fails, so nothing else depends on a student's function."""
    nbclient = pytest.importorskip("nbclient")
    import nbformat

    from fot_edu.teaching.handouts import strip_solutions

    for path in strip_solutions(Path(NOTEBOOKS[0]).parent, tmp_path):
        if path.stem[:2] not in LESSON_PREFIXES:
            continue
        book = nbformat.read(path, as_version=4)
        assert "### BEGIN SOLUTION" not in json.dumps(book)
        nbclient.NotebookClient(book, timeout=600, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(path.parent.parent)}}).execute()
        code = [c for c in book.cells if c.cell_type == "code"]
        errors = [(".assert_correct(" in c.source, o) for c in code for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        tests = sum(".assert_correct(" in c.source for c in code)
        assert all(is_test and o["ename"] == "AssertionError" and "not implemented yet" in o["evalue"]
                   for is_test, o in errors), (path.name, errors)
        assert len(errors) == tests >= 1, (path.name, len(errors), tests)


def test_nbstripout_verify():
    result = subprocess.run([sys.executable, "-m", "nbstripout", "--verify", *map(str, NOTEBOOKS)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
