"""Every figure the README states is held by a results record written by a script.

A *figure* here is a decimal number with at least two decimals (``0.958``, ``[0.39, 0.47]``,
``+0.295``, ``3.514``; a minus sign right before it is part of it: ``-0.0182`` must be held
as negative) or a number with a thousands separator (``10,708``), outside code blocks
and inline code. It is held when some number in a record rounds to it at the README's precision.
Records: ``results/checkpoints.json`` (scripts/reproduce.py) and ``results/records/*.json``
(benchmarks/*.py, scripts/time_notebooks.py). A figure that is not a measurement (a constant, a
version) goes in ``NOT_FIGURES`` with the reason.
"""
from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDS = [ROOT / "results" / "checkpoints.json", *sorted((ROOT / "results" / "records").glob("*.json"))]

NOT_FIGURES = {
    "0.02": "GPT-2's initial weight std, a constant the README contrasts with ours",
    "16,384": "the 32x passkey prompt's length in bytes (32 x 512), a setting",
    "32,768": "the 64x passkey prompt's length in bytes (64 x 512), a setting",
    "2307.03170": "the paper's arXiv id",
    "3.10": "the oldest supported Python",
}

_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)
_FIGURE = re.compile(r"(?<![\w.])(-?\d{1,3}(?:,\d{3})+|-?\d+\.\d{2,})(?![\w.]*\d)")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE]-?\d+)?")


def record_numbers() -> list[Decimal]:
    found: list[Decimal] = []

    def walk(value):
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            found.append(Decimal(repr(value)))
        elif isinstance(value, str):
            found.extend(Decimal(m) for m in _NUMBER.findall(value))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for path in RECORDS:
        walk(json.loads(path.read_text()))
    return found


def readme_figures(text: str) -> list[str]:
    prose = _CODE.sub(" ", text)
    return [m.group(1) for m in _FIGURE.finditer(prose)]


def held(figure: str, numbers: list[Decimal]) -> bool:
    value = Decimal(figure.replace(",", ""))
    quantum = Decimal(1).scaleb(value.as_tuple().exponent)
    return any(abs(n - value) <= quantum / 2 for n in numbers)


def test_every_readme_figure_is_in_a_record():
    numbers = record_numbers()
    text = (ROOT / "README.md").read_text()
    missing = sorted({f for f in readme_figures(text) if f not in NOT_FIGURES and not held(f, numbers)})
    assert not missing, (f"README figures held by no record ({', '.join(p.name for p in RECORDS)}): "
                         f"{missing}")


def test_the_check_finds_figures_and_tells_held_from_missing():
    assert readme_figures("acc 0.958 [0.39, 0.47], 10,708 tok/s, `0.123` v3.11.7 x 4.7x") == \
        ["0.958", "0.39", "0.47", "10,708"]
    assert readme_figures("drop -0.0182 [-0.0232, -0.0136], range 0.28-0.51") == \
        ["-0.0182", "-0.0232", "-0.0136", "0.28", "0.51"]
    assert held("-0.018", [Decimal("-0.0182")]) and not held("0.018", [Decimal("-0.0182")])
    numbers = [Decimal("0.95781"), Decimal("10708.2")]
    assert held("0.958", numbers) and held("0.96", numbers) and held("10,708", numbers)
    assert not held("0.957", numbers) and not held("0.95", numbers)
