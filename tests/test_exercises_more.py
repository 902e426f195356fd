"""The six later exercises (mt_attention, memory_logits, crossbatch_keys, perplexity,
score_passkey, parse_length): right answers pass, typical mistakes are named; and every
exercise a notebook checks exists, with the notebook's own solution passing."""
import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from fot_edu import exercises as ex
from fot_edu.attention import mt_attention as library_mt_attention
from fot_edu.crossbatch import crossbatch_memory
from fot_edu.long_context import parse_length as library_parse_length
from fot_edu.passkey import score_passkey as library_score_passkey

ALL = ["memory_attention", "mt_attention", "memory_logits", "knn_search", "fifo_slots",
       "crossbatch_rows", "distraction_ratio", "crossbatch_keys", "perplexity", "parse_length",
       "score_passkey"]
SIX = ["mt_attention", "memory_logits", "crossbatch_keys", "perplexity", "score_passkey", "parse_length"]
NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def checked(exercise, fn, capsys):
    ok = exercise.check(fn)
    return ok, capsys.readouterr().out


# -- students' wrong versions, written as a student would ----------------------------------------

def mt(q, k, v, mem_k, mem_v, gate_bias, *, sigmoid=True, swap=False, causal=True, view=(-1, 1, 1)):
    n, dh = q.shape[-2], q.shape[-1]
    local = q @ k.transpose(-1, -2) * dh ** -0.5
    if causal:
        local = local.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
    out_local = torch.softmax(local, -1) @ v
    out_mem = torch.softmax(q @ mem_k.transpose(-1, -2) * dh ** -0.5, -1) @ mem_v
    g = (torch.sigmoid(gate_bias) if sigmoid else gate_bias).view(view)
    if swap:
        out_mem, out_local = out_local, out_mem
    return g * out_mem + (1 - g) * out_local


def cosines(q, k, dim=-1):
    return F.normalize(q, dim=dim) @ F.normalize(k, dim=dim).transpose(-1, -2)


def rolled(prev_keys, d, shifts, dim=2):
    return torch.cat([torch.roll(prev_keys, s, 0) for s in shifts], dim=dim)


def nll(logits, targets, reduction="mean"):
    keep = targets != -100
    return F.cross_entropy(logits[keep], targets[keep], reduction=reduction)


def first_number(text):
    match = re.search(r"\d+", text)
    return match.group() if match else None


WRONG = {
    "mt_attention": [
        (lambda q, k, v, mem_k, mem_v, gate_bias: ex.memory_attention.solution_function()(q, k, v, mem_k, mem_v),
         "one joint softmax"),
        (lambda *a: mt(*a, sigmoid=False), "not passed through a sigmoid"),
        (lambda *a: mt(*a, swap=True), "the gate on the wrong side"),
        (lambda *a: mt(*a, causal=False), "missing causal mask"),
        (lambda *a: mt(*a, view=(-1,)), "over the last axis"),
    ],
    "memory_logits": [
        (lambda q, k, tau: tau.view(1, -1, 1, 1) * (q @ k.transpose(-1, -2)), "no normalisation"),
        (lambda q, k, tau: tau.view(1, -1, 1, 1) * cosines(q, k, dim=2), "normalised over the wrong axis"),
        (lambda q, k, tau: cosines(q, k) / q.shape[-1] ** 0.5, "instead of tau"),
        (lambda q, k, tau: cosines(q, k) * tau, "tau on the wrong axis"),
        (lambda q, k, tau: torch.softmax(tau.view(-1, 1, 1) * cosines(q, k), dim=-1), "a softmax taken"),
    ],
    "crossbatch_keys": [
        (lambda prev_keys, d: torch.cat([prev_keys[[min(i + j, len(prev_keys) - 1) for i in range(len(prev_keys))]]
                                         for j in range(d)], dim=2), "no wrap-around"),
        (lambda prev_keys, d: rolled(prev_keys, d, range(d)), "rows in the wrong order"),
        (lambda prev_keys, d: rolled(prev_keys, d, [-j for j in range(d)], dim=-1), "the head dim"),
        (lambda prev_keys, d: rolled(prev_keys, d, [-j - 1 for j in range(d)]), "own row is missing"),
        (lambda prev_keys, d: torch.stack([torch.roll(prev_keys, -j, 0) for j in range(d)], dim=3).flatten(2, 3),
         "interleaved slot by slot"),
    ],
    "perplexity": [
        (lambda logits, targets: F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
         .mean().exp().item(), "ignored targets counted"),
        (lambda logits, targets: nll(logits, targets, "sum").exp().item(), "exp of the SUM"),
        (lambda logits, targets: nll(logits, targets).item(), "not exponentiated"),
        (lambda logits, targets: 1 / torch.softmax(logits, -1)[targets != -100]
         .gather(-1, targets[targets != -100][:, None]).mean().item(), "the probabilities averaged"),
        (lambda logits, targets: 2 ** nll(logits, targets).item(), "not 2 ** mean"),
        (lambda logits, targets: F.cross_entropy(rearrange(logits[:, :-1], "b n v -> (b n) v"),
                                                 targets[:, 1:].flatten()).exp().item(), "shifted once more"),
    ],
    "score_passkey": [
        (lambda generated_text, key: str(key) in generated_text, "a substring test"),
        (lambda generated_text, key: generated_text.strip().startswith(str(key)), "the first digits only"),
        (lambda generated_text, key: key in [int(x) for x in re.findall(r"\d+", generated_text)], "any number"),
        (lambda generated_text, key: first_number(generated_text) is not None
         and str(key).startswith(first_number(generated_text)), "the leading digits of the key"),
        (lambda generated_text, key: first_number(generated_text) == key, "convert the matched text"),
    ],
    "parse_length": [
        (lambda spec, window: int(float(spec[:-1]) * window) if spec.endswith("x") else int(spec),
         "x times the window"),
        (lambda spec, window: float(spec[:-1]) * 2 * window if spec.endswith("x") else int(spec), "a float result"),
        (lambda spec, window: int(spec[:-1].split(".")[0]) * 2 * window if spec.endswith("x") else int(spec),
         "truncated before multiplying"),
        (lambda spec, window: int(float(spec[:-1])) if spec.endswith("x") else int(spec),
         "taken as a number of tokens"),
    ],
}

