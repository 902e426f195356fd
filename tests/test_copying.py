"""The in-window copy probe and the data that rewards copying (fot_edu.evaluation.copying)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fot_edu.config import ModelConfig
from fot_edu.data.batches import training_batch
from fot_edu.evaluation.copying import _attention_weights, copy_gap, induction_pattern_score, induction_scores
from fot_edu.model import FoTModel
from fot_edu.training.objective import with_task_vocab
from fot_edu.training.presets import preset

CFG = with_task_vocab(preset("text-plain-vanilla"))


class Copier(torch.nn.Module):
    """Predicts the byte ``offset`` positions back: a perfect copier of spans repeated at that
    distance, no better than uniform elsewhere (``offset=None``: uniform everywhere)."""

    def __init__(self, offset):
        super().__init__()
        self.offset = offset

    def forward(self, tokens):
        logits = torch.zeros(*tokens.shape, 256)
        if self.offset is not None:
            source = tokens[:, :tokens.shape[1] - self.offset + 1]  # position t's next byte, offset back
            logits[:, self.offset - 1:].scatter_(-1, source[..., None], 30.0)
        return SimpleNamespace(logits=logits)


@pytest.mark.parametrize("content", ["text", "random"])
def test_copy_gap_is_the_first_copys_loss_for_a_perfect_copier_and_zero_without_copying(content):
    span, gap = 40, 20
    copier = copy_gap(Copier(span + gap), CFG, rows=8, span=span, gap=gap, content=content)
    assert copier["second_copy_nll"] < 1e-3
    assert copier["gap"] == pytest.approx(copier["first_copy_nll"], abs=1e-3)
    uniform = copy_gap(Copier(None), CFG, rows=8, span=span, gap=gap, content=content)
    assert uniform["first_copy_nll"] == pytest.approx(np.log(256), abs=1e-4)
    assert uniform["gap"] == pytest.approx(0.0, abs=1e-6) and uniform["gap_ci95"] == [0.0, 0.0]
    assert uniform["rows"] == 8 and uniform["content"] == content


class Oracle(torch.nn.Module):
    """Knows the next byte and bets ``confidence[t]`` on it at position ``t``: its loss is a known,
    strictly decreasing function of the position, so a mean over the wrong positions shows."""

    def __init__(self, length):
        super().__init__()
        self.confidence = torch.linspace(0.0, 12.0, length)

    def forward(self, tokens):
        logits = torch.zeros(*tokens.shape, 256)
        logits[:, :-1].scatter_(-1, tokens[:, 1:, None], self.confidence[:tokens.shape[1] - 1, None]
                                .expand(tokens.shape[0], -1, 1).contiguous())
        return SimpleNamespace(logits=logits)

    def nll(self, t):  # loss at position t (predicting byte t + 1)
        c = self.confidence[t]
        return float(torch.logsumexp(torch.stack([c, torch.tensor(np.log(255.0))]), 0) - c)


def test_copy_gap_scores_bytes_2_to_span_of_each_copy():
    span, gap = 40, 20
    oracle = Oracle(2 * span + gap)
    got = copy_gap(oracle, CFG, rows=2, span=span, gap=gap, content="random")
    first = np.mean([oracle.nll(t) for t in range(span - 1)])  # predicts bytes 2..span
    second = np.mean([oracle.nll(t) for t in range(span + gap, 2 * span + gap - 1)])
    assert got["first_copy_nll"] == pytest.approx(first, rel=1e-5)
    assert got["second_copy_nll"] == pytest.approx(second, rel=1e-5)
    shifted = np.mean([oracle.nll(t) for t in range(span + gap - 1, 2 * span + gap - 2)])
    assert abs(second - shifted) > 1e-3  # so a slice one byte early would fail


def test_induction_pattern_score_reads_second_copy_to_the_byte_after_the_first_occurrence():
    span, gap = 5, 3
    t = 2 * span + gap
    pattern = {shift: torch.zeros(t, t) for shift in (-1, 0, 1, 2)}
    for i in range(span - 1):
        for shift, w in pattern.items():
            w[span + gap + i, i + 1 + shift] = 1.0
    assert induction_pattern_score(pattern[0], span, gap).item() == 1.0
    for shift in (-1, 1, 2):
        assert induction_pattern_score(pattern[shift], span, gap).item() == 0.0
    half = 0.5 * pattern[0] + 0.5 * pattern[1]
    assert induction_pattern_score(torch.stack([half, pattern[0]]), span, gap).tolist() == [0.5, 1.0]
    with pytest.raises(ValueError, match="span=5, gap=9"):
        induction_pattern_score(pattern[0], span, 9)


@pytest.mark.parametrize("position", ["none", "rope"])
def test_the_probes_attention_weights_are_what_each_layer_attends_with(position):
    cfg = ModelConfig(vocab_size=256, d_model=32, n_heads=4, d_ff=64, n_layers=3, memory_layers=(1,),
                      memory_position=position, smear_keys=(1, 2))
    torch.manual_seed(0)
    model = FoTModel(cfg).eval()
    x = torch.randn(2, 12, 32)
    for block in model.blocks:
        weights = _attention_weights(block.attn, x)
        _, _, v = block.attn.qkv(x)
        expected = block.attn.to_out((weights @ v).transpose(1, 2).flatten(2))
        torch.testing.assert_close(block.attn(x)[0], expected, atol=1e-5, rtol=1e-4)
    out = induction_scores(model, rows=2, span=20, gap=4)
    assert len(out["scores"]) == 3 and all(len(h) == 4 for h in out["scores"])
    assert all(0.0 <= v <= 1.0 for layer in out["scores"] for v in layer)
    assert out["scores"][out["best"][0]][out["best"][1]] == max(map(max, out["scores"]))
    even = torch.tril(torch.ones(44, 44)) / torch.arange(1, 45)[:, None]  # causal, spread evenly
    assert out["uniform"] == round(induction_pattern_score(even, 20, 4).item(), 4)


def test_copy_gap_names_bad_arguments():
    with pytest.raises(ValueError, match="content='code'"):
        copy_gap(Copier(None), CFG, content="code")
    with pytest.raises(ValueError, match="span=200, gap=56 .* window=256"):
        copy_gap(Copier(None), CFG, span=200)
