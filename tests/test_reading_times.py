"""Each notebook states its time by the rule of docs/teaching.md ("How long each notebook takes"):
words of all cells / 200 per minute + 5 minutes per exercise + the recorded Run All time
(results/records/notebook-times.json), rounded up to the next 5 minutes."""
import json
import math
import re
from pathlib import Path

import pytest

from fot_edu.teaching.handouts import exercise_cells

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
RECORD = json.loads((ROOT / "results" / "records" / "notebook-times.json").read_text())["notebooks"]
WORDS_PER_MINUTE, MINUTES_PER_EXERCISE, ROUND_TO = 200, 5, 5


def rule_minutes(book: dict, run_all_seconds: float) -> int:
    words = sum(len("".join(c["source"]).split()) for c in book["cells"])
    minutes = (words / WORDS_PER_MINUTE + MINUTES_PER_EXERCISE * len(exercise_cells(book))
               + run_all_seconds / 60)
    return ROUND_TO * math.ceil(minutes / ROUND_TO)


def test_the_rule_counts_exercises_and_run_all():
    cell = {"cell_type": "markdown", "metadata": {}, "source": ["word " * 400]}  # 2 minutes
    assert rule_minutes({"cells": [cell]}, 60) == 5 and rule_minutes({"cells": [cell]}, 240) == 10


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stated_time_follows_the_rule(path):
    book = json.loads(path.read_text(encoding="utf-8"))
    first = "".join(book["cells"][0]["source"])
    stated = re.search(r"\*\*Time:\*\* about (\d+) minutes", first)
    assert stated, f"{path.name}: no '**Time:** about N minutes' in the first cell"
    assert RECORD[path.name]["ok"]
    assert int(stated.group(1)) == rule_minutes(book, RECORD[path.name]["seconds"]), path.name
