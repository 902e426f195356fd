"""Handouts: the student version of a notebook, and nbgrader's metadata on its exercise cells.

An exercise cell of a course notebook defines the student's function with the solution between
``### BEGIN SOLUTION`` and ``### END SOLUTION``; a later cell checks it with
``ex.<name>.assert_correct(<name>)`` (``fot_edu.teaching.assignments``).

* nbgrader (``generate_assignment``, ``autograde``) reads the metadata that
  :func:`mark_for_nbgrader` puts on those cells: the cell defining the function is an autograded
  answer cell (``solution``), the cell checking it a locked test cell worth :data:`POINTS`.
* :func:`strip_solutions` writes the student version without nbgrader, with the code cells
  nbgrader's ``generate_assignment`` writes: each block between the markers (markers included)
  becomes nbgrader's stub (``# YOUR CODE HERE`` / ``raise NotImplementedError()``) at the
  marker's indentation, and outputs are cleared.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"  # nbgrader's python code_stub
POINTS = 1  # per exercise, in nbgrader's test cells

__all__ = ["exercise_cells", "mark_for_nbgrader", "nbgrader_metadata", "strip_notebook", "strip_solutions"]


def _strip_source(source: str) -> str:
    """Each BEGIN ... END SOLUTION block (inclusive) -> :data:`STUB` at the marker's indentation,
    line by line as nbgrader's ``ClearSolutions`` does (a line *containing* a marker is one)."""
    out, inside = [], False
    for line in source.split("\n"):
        if BEGIN in line:
            if inside:
                raise ValueError(f"a {BEGIN!r} block inside another")
            indent = line[:len(line) - len(line.lstrip())]
            out.extend(indent + stub for stub in STUB.split("\n"))
            inside = True
        elif END in line:
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"a {BEGIN!r} block has no {END!r}")
    return "\n".join(out)


def _text(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _is_solution(cell: dict) -> bool:
    return bool(cell.get("metadata", {}).get("nbgrader", {}).get("solution"))


def exercise_cells(notebook: dict) -> list[tuple[str, int, int]]:
    """``(name, answer, test)`` for each exercise of a notebook: the index of the code cell that
    defines ``name`` between solution markers, and of the first later code cell that calls
    ``ex.<name>.assert_correct(<name>)``. Raises ValueError for an answer cell without its test."""
    cells, found = notebook.get("cells", []), []
    for i, cell in enumerate(cells):
        text = _text(cell)
        if cell.get("cell_type") != "code" or BEGIN not in text:
            continue
        match = re.search(r"^def (\w+)\(", text, re.M)
        if match is None:
            raise ValueError(f"cell {i} has a solution but defines no function")
        name = match.group(1)
        call = f"ex.{name}.assert_correct({name})"
        test = next((j for j in range(i + 1, len(cells))
                     if cells[j].get("cell_type") == "code" and call in _text(cells[j])), None)
        if test is None:
            raise ValueError(f"cell {i} defines {name} but no later cell calls {call}")
        found.append((name, i, test))
    return found


def nbgrader_metadata(grade_id: str, *, answer: bool, points: int = POINTS) -> dict:
    """nbgrader's cell metadata (schema 3): an autograded answer cell (the student's function),
    or a locked autograder test cell worth ``points``."""
    if answer:
        return {"grade": False, "grade_id": grade_id, "locked": False, "schema_version": 3,
                "solution": True, "task": False}
    return {"grade": True, "grade_id": grade_id, "locked": True, "points": points,
            "schema_version": 3, "solution": False, "task": False}


def mark_for_nbgrader(notebook: dict, points: int = POINTS) -> dict:
    """The notebook with nbgrader metadata on its exercise cells (:func:`exercise_cells`): the
    answer cell ``grade_id`` = the function's name, its test cell ``test_<name>``, ``points``
    each; no other cell carries any. The input is untouched."""
    notebook = json.loads(json.dumps(notebook))
    for cell in notebook.get("cells", []):
        cell.get("metadata", {}).pop("nbgrader", None)
    for name, answer, test in exercise_cells(notebook):
        cells = notebook["cells"]
        cells[answer].setdefault("metadata", {})["nbgrader"] = nbgrader_metadata(name, answer=True)
        cells[test].setdefault("metadata", {})["nbgrader"] = nbgrader_metadata(
            f"test_{name}", answer=False, points=points)
    return notebook


def strip_notebook(notebook: dict) -> dict:
    """The student version of a notebook (``nbformat`` 4 JSON as a dict), code cells as
    nbgrader's ``generate_assignment`` writes them: solution blocks become :data:`STUB`, a
    solution cell without markers becomes the stub alone, outputs are cleared. The input is
    untouched."""
    notebook = json.loads(json.dumps(notebook))
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        text = _text(cell)
        if BEGIN in text or _is_solution(cell):
            text = _strip_source(text) if BEGIN in text else STUB
            cell["source"] = text.splitlines(keepends=True) if isinstance(source, list) else text
        cell["outputs"], cell["execution_count"] = [], None
    return notebook


def strip_solutions(src, dst) -> list[Path]:
    """Write the student version of notebook ``src`` (or of every ``*.ipynb`` below a folder
    ``src``, keeping the layout) to ``dst``: a ``.ipynb`` path for one notebook, else a folder
    (created if needed). Returns the paths written."""
    src, dst = Path(src), Path(dst)
    if src.is_dir():
        pairs = [(p, dst / p.relative_to(src)) for p in sorted(src.rglob("*.ipynb"))
                 if ".ipynb_checkpoints" not in p.parts]
    elif src.is_file():
        pairs = [(src, dst if dst.suffix == ".ipynb" else dst / src.name)]
    else:
        raise FileNotFoundError(f"no notebook or folder at {src}")
    written = []
    for source, target in pairs:
        notebook = strip_notebook(json.loads(source.read_text(encoding="utf-8")))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(target)
    return written
