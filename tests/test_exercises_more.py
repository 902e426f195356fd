"""The later exercises (mt_attention, memory_logits, crossbatch_keys, perplexity, score_passkey,
parse_length; the LongLLaMA notebook's rope_memory_logits and relative_drop): right answers pass,
typical mistakes are named; and every exercise a notebook checks exists, with the notebook's own
solution passing."""
import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from fot_edu.attention import mt_attention as library_mt_attention
from fot_edu.crossbatch import crossbatch_memory
from fot_edu.data.passkey import score_passkey as library_score_passkey
from fot_edu.evaluation.passkey import parse_length as library_parse_length
from fot_edu.evaluation.perplexity import relative_drop as library_relative_drop
from fot_edu.teaching import exercises as ex

ALL = ["memory_attention", "mt_attention", "memory_logits", "knn_search", "fifo_slots",
       "crossbatch_rows", "distraction_ratio", "crossbatch_keys", "perplexity", "parse_length",
       "score_passkey", "rope_memory_logits", "relative_drop"]
SIX = ["mt_attention", "memory_logits", "crossbatch_keys", "perplexity", "score_passkey", "parse_length"]
LONGLLAMA = ["rope_memory_logits", "relative_drop"]
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


def rope(x, cos, sin, *, halves=False, sign=1.0):
    n = x.shape[-2]
    cos, sin = cos[:n], sign * sin[:n]
    if halves:
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


def rope_logits(q, mem_k, cos, sin, *, rotate_q=True, rotate_k=False, scale=True, **kw):
    q = rope(q, cos, sin, **kw) if rotate_q else q
    mem_k = rope(mem_k, cos, sin) if rotate_k else mem_k
    return q @ mem_k.transpose(-1, -2) * (q.shape[-1] ** -0.5 if scale else 1.0)


def pooled_ppl(units):
    return torch.exp(units[:, 0].sum() / units[:, 1].sum())


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
    "rope_memory_logits": [
        (lambda q, mem_k, cos, sin: rope_logits(q, mem_k, cos, sin, rotate_k=True), "memory keys rotated too"),
        (lambda q, mem_k, cos, sin: rope_logits(q, mem_k, cos, sin, rotate_q=False), "queries not rotated"),
        (lambda q, mem_k, cos, sin: rope_logits(q, mem_k, cos, sin, halves=True), "rotate half"),
        (lambda q, mem_k, cos, sin: rope_logits(q, mem_k, cos, sin, sign=-1.0), "wrong direction"),
        (lambda q, mem_k, cos, sin: rope_logits(q, mem_k, cos, sin, scale=False), "not scaled"),
        (lambda q, mem_k, cos, sin: torch.softmax(rope_logits(q, mem_k, cos, sin), -1), "a softmax taken"),
    ],
    "relative_drop": [
        (lambda with_memory, without_memory: (1 - (with_memory[:, 0] / with_memory[:, 1]).exp()
                                              / (without_memory[:, 0] / without_memory[:, 1]).exp()).mean().item(),
         "own drops averaged"),
        (lambda with_memory, without_memory: (1 - pooled_ppl(without_memory) / pooled_ppl(with_memory)).item(),
         "upside down"),
        (lambda with_memory, without_memory: (pooled_ppl(with_memory) / pooled_ppl(without_memory) - 1).item(),
         "a rise, not a drop"),
        (lambda with_memory, without_memory: (1 - with_memory[:, 0].sum() / without_memory[:, 0].sum()).item(),
         "the losses compared"),
        (lambda with_memory, without_memory: (pooled_ppl(without_memory) - pooled_ppl(with_memory)).item(),
         "an absolute difference"),
    ],
}

LIBRARY = {
    "mt_attention": library_mt_attention,  # returns (out, extra): the checker takes out
    "crossbatch_keys": lambda prev_keys, d: crossbatch_memory(prev_keys, prev_keys, d)[0],
    "perplexity": lambda logits, targets: F.cross_entropy(logits.transpose(1, 2), targets).exp().item(),
    "score_passkey": library_score_passkey,
    "parse_length": library_parse_length,
    "relative_drop": lambda with_memory, without_memory: float(
        library_relative_drop(torch.cat([with_memory, without_memory], -1)[None])[0]),
}