LIBRARY = {
    "mt_attention": library_mt_attention,  # returns (out, extra): the checker takes out
    "crossbatch_keys": lambda prev_keys, d: crossbatch_memory(prev_keys, prev_keys, d)[0],
    "perplexity": lambda logits, targets: F.cross_entropy(logits.transpose(1, 2), targets).exp().item(),
    "score_passkey": library_score_passkey,
    "parse_length": library_parse_length,
}


def test_names_lists_all_eleven_in_notebook_order():
    assert ex.names() == ALL
    assert all(isinstance(getattr(ex, name), ex.Exercise) and getattr(ex, name).name == name for name in ALL)
    assert set(ALL) <= set(ex.__all__)


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_the_library_passes(name, capsys):
    ok, out = checked(getattr(ex, name), LIBRARY[name], capsys)
    assert ok is True and out.startswith(f"Correct: {name} agrees"), out


def test_memory_logits_is_what_a_memory_layer_computes():
    """The model's memory layer: normalised q and k, q scaled by tau_h, then scale=1.0."""
    from fot_edu.config import ModelConfig
    from fot_edu.model import Attention
    layer = Attention(ModelConfig(memory_layers=(0,), n_layers=2), index=0)
    with torch.no_grad():
        layer.log_tau.copy_(torch.linspace(1.0, 3.0, layer.log_tau.numel()))
        x = torch.randn(2, 5, layer.cfg.d_model)
        q_raw, k_raw, _ = rearrange(layer.to_qkv(x), "b n (three h dh) -> three b h n dh", three=3,
                                    h=layer.cfg.n_heads)
        q, k, _ = layer.qkv(x)
        model = (q * layer.log_tau.exp().view(1, -1, 1, 1)) @ k.transpose(-1, -2)
        student = ex.memory_logits.solution_function()
        assert torch.allclose(student(q_raw, k_raw, layer.log_tau.exp()), model, atol=1e-5)


@pytest.mark.parametrize("name, index", [(n, i) for n in SIX for i in range(len(WRONG[n]))])
def test_a_typical_mistake_fails_and_is_named(name, index, capsys):
    fn, words = WRONG[name][index]
    ok, out = checked(getattr(ex, name), fn, capsys)
    assert ok is False
    assert out.startswith(f"Incorrect: {name}, case ") and "Likely mistake: " in out, out
    assert words in out, out


@pytest.mark.parametrize("name", SIX)
def test_three_or_more_mistakes_are_known(name):
    """The generic checks (solution, told apart, not implemented, crashes, hint) run on every
    exercise in test_exercises.py."""
    assert len(getattr(ex, name).mistakes) >= 3 and len(WRONG[name]) >= 3


def test_a_float_length_and_a_none_score_say_what_was_expected(capsys):
    ok, out = checked(ex.parse_length, lambda spec, window: float(library_parse_length(spec, window)), capsys)
    assert ok is False and "expected an int (a number of tokens), got the float 4096.0" in out, out
    ok, out = checked(ex.score_passkey, lambda text, key: (m := re.search(r"\d+", text)) and int(m.group()) == key,
                      capsys)  # `match and ...` is None, not False, when there is no digit
    assert ok is False and "expected True or False, got NoneType" in out and "' the key'" in out, out


def test_an_unnamed_perplexity_mistake_reports_both_numbers(capsys):
    ok, out = checked(ex.perplexity, lambda logits, targets: LIBRARY["perplexity"](logits, targets) + 1, capsys)
    assert ok is False and "Likely mistake" not in out and re.search(r"expected [\d.]+, got [\d.]+", out), out


def _solution_cells(path):
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "code" and "### BEGIN SOLUTION" in text:
            yield text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_checks_only_known_exercises_and_its_solutions_pass(path, capsys):
    checks = re.findall(r"ex\.(\w+)\.check\(", path.read_text(encoding="utf-8"))
    assert set(checks) <= set(ALL), checks
    for text in _solution_cells(path):
        match = re.search(r"^def (\w+)\(", text, re.M)
        if match and (name := match.group(1)) in ALL:
            namespace = {"torch": torch, "F": F, "rearrange": rearrange, "re": re}
            exec(text, namespace)
            ok, out = checked(getattr(ex, name), namespace[name], capsys)
            assert ok is True, (path.name, out)
