"""The in-window copy probe and the data that rewards copying (fot_edu.evaluation.copying)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fot_edu.data.batches import training_batch
from fot_edu.evaluation.copying import PRINTABLE, copy_gap, with_repeats
from fot_edu.training.objective import with_task_vocab
from fot_edu.training.presets import preset

CFG = with_task_vocab(preset("text-vanilla"))


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


def test_copy_gap_names_bad_arguments():
    with pytest.raises(ValueError, match="content='code'"):
        copy_gap(Copier(None), CFG, content="code")
    with pytest.raises(ValueError, match="span=200, gap=56 .* window=256"):
        copy_gap(Copier(None), CFG, span=200)


def repeats(share, seed=0, background="text", lengths=(16, 64)):
    batch = training_batch(CFG.data, "train", 8, step=3)
    return batch, with_repeats(batch, share, np.random.default_rng(seed), lengths=lengths,
                               background=background)


def test_with_repeats_writes_one_string_twice_into_every_window_of_the_chosen_rows():
    batch, out = repeats(1.0, lengths=(20, 20))
    b, w, n = out.tokens.shape
    flat = torch.cat([out.tokens.reshape(b, -1), out.targets.reshape(b, -1)[:, -1:]], 1)
    assert torch.equal(flat[:, 1:].reshape(b, w, n), out.targets)  # targets follow the tokens
    for row in range(b):
        for j in range(w):
            window = out.tokens[row, j].tolist()
            changed = (out.tokens[row, j] != batch.tokens[row, j]).nonzero().flatten().tolist()
            assert changed, "every window of a chosen row is changed"
            first = next(i for i in range(n - 20) if any(
                window[i:i + 20] == window[k:k + 20] for k in range(i + 20, n - 19)))
            assert all(PRINTABLE[0] <= c < PRINTABLE[1] for c in window[first:first + 20])


def test_with_repeats_keeps_unchosen_rows_and_is_a_function_of_its_generator():
    batch, none = repeats(0.0)
    assert torch.equal(none.tokens, batch.tokens) and torch.equal(none.targets, batch.targets)
    _, again_a = repeats(0.5, seed=4)
    _, again_b = repeats(0.5, seed=4)
    assert torch.equal(again_a.tokens, again_b.tokens)
    _, noise = repeats(1.0, background="random")
    assert noise.tokens.min() >= PRINTABLE[0] and noise.tokens.max() < PRINTABLE[1]


@pytest.mark.parametrize("kwargs, match", [
    (dict(share=1.5), "share=1.5"),
    (dict(share=0.5, background="books"), "background='books'"),
    (dict(share=0.5, lengths=(16, 200)), r"lengths=\(16, 200\)"),
])
def test_with_repeats_names_bad_arguments(kwargs, match):
    batch = training_batch(CFG.data, "train", 2, step=0)
    with pytest.raises(ValueError, match=match):
        with_repeats(batch, rng=np.random.default_rng(0), **kwargs)