def test_names_lists_all_thirteen_in_notebook_order():
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
    from fot_edu.layer import Attention
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


@pytest.mark.parametrize("name, index", [(n, i) for n in SIX + LONGLLAMA for i in range(len(WRONG[n]))])
def test_a_typical_mistake_fails_and_is_named(name, index, capsys):
    fn, words = WRONG[name][index]
    ok, out = checked(getattr(ex, name), fn, capsys)
    assert ok is False
    assert out.startswith(f"Incorrect: {name}, case ") and "Likely mistake: " in out, out
    assert words in out, out


@pytest.mark.parametrize("name", SIX + LONGLLAMA)
def test_three_or_more_mistakes_are_known(name):
    """The generic checks (solution, told apart, not implemented, crashes, hint) run on every
    exercise in test_exercises.py."""
    assert len(getattr(ex, name).mistakes) >= 3 and len(WRONG[name]) >= 3


def test_rope_memory_logits_is_what_a_rope_kept_memory_layer_computes():
    """LongLLaMA's memory layer reading a memory of another window's keys: its attention weights
    are one softmax over [RoPE'd local logits | the exercise's memory logits]; the memory stores
    the unrotated keys (position 0) and adds no parameter."""
    from fot_edu.config import ModelConfig
    from fot_edu.layer import Attention, Streaming
    from fot_edu.memory import KNNMemory
    torch.manual_seed(0)
    cfg = ModelConfig(memory_layers=(0,), n_layers=2, memory_position="rope")
    layer = Attention(cfg, index=0)
    assert not hasattr(layer, "log_tau")
    b, n, m, h, dh = 2, 6, 5, cfg.n_heads, cfg.head_dim
    split = lambda x: rearrange(layer.to_qkv(x), "b n (three h dh) -> three b h n dh", three=3, h=h)  # noqa: E731
    with torch.no_grad():
        x, x_mem = torch.randn(b, n, cfg.d_model), torch.randn(b, m, cfg.d_model)
        _, mem_k, mem_v = split(x_mem)
        stored = layer.qkv(x_mem)[1]
        assert torch.equal(stored, mem_k)  # memory keeps the keys unrotated
        memory = KNNMemory(b, h, dh, capacity=m)
        memory.add(stored, mem_v)
        _, trace = layer(x, Streaming({0: memory}, k=None, add=False), trace=True)
        q, k, _ = split(x)
        cos, sin = layer.rope.cos[:n], layer.rope.sin[:n]
        local = (layer.rope(q) @ layer.rope(k).transpose(-1, -2) * dh ** -0.5).masked_fill(
            ~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
        student = ex.rope_memory_logits.solution_function()
        weights = torch.softmax(torch.cat([local, student(q, mem_k, cos, sin)], -1), -1)
        assert torch.allclose(trace.weights, weights, atol=1e-5)


def test_relative_drop_is_the_drop_perplexity_vs_memory_reports():
    """Pooled over documents, the drop is 1 - ppl(M) / ppl(0) of the reported perplexities."""
    from fot_edu.config import DataConfig, ModelConfig, TrainConfig
    from fot_edu.evaluation.perplexity import perplexity_vs_memory
    from fot_edu.model import FoTModel
    torch.manual_seed(0)
    cfg = TrainConfig(model=ModelConfig(n_layers=2, d_model=32, n_heads=2, d_ff=64, memory_layers=(1,),
                                        memory_position="rope"),
                      data=DataConfig(task="books", window=32))
    res = perplexity_vs_memory(FoTModel(cfg.model), cfg, (0, 64), num_docs=2, max_tokens_per_doc=128, k=4)
    ppl = res["perplexity"]
    assert res["drop"][64] == pytest.approx(1 - ppl[64] / ppl[0], rel=1e-9, abs=1e-12)


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
    checks = re.findall(r"ex\.(\w+)\.(?:check|assert_correct)\(", path.read_text(encoding="utf-8"))
    assert set(checks) <= set(ALL), checks
    for text in _solution_cells(path):
        match = re.search(r"^def (\w+)\(", text, re.M)
        if match and (name := match.group(1)) in ALL:
            namespace = {"torch": torch, "F": F, "rearrange": rearrange, "re": re}
            exec(text, namespace)
            ok, out = checked(getattr(ex, name), namespace[name], capsys)
            assert ok is True, (path.name, out)
