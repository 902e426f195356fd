"""nbgrader itself on the course: the exercise cells carry nbgrader's metadata, generate_assignment
makes the student version (the same code cells as ``python -m fot_edu exercises strip``), and
autograde gives the reference solutions full marks and takes exactly one exercise's points from a
submission holding one of that exercise's named wrong versions (``Exercise.mistakes``): every
exercise of the course is graded wrong once, in a submission whose other exercises are right. A
test cell is ``ex.<name>.assert_correct(<name>)``, so what it does with each of the other named
wrong versions is checked without nbgrader, version by version (the last test of this file).

The course is built in a temporary folder: one assignment holding every notebook with exercises,
run by nbgrader's command line with ``FOT_EDU_FAST=1`` in the environment its kernels inherit.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fot_edu.teaching import exercises as ex
from fot_edu.teaching.handouts import (POINTS, exercise_cells, mark_for_nbgrader,
                                       strip_notebook)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
GRADED = [p for p in NOTEBOOKS if exercise_cells(json.loads(p.read_text(encoding="utf-8")))]
ASSIGNMENT = "fot_edu"


def _book(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


# -- the metadata, without nbgrader ------------------------------------------------------------

def test_every_lesson_with_exercises_is_graded():
    assert [p.stem[:2] for p in GRADED] == ["01", "02", "03", "04", "05", "06", "08"]


@pytest.mark.parametrize("path", GRADED, ids=lambda p: p.stem)
def test_exercise_cells_carry_exactly_the_nbgrader_metadata_of_the_rule(path):
    """The committed metadata is mark_for_nbgrader's: an answer cell per exercise, a locked
    test cell after it worth POINTS, no other nbgrader cell; each exercise is set in one notebook."""
    book = _book(path)
    assert mark_for_nbgrader(book) == book
    for name, answer, test in exercise_cells(book):
        meta = book["cells"][answer]["metadata"]["nbgrader"]
        assert meta["solution"] and not meta["grade"] and meta["grade_id"] == name
        meta = book["cells"][test]["metadata"]["nbgrader"]
        assert meta["grade"] and meta["locked"] and meta["points"] == POINTS
        assert _source(book["cells"][test]).strip() == f"ex.{name}.assert_correct({name})"


def test_each_exercise_is_set_once_in_the_course():
    names = [name for p in GRADED for name, _, _ in exercise_cells(_book(p))]
    assert sorted(names) == sorted(set(names)) and set(names) == set(ex.names())


def test_a_solution_cell_without_its_test_cell_is_refused():
    cell = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
            "source": "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n"}
    with pytest.raises(ValueError, match=r"ex\.f\.assert_correct\(f\)"):
        mark_for_nbgrader({"cells": [cell]})


# -- nbgrader -----------------------------------------------------------------------------------

def _nbgrader(course: Path, *args: str) -> str:
    env = dict(os.environ, FOT_EDU_FAST="1", PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")  # alembic
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def _submit(course: Path, student: str, books: dict[str, dict]) -> None:
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True)
    for stem, book in books.items():
        (folder / f"{stem}.ipynb").write_text(json.dumps(book), encoding="utf-8")


def _scores(course: Path, student: str) -> dict[str, dict[str, float]]:
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "fot_edu") as gb:
        submission = gb.find_submission(ASSIGNMENT, student)
        return {nb.name: {g.name: g.score for g in nb.grades} for nb in submission.notebooks}


def _answered(release: dict, source: dict) -> dict:
    """The released notebook with the reference solutions typed into its answer cells."""
    book = json.loads(json.dumps(release))
    answers = {c["metadata"]["nbgrader"]["grade_id"]: _source(c) for c in source["cells"]
               if c["metadata"].get("nbgrader", {}).get("solution")}
    for cell in book["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = answers[grade_id]
    return book


def _functions(exercise) -> list[int]:
    """The numbers of ``exercise``'s named mistakes that are functions of the arguments alone
    (``_gated_mix`` is fitted to the student's own output: it has no function)."""
    return [number for number, (_, variant) in enumerate(exercise.mistakes)
            if variant.__name__ != "_gated_mix"]


def _wrong(exercise, which: int = 0) -> tuple[int, str]:
    """The ``which``-th named wrong version of ``exercise`` that is a function (cycling through
    them), and the message the checker gives it."""
    numbers = _functions(exercise)
    assert numbers, f"{exercise.name} has no wrong version"
    number = numbers[which % len(numbers)]
    message = exercise.mistakes[number][0]
    ok, verdict = exercise.verdict(exercise.wrong_version(number))
    assert not ok and f"Likely mistake: {message}" in verdict
    return number, message


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    pytest.importorskip("nbgrader")
    course = tmp_path_factory.mktemp("course")
    (course / "nbgrader_config.py").write_text(
        'c = get_config()\nc.CourseDirectory.course_id = "fot_edu"\nc.Execute.timeout = 600\n')
    (course / "source" / ASSIGNMENT).mkdir(parents=True)
    for path in GRADED:
        shutil.copy(path, course / "source" / ASSIGNMENT / path.name)
    _nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    return course


@pytest.mark.slow
def test_generate_assignment_writes_what_strip_writes(course):
    for path in GRADED:
        release = _book(course / "release" / ASSIGNMENT / path.name)
        stripped = strip_notebook(_book(path))
        code = [_source(c) for c in release["cells"] if c["cell_type"] == "code"]
        assert code == [_source(c) for c in stripped["cells"] if c["cell_type"] == "code"], path.name
        text = json.dumps(release)
        assert "### BEGIN SOLUTION" not in text and "raise NotImplementedError()" in text


@pytest.mark.slow
def test_autograde_gives_the_reference_full_marks_and_takes_each_exercises_points_once(course):
    release = {p.stem: _book(course / "release" / ASSIGNMENT / p.name) for p in GRADED}
    source = {p.stem: _book(p) for p in GRADED}
    right = {stem: _answered(release[stem], source[stem]) for stem in release}
    _submit(course, "reference", right)

    _nbgrader(course, "autograde", ASSIGNMENT, "--student", "reference", "--force")
    scores = _scores(course, "reference")
    for path in GRADED:
        names = [name for name, _, _ in exercise_cells(source[path.stem])]
        assert scores[path.stem] == {f"test_{n}": POINTS for n in names}, path.stem

    # student k: in every notebook with a k-th exercise, that exercise holds a named wrong version
    # (a different one for each k) and the notebook's other exercises are right; so every exercise
    # of the course is graded wrong once, beside right answers
    rounds, graded_wrong = max(len(exercise_cells(book)) for book in source.values()), set()
    for k in range(rounds):
        student, wrong, expected = f"wrong{k}", {}, {}
        for stem in source:
            cells = exercise_cells(right[stem])
            if k >= len(cells):
                continue
            book = json.loads(json.dumps(right[stem]))
            name, answer, _ = cells[k]
            number, message = _wrong(getattr(ex, name), k)
            book["cells"][answer]["source"] = (f"# a named mistake: {message}\n"
                                               f"{name} = ex.{name}.wrong_version({number})\n")
            wrong[stem], expected[stem] = book, (name, message)
            graded_wrong.add(name)
        _submit(course, student, wrong)
        _nbgrader(course, "autograde", ASSIGNMENT, "--student", student, "--force")
        scores = _scores(course, student)
        for stem, (name, message) in expected.items():
            names = [n for n, _, _ in exercise_cells(source[stem])]
            assert scores[stem] == {f"test_{n}": 0 if n == name else POINTS for n in names}, stem
            graded = _book(course / "autograded" / student / ASSIGNMENT / f"{stem}.ipynb")
            errors = [o for c in graded["cells"] for o in c.get("outputs", [])
                      if o["output_type"] == "error"]
            assert len(errors) == 1 and errors[0]["ename"] == "AssertionError", stem
            assert f"Likely mistake: {message}" in errors[0]["evalue"], errors[0]["evalue"]
    assert graded_wrong == set(ex.names())


# -- the graded form of a check -------------------------------------------------------------------

@pytest.mark.parametrize("name", ex.names())
def test_assert_correct_fails_with_the_message_check_prints(name, capsys):
    exercise = getattr(ex, name)
    exercise.assert_correct(exercise.solution_function())
    assert capsys.readouterr().out.startswith(f"Correct: {name}")
    number, message = _wrong(exercise)
    assert exercise.check(exercise.wrong_version(number)) is False
    printed = capsys.readouterr().out.strip()
    with pytest.raises(AssertionError) as failure:
        exercise.assert_correct(exercise.wrong_version(number))
    assert str(failure.value) == printed and f"Likely mistake: {message}" in printed
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("path", GRADED, ids=lambda p: p.stem)
def test_the_printed_solution_passes_where_the_student_pastes_it(path):
    """``ex.<name>.solution()`` prints code that needs only the imports the notebook has made by
    its answer cell (that cell's own included): pasted there, it passes the test cell."""
    book = _book(path)
    for name, answer, _ in exercise_cells(book):
        namespace = {}
        for cell in book["cells"][:answer + 1]:
            if cell["cell_type"] == "code":
                for line in _source(cell).splitlines():
                    if line.startswith(("import ", "from ")):
                        exec(line, namespace)
        exercise = getattr(ex, name)
        exec(exercise.solution_source, namespace)
        assert exercise.verdict(namespace[name])[0], (path.stem, name)


@pytest.mark.parametrize("name,number", [(name, number) for name in ex.names()
                                         for number in _functions(getattr(ex, name))])
def test_every_named_wrong_version_fails_its_test_cell_naming_itself(name, number):
    """What the autograder's test cell does with each named wrong version: it raises, and the
    message names that mistake (so the student's feedback in the graded notebook does too)."""
    exercise = getattr(ex, name)
    message = exercise.mistakes[number][0]
    with pytest.raises(AssertionError) as failure:
        exercise.assert_correct(exercise.wrong_version(number))
    assert f"Likely mistake: {message}" in str(failure.value)
