"""The exercise checkers accept right answers, name typical mistakes, and never raise; the strip
command turns solution blocks into stubs."""
import json

import pytest
import torch
from einops import rearrange

from fot_edu.attention import memory_attention as library_memory_attention
from fot_edu.crossbatch import neighbour_rows
from fot_edu.memory import fifo_slots as library_fifo_slots
from fot_edu.teaching import exercises as ex
from fot_edu.teaching.assignments import NOT_IMPLEMENTED
from fot_edu.teaching.handouts import strip_solutions

FIVE = ["memory_attention", "knn_search", "crossbatch_rows", "distraction_ratio", "fifo_slots"]
# the generic checks below run on every exercise (ex.names()); the wrong versions and library
# references of the six later ones are in test_exercises_more.py


def checked(exercise, fn, capsys):
    ok = exercise.check(fn)
    return ok, capsys.readouterr().out


# -- students' wrong versions, written as a student would ----------------------------------------

def attention(q, k, v, mem_k, mem_v, *, scale=None, causal="tril", joint=True, axis=-1):
    n, dh = q.shape[-2], q.shape[-1]
    scale = dh ** -0.5 if scale is None else scale
    local = q @ k.transpose(-1, -2) * scale
    if causal:
        mask = getattr(torch.ones(n, n, dtype=torch.bool), causal)()
        local = local.masked_fill(~mask, float("-inf"))
    memory = q @ mem_k.transpose(-1, -2) * scale
    if joint:
        w = torch.softmax(torch.cat([local, memory], -1), dim=axis)
        return w @ torch.cat([v, mem_v], -2)
    return torch.softmax(local, -1) @ v + torch.softmax(memory, -1) @ mem_v


def mt_mix(q, k, v, mem_k, mem_v):
    local = attention(q, k, v, mem_k[..., :0, :], mem_v[..., :0, :])
    mem = torch.softmax(q @ mem_k.transpose(-1, -2) * q.shape[-1] ** -0.5, -1) @ mem_v
    g = torch.sigmoid(torch.tensor(0.3))
    return g * mem + (1 - g) * local


def scores(queries, keys):
    return queries @ keys.transpose(-1, -2)


def memory_mass(weights, n_local, d):
    return rearrange(weights[..., n_local:], "b h n (c m) -> b h n c m", c=d).sum(-1)


def loop_slots(write_pos, n, capacity, start=0, wrap=True):
    slots = [write_pos + start + t for t in range(n)]
    return torch.tensor([s % capacity if wrap else s for s in slots])


WRONG = {
    "memory_attention": [
        (lambda q, k, v, mem_k, mem_v: attention(q, k, v, mem_k, mem_v, joint=False), "separate softmax"),
        (mt_mix, "mixed by a gate"),
        (lambda q, k, v, mem_k, mem_v: attention(q, k, v, mem_k, mem_v, causal=None), "missing causal mask"),
        (lambda q, k, v, mem_k, mem_v: attention(q, k, v, mem_k, mem_v, axis=-2), "softmax over the wrong axis"),
        (lambda q, k, v, mem_k, mem_v: attention(q, k, v, mem_k, mem_v, scale=1.0), "wrong scale"),
        (lambda q, k, v, mem_k, mem_v: attention(q, k, v, mem_k, mem_v, causal="triu"), "wrong way round"),
    ],
    "knn_search": [
        (lambda queries, keys, k: scores(queries, keys).topk(k, largest=False).indices, "SMALLEST"),
        (lambda queries, keys, k: scores(queries, keys).topk(k, dim=-2).indices, "wrong axis"),
        (lambda queries, keys, k: scores(queries, keys).argsort(-1)[..., -k:], "not sorted best first"),
        (lambda queries, keys, k: scores(queries, keys).topk(k).values, ".values"),
    ],
    "crossbatch_rows": [
        (lambda b, d: torch.arange(b)[:, None] + torch.arange(d)[None, :], "no wrap-around"),
        (lambda b, d: (torch.arange(b)[:, None] + torch.arange(1, d + 1)[None, :]) % b, "own row is missing"),
        (lambda b, d: torch.tensor([sorted((i + j) % b for j in range(d)) for i in range(b)]), "sorted"),
        (lambda b, d: torch.tensor([[(i + j) % b for j in range(1, d)] + [i] for i in range(b)]),
         "own row is not first"),
    ],
    "distraction_ratio": [
        (lambda weights, n_local, d: (memory_mass(weights, n_local, d)[..., 0] / weights.sum(-1)).mean().item(),
         "local mass counted"),
        (lambda weights, n_local, d: (memory_mass(weights, n_local, d)[..., 0]
                                      / memory_mass(weights, n_local, d)[..., 0].sum(-1, keepdim=True)).mean().item(),
         "ratio over the wrong axis"),
        (lambda weights, n_local, d: (memory_mass(weights, n_local, d)[..., 0].sum()
                                      / memory_mass(weights, n_local, d).sum()).item(), "ratio of sums"),
        (lambda weights, n_local, d: (memory_mass(weights, n_local, d)[..., -1]
                                      / memory_mass(weights, n_local, d).sum(-1)).mean().item(), "not the last"),
    ],
    "fifo_slots": [
        (lambda write_pos, n, capacity: loop_slots(write_pos, n, capacity, wrap=False), "no wrap-around"),
        (lambda write_pos, n, capacity: loop_slots(write_pos, n, capacity, start=1), "off-by-one"),
        (lambda write_pos, n, capacity: loop_slots(write_pos, n, capacity), "n > capacity"),
        (lambda write_pos, n, capacity: (write_pos - torch.arange(n)) % capacity, "runs backwards"),
    ],
}

