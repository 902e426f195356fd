"""The layout: the paper at the top of fot_edu/, one job per subpackage, imports flowing one way."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fot_edu"
# a module may import from its own level or the levels before it (docs/architecture.md, §1)
LEVELS = [
    {"config", "runtime"},
    {"attention", "memory", "faiss_search", "crossbatch", "smear", "qk_conv"},
    {"layer", "model"},
    {"streaming"},
    {"data"},
    {"training", "evaluation"},
    {"teaching"},
    {"cli", "__main__"},
]
MAX_LINES = 305  # about 300: a file past this is doing more than one job
SIDE_BY_SIDE = {("training", "evaluation"), ("evaluation", "training")}


def level(unit: str) -> int:
    return next(i for i, units in enumerate(LEVELS) if unit in units)


def unit_of(module: str) -> str:
    """``fot_edu.evaluation.passkey`` -> ``evaluation``; ``fot_edu.model`` -> ``model``."""
    return module.split(".")[1]


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        yield path, ".".join(p for p in parts if p != "__init__")


def imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("fot_edu"):
            base = node.module
            found += [base] if base != "fot_edu" else [f"fot_edu.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.append("relative")
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("fot_edu")]
    return found


@pytest.mark.parametrize("path,module", list(modules()), ids=lambda x: str(x).split("fot_edu/")[-1])
def test_imports_flow_one_way(path, module):
    if module == "fot_edu":
        return
    mine = unit_of(module)
    for target in imports(path):
        assert target != "relative", f"{module}: relative import (the package imports absolutely)"
        theirs = unit_of(target) if target.count(".") else None
        if theirs is None or theirs == mine:
            continue
        assert (mine, theirs) not in SIDE_BY_SIDE, f"{module} imports {target}: {mine} and {theirs} stand side by side"
        assert level(theirs) <= level(mine), f"{module} imports {target}: an arrow back up"


@pytest.mark.parametrize("path,module", list(modules()), ids=lambda x: str(x).split("fot_edu/")[-1])
def test_every_file_does_one_job(path, module):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines: split it by job"


def test_the_paper_is_at_the_top_and_everything_else_in_a_named_room():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert top == set().union(*LEVELS[:4]), top
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms == {"data", "training", "evaluation", "teaching", "cli"}, rooms
    for room in rooms:
        doc = ast.get_docstring(ast.parse((PACKAGE / room / "__init__.py").read_text()))
        for child in (PACKAGE / room).glob("*.py"):
            if child.stem != "__init__":
                assert f"``{child.stem}``" in doc, f"fot_edu/{room}/__init__.py does not say what {child.stem} is"
