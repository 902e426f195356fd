"""docs/answers.md answers every question the notebooks ask, and only those.

A notebook's questions: in its last cell, the numbered list ("1. ", "2. ", ...; continuation
lines indented) after the line that starts with ``**Questions``. Question k of ``NN_name`` is
answered in the key under a heading ``### NN.k <opening words>``, whose words must begin the
question, punctuation aside (so a rewritten question shows up here), followed by a non-empty answer.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KEY = ROOT / "docs" / "answers.md"


def _words(text: str) -> list[str]:
    """The words of a text, punctuation and markdown marks left out."""
    return re.sub(r"[^\w\s]", " ", text).split()


def questions(path: Path) -> dict[int, str]:
    """The notebook's numbered questions (number -> text), by the rule of the module docstring."""
    last = "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][-1]["source"])
    match = re.search(r"^\*\*Questions.*$", last, re.M)
    if match is None:
        return {}
    found, number = {}, None
    for line in last[match.end():].splitlines():
        item = re.match(r"(\d+)\. (.*)", line)
        if item:
            number = int(item.group(1))
            found[number] = item.group(2)
        elif number is not None and line.startswith("   "):
            found[number] += " " + line.strip()
        elif line.strip():
            number = None
    return found


def answers() -> dict[tuple[str, int], tuple[str, str]]:
    """(notebook prefix, number) -> (the heading's opening words, the answer's text)."""
    parts = re.split(r"^### (\d\d)\.(\d+) (.*)$", KEY.read_text(encoding="utf-8"), flags=re.M)
    return {(parts[i], int(parts[i + 1])): (parts[i + 2], parts[i + 3].split("\n## ")[0].strip())
            for i in range(1, len(parts), 4)}


def test_the_rule_finds_questions_in_every_lesson():
    asked = {p.stem[:2]: questions(p) for p in NOTEBOOKS}
    assert [k for k, q in asked.items() if q] == ["01", "02", "03", "04", "05", "06", "08"]
    assert all(list(q) == list(range(1, len(q) + 1)) for q in asked.values())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_question_has_an_answer_that_fits_it(path):
    key = answers()
    for number, question in questions(path).items():
        assert (path.stem[:2], number) in key, f"docs/answers.md has no ### {path.stem[:2]}.{number}"
        opening, answer = key[(path.stem[:2], number)]
        assert _words(question)[:len(_words(opening))] == _words(opening), (opening, question)
        assert len(_words(opening)) >= 4 and len(_words(answer)) >= 20, (path.stem, number)


def test_the_key_answers_no_question_that_is_not_asked():
    asked = {(p.stem[:2], n) for p in NOTEBOOKS for n in questions(p)}
    assert set(answers()) == asked