LIBRARY = {
    "memory_attention": library_memory_attention,  # returns (out, weights): the checker takes out
    "crossbatch_rows": neighbour_rows,
    "fifo_slots": library_fifo_slots,
}


def test_names_lists_the_five():
    assert set(FIVE) <= set(ex.names())
    assert all(isinstance(getattr(ex, name), ex.Exercise) for name in ex.names())


@pytest.mark.parametrize("name", ex.names())
def test_the_printed_solution_and_the_library_pass(name, capsys):
    exercise = getattr(ex, name)
    for fn in [exercise.solution_function()] + ([LIBRARY[name]] if name in LIBRARY else []):
        ok, out = checked(exercise, fn, capsys)
        assert ok is True and out.startswith(f"Correct: {name} agrees"), out


@pytest.mark.parametrize("name, index", [(n, i) for n in FIVE for i in range(len(WRONG[n]))])
def test_a_typical_mistake_fails_and_is_named(name, index, capsys):
    fn, words = WRONG[name][index]
    ok, out = checked(getattr(ex, name), fn, capsys)
    assert ok is False
    assert out.startswith(f"Incorrect: {name}, case ") and "Likely mistake: " in out, out
    assert words in out, out


@pytest.mark.parametrize("name", ex.names())
def test_not_implemented_errors_and_bad_outputs_never_escape(name, capsys):
    exercise = getattr(ex, name)

    def stub(*args, **kwargs):
        raise NotImplementedError()

    assert checked(exercise, stub, capsys) == (False, NOT_IMPLEMENTED + "\n")

    def crash(*args, **kwargs):
        raise ValueError("oops\nsecond line")

    ok, out = checked(exercise, crash, capsys)
    assert ok is False and f"{name} raised ValueError: oops" in out and "second line" not in out
    ok, out = checked(exercise, lambda *args, **kwargs: None, capsys)
    assert ok is False and "got NoneType" in out
    ok, out = checked(exercise, "not a function", capsys)
    assert ok is False and "pass your function itself" in out


@pytest.mark.parametrize("name", ["memory_attention", "crossbatch_rows", "fifo_slots",
                                  "rope_memory_logits"])
def test_a_wrong_shape_says_expected_and_got(name, capsys):
    exercise = getattr(ex, name)
    right = exercise.solution_function()
    ok, out = checked(exercise, lambda *a, **kw: right(*a, **kw)[..., None], capsys)
    assert ok is False and "wrong shape: expected (" in out and ", got (" in out, out


def test_a_student_may_name_the_arguments_differently(capsys):
    def knn_search(q, memory_keys, top):
        return (q @ memory_keys.transpose(-1, -2)).topk(top, dim=-1).indices

    assert checked(ex.knn_search, knn_search, capsys)[0] is True


def test_an_unnamed_mistake_reports_the_first_difference(capsys):
    def off(q, k, v, mem_k, mem_v):
        return library_memory_attention(q, k, v, mem_k, mem_v)[0] + 0.5 * (q.shape[-2] > 1)

    ok, out = checked(ex.memory_attention, off, capsys)
    assert ok is False and "Likely mistake: " not in out
    assert "case 1 of 4 (q (2, 3, 6, 8)" in out and "max abs difference 0.5 at index (" in out


@pytest.mark.parametrize("name", ex.names())
def test_hint_and_solution_print(name, capsys):
    getattr(ex, name).hint()
    assert name in capsys.readouterr().out
    getattr(ex, name).solution()
    assert f"def {name}(" in capsys.readouterr().out


