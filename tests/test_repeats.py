"""Data that pays for copying (fot_edu.data.repeats): strings written twice, in one window or
across two, and the DataConfig.repeats schedules that name them for a training run."""
import json

import numpy as np
import pytest
import torch

from fot_edu.config import DataConfig, TrainConfig
from fot_edu.data.batches import Batch, training_batch
from fot_edu.data.repeats import MIXES, PRINTABLE, scheduled_repeats, with_repeats
from fot_edu.training.objective import default_batch_fn, with_task_vocab
from fot_edu.training.presets import preset

CFG = with_task_vocab(preset("text-plain-vanilla"))


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


def test_with_repeats_across_windows_puts_the_second_copy_in_the_next_window():
    batch = training_batch(CFG.data, "train", 8, step=3)
    out = with_repeats(batch, 1.0, np.random.default_rng(0), lengths=(20, 20), across=True)
    for row in range(8):
        prev, curr = out.tokens[row, 0].tolist(), out.tokens[row, 1].tolist()
        assert any(curr[i:i + 20] == prev[k:k + 20] for i in range(len(curr) - 19)
                   for k in range(len(prev) - 19)), "a 20-byte string of C_prev recurs in C_curr"
        changed = (out.tokens[row] != batch.tokens[row]).nonzero()[:, 0].unique().tolist()
        assert changed == [0, 1]
    with pytest.raises(ValueError, match="across=True is not allowed with 1 window"):
        with_repeats(Batch(batch.tokens[:, :1], batch.targets[:, :1], batch.doc_ids, batch.offsets),
                     1.0, np.random.default_rng(0), across=True)


def test_a_schedule_applies_the_mix_of_the_last_start_reached_and_nothing_before_the_first():
    batch = training_batch(CFG.data, "train", 8, step=5)
    schedule = ((2, "synthetic"), (6, "strings"), (9, "none"))
    assert scheduled_repeats(batch, schedule, 1) is batch
    assert scheduled_repeats(batch, schedule, 9) is batch
    for step, mix in ((2, "synthetic"), (5, "synthetic"), (6, "strings"), (8, "strings")):
        expected = with_repeats(batch, rng=np.random.default_rng([0, step, 11]), **MIXES[mix])
        assert torch.equal(scheduled_repeats(batch, schedule, step).tokens, expected.tokens)
    assert not torch.equal(scheduled_repeats(batch, schedule, 5, seed=1).tokens,
                           scheduled_repeats(batch, schedule, 5).tokens)


def test_a_run_reads_its_schedule_in_training_batches_only():
    cfg = CFG.replace(data__repeats=((0, "synthetic"), (3, "cross")), batch_size=4)
    plain, scheduled = default_batch_fn(CFG.replace(batch_size=4), "train"), default_batch_fn(cfg, "train")
    first = scheduled(0).tokens
    assert first.min() >= PRINTABLE[0] and first.max() < PRINTABLE[1]  # random bytes throughout
    later, text = scheduled(3), plain(3)
    expected = with_repeats(text, rng=np.random.default_rng([0, 3, 11]), **MIXES["cross"])
    assert torch.equal(later.tokens, expected.tokens) and not torch.equal(later.tokens, text.tokens)
    held_out = default_batch_fn(CFG.replace(batch_size=4), "eval")(0).tokens
    assert torch.equal(default_batch_fn(cfg, "eval")(0).tokens, held_out)


@pytest.mark.parametrize("repeats, match", [
    (((0, "echo"),), "mixes from"),
    (((5, "strings"), (2, "none")), "increasing"),
    (((0, "strings"), (0, "none")), "increasing"),
    (((-1, "strings"),), "steps >= 0"),
    ((0, "strings"), r"pairs \(step, mix\)"),
])
def test_bad_schedules_are_named(repeats, match):
    with pytest.raises(ValueError, match=match):
        DataConfig(task="books", window=256, repeats=repeats)


def test_schedules_need_a_byte_corpus_and_no_stream_and_survive_json():
    with pytest.raises(ValueError, match=r"repeats=\(\(0, 'strings'\),\) is not allowed: .*byte corpus"):
        DataConfig(task="dictionary", repeats=((0, "strings"),))
    with pytest.raises(ValueError, match=r"data.repeats=.*empty for mode='stream'"):
        preset("code-mt").replace(data__repeats=((0, "strings"),))
    cfg = CFG.replace(data__repeats=((0, "synthetic"), (800, "strings")))
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again.data.repeats == ((0, "synthetic"), (800, "strings")) and again == cfg


def test_a_lead_copies_the_phrase_before_the_first_copy_with_it():
    batch = training_batch(CFG.data, "train", 8, step=3)
    plain = with_repeats(batch, 1.0, np.random.default_rng(0), lengths=(20, 20), across=True)
    led = with_repeats(batch, 1.0, np.random.default_rng(0), lengths=(20, 20), across=True, lead=12)
    for row in range(8):
        prev, curr = led.tokens[row, 0].tolist(), led.tokens[row, 1].tolist()
        hits = [(i, k) for i in range(len(curr) - 31) for k in range(len(prev) - 31)
                if curr[i:i + 32] == prev[k:k + 32]]
        assert hits, "12 bytes of C_prev's text and the 20-byte string after them recur in C_curr"
        i, k = hits[0]
        assert prev[k:k + 12] == batch.tokens[row, 0, k:k + 12].tolist()  # the lead: C_prev's own text
        assert all(PRINTABLE[0] <= c < PRINTABLE[1] for c in prev[k + 12:k + 32])
    again = with_repeats(batch, 1.0, np.random.default_rng(0), lengths=(20, 20), across=True, lead=0)
    assert torch.equal(again.tokens, plain.tokens)  # lead=0: the plain cross mix
    for bad in (dict(lead=-1, across=True), dict(lead=110), dict(lead=240, across=True)):
        with pytest.raises(ValueError, match=f"lead={bad['lead']!r} is not allowed"):
            with_repeats(batch, 1.0, np.random.default_rng(0), lengths=(20, 20), **bad)


def test_a_lead_inside_one_window_copies_phrase_and_string_later_in_the_same_window():
    """The ``phrases`` mix: 24 bytes of text and the string after them, written again later in the
    same window; with ``lead=0`` the batch is the ``strings`` mix's, bit for bit."""
    batch = training_batch(CFG.data, "train", 8, step=5)
    led = with_repeats(batch, 1.0, np.random.default_rng(1), lengths=(20, 20), lead=24)
    for row in range(8):
        for j in range(batch.tokens.shape[1]):
            win = led.tokens[row, j].tolist()
            hits = [(i, k) for k in range(len(win) - 43) for i in range(k + 44, len(win) - 43)
                    if win[i:i + 44] == win[k:k + 44]]
            assert hits, "a phrase of 24 bytes and a 20-byte string recur in the same window"
            i, k = hits[0]
            assert win[k:k + 24] == batch.tokens[row, j, k:k + 24].tolist()  # the lead: the window's own text
            assert all(PRINTABLE[0] <= c < PRINTABLE[1] for c in win[k + 24:k + 44])
    same = with_repeats(batch, 1.0, np.random.default_rng(1), lengths=(20, 20), lead=0)
    plain = with_repeats(batch, 1.0, np.random.default_rng(1), lengths=(20, 20))
    assert torch.equal(same.tokens, plain.tokens) and torch.equal(same.targets, plain.targets)