def test_fifo_slots_is_what_the_memory_writes():
    from fot_edu.memory import KNNMemory
    mem = KNNMemory(1, 1, 1, capacity=4)
    mem.add(torch.zeros(1, 1, 3, 1), torch.zeros(1, 1, 3, 1))
    items = torch.arange(1.0, 7.0).view(1, 1, 6, 1)  # 6 items into 4 slots, from write_pos 3
    slots = library_fifo_slots(3, 6, 4)
    assert slots.tolist() == [-1, -1, 3, 0, 1, 2]
    mem.add(items, items)
    assert mem.keys[0, 0, slots[2:], 0].tolist() == items[0, 0, 2:, 0].tolist()


# -- strip ---------------------------------------------------------------------------------------

SOLUTION_CELL = [
    "import torch\n",
    "\n",
    "def knn_search(queries, keys, k):\n",
    "    \"\"\"Top-k keys by inner product.\"\"\"\n",
    "    ### BEGIN SOLUTION\n",
    "    scores = queries @ keys.transpose(-1, -2)\n",
    "    return scores.topk(k, dim=-1).indices\n",
    "    ### END SOLUTION\n",
    "\n",
    "print('defined')",
]
CHECK_CELL = "from fot_edu.teaching import exercises as ex\nresult = ex.knn_search.check(knn_search)"


def notebook(cells):
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3"}}, "nbformat": 4,
            "nbformat_minor": 5}


def code(source, outputs=()):
    return {"cell_type": "code", "execution_count": 3, "id": "c", "metadata": {},
            "outputs": list(outputs), "source": source}


def test_strip_replaces_solutions_clears_outputs_and_checks_say_not_implemented(tmp_path, capsys):
    output = {"output_type": "stream", "name": "stdout", "text": ["defined\n"]}
    markdown = {"cell_type": "markdown", "id": "m", "metadata": {}, "source": ["### BEGIN SOLUTION is prose here"]}
    src = tmp_path / "lesson.ipynb"
    src.write_text(json.dumps(notebook([markdown, code(SOLUTION_CELL, [output]), code(CHECK_CELL)])))
    written = strip_solutions(src, tmp_path / "student")
    assert written == [tmp_path / "student" / "lesson.ipynb"]
    cells = json.loads(written[0].read_text())["cells"]
    assert cells[0] == markdown
    stripped = "".join(cells[1]["source"])
    assert stripped == ('import torch\n\ndef knn_search(queries, keys, k):\n    """Top-k keys by inner product."""\n'
                        "    # YOUR CODE HERE\n    raise NotImplementedError()\n\nprint('defined')")
    assert "SOLUTION" not in stripped and "topk" not in stripped
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in cells[1:])
    assert cells[2]["source"] == CHECK_CELL

    namespace = {}
    for cell in cells[1:]:
        exec("".join(cell["source"]), namespace)
    assert namespace["result"] is False
    assert capsys.readouterr().out == "defined\n" + NOT_IMPLEMENTED + "\n"


def test_strip_a_folder_keeps_the_layout_and_leaves_the_source(tmp_path):
    (tmp_path / "src" / "part2").mkdir(parents=True)
    original = json.dumps(notebook([code(SOLUTION_CELL)]))
    for path in ("src/a.ipynb", "src/part2/b.ipynb"):
        (tmp_path / path).write_text(original)
    written = strip_solutions(tmp_path / "src", tmp_path / "out")
    assert written == [tmp_path / "out" / "a.ipynb", tmp_path / "out" / "part2" / "b.ipynb"]
    assert (tmp_path / "src" / "a.ipynb").read_text() == original
    with pytest.raises(FileNotFoundError):
        strip_solutions(tmp_path / "missing.ipynb", tmp_path / "out")


def test_strip_to_a_notebook_path(tmp_path):
    (tmp_path / "a.ipynb").write_text(json.dumps(notebook([code(SOLUTION_CELL)])))
    assert strip_solutions(tmp_path / "a.ipynb", tmp_path / "b.ipynb") == [tmp_path / "b.ipynb"]
    assert "raise NotImplementedError()" in "".join(json.loads((tmp_path / "b.ipynb").read_text())
                                                    ["cells"][0]["source"])


@pytest.mark.parametrize("name", ex.names())
def test_every_known_mistake_is_told_apart(name, capsys):
    """A function that makes exactly one of the checker's known mistakes gets that diagnosis
    (not an earlier one in the list): each variant differs from the answer and from the others."""
    exercise = getattr(ex, name)
    arg_names = list(exercise.cases()[0])
    for message, variant in exercise.mistakes:
        if variant.__name__ == "_gated_mix":  # fitted to the student's output: see mt_mix above
            continue
        ok, out = checked(exercise, lambda *args: variant(dict(zip(arg_names, args)), None), capsys)
        assert ok is False and f"Likely mistake: {message}" in out, (message, out)
