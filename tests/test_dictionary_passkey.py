"""Dictionary lookup and passkey retrieval (fot_edu.data.dictionary)."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from fot_edu.config import DataConfig
from fot_edu.data import dictionary, passkey
from fot_edu.data.batches import training_batch
from fot_edu.data.tokenizer import encode


def parse_entries(window: torch.Tensor, cfg: DataConfig) -> list[tuple[str, tuple, tuple, int]]:
    """Read a window independently of the generator: ``[(kind, key, value, position), ...]``."""
    vocab = dictionary.DictionaryVocab(cfg.num_symbols)
    ids, out, pos = window.tolist(), [], 0
    while pos < len(ids) and ids[pos] != vocab.pad:
        kind = {vocab.k: "def", vocab.q: "ask"}[ids[pos]]
        key = tuple(ids[pos + 1:pos + 1 + cfg.key_len])
        assert ids[pos + 1 + cfg.key_len] == vocab.v
        value = tuple(ids[pos + 2 + cfg.key_len:pos + 2 + cfg.key_len + cfg.value_len])
        assert all(0 <= t < cfg.num_symbols for t in key + value)
        out.append((kind, key, value, pos))
        pos += 2 + cfg.key_len + cfg.value_len
    assert all(t == vocab.pad for t in ids[pos:])
    return out


CONFIGS = [DataConfig(), DataConfig(num_symbols=8, key_len=3, value_len=1, entries_per_window=5,
                                    window=40)]


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("windows", [2, 3, 6])
def test_every_question_was_defined_earlier_outside_its_window_with_the_same_value(cfg, windows):
    batch = training_batch(cfg, "train", batch_size=6, step=2, windows=windows)
    for row in batch.tokens:
        defined: dict[tuple, tuple] = {}
        asked = 0
        for j, window in enumerate(row):
            entries = parse_entries(window, cfg)
            assert len(entries) == cfg.entries_per_window
            for kind, key, value, _ in entries:
                if kind == "ask":
                    assert key in defined and defined[key] == value  # earlier windows only
                    asked += 1
            for kind, key, value, _ in entries:
                if kind == "def":
                    assert key not in defined  # keys are distinct within a document
                    defined[key] = value
            if j == 0:
                assert all(kind == "def" for kind, *_ in entries)
            if j == windows - 1:
                assert all(kind == "ask" for kind, *_ in entries)
        assert asked >= cfg.entries_per_window


def test_two_windows_c_curr_asks_about_every_key_of_c_prev():
    cfg = DataConfig()
    batch = training_batch(cfg, "train", batch_size=4, step=0)
    for row in batch.tokens:
        defs = {(k, v) for _, k, v, _ in parse_entries(row[0], cfg)}
        asks = [(k, v) for _, k, v, _ in parse_entries(row[1], cfg)]
        assert set(asks) == defs and len(asks) == len(defs)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_mask_and_targets_cover_exactly_the_values_after_q(cfg):
    batch = training_batch(cfg, "eval", batch_size=4, step=5, windows=3)
    expected = torch.zeros_like(batch.tokens, dtype=torch.bool)
    for r in range(batch.tokens.shape[0]):
        for j in range(batch.tokens.shape[1]):
            for kind, _, _, pos in parse_entries(batch.tokens[r, j], cfg):
                if kind == "ask":
                    start = pos + 2 + cfg.key_len
                    expected[r, j, start:start + cfg.value_len] = True
    assert torch.equal(dictionary.answer_mask(batch.tokens, cfg), expected)
    # a loss position predicts the next token, which must be an answer token
    has_loss = batch.targets != -100
    assert torch.equal(has_loss[..., :-1], expected[..., 1:])
    assert not has_loss[..., -1].any()
    assert torch.equal(batch.targets[..., :-1][has_loss[..., :-1]],
                       batch.tokens[..., 1:][expected[..., 1:]])


def test_eval_batch_with_distractors_never_repeats_a_key():
    cfg = DataConfig()
    batch = dictionary.dictionary_eval_batch(cfg, batch_size=3, num_distractors=63, seed=1)
    assert batch.tokens.shape == batch.targets.shape == (3, 2, cfg.window)
    assert batch.distractors.shape == (3, 63, cfg.window)
    assert batch.distractor_ids.shape == (3, 63)
    all_ids = torch.cat([batch.doc_ids[:, None], batch.distractor_ids], 1).flatten()
    assert len(set(all_ids.tolist())) == all_ids.numel()
    for r in range(3):
        own = {k: v for _, k, v, _ in parse_entries(batch.tokens[r, 0], cfg)}
        keys = list(own)
        for window in batch.distractors[r]:
            entries = parse_entries(window, cfg)
            assert all(kind == "def" for kind, *_ in entries)
            keys += [k for _, k, _, _ in entries]
        assert len(keys) == len(set(keys)) == 64 * cfg.entries_per_window
        for kind, key, value, _ in parse_entries(batch.tokens[r, 1], cfg):
            assert kind == "ask" and own[key] == value
    again = dictionary.dictionary_eval_batch(cfg, batch_size=3, num_distractors=63, seed=1)
    assert torch.equal(again.distractors, batch.distractors)


def test_many_distractors_share_keys_among_themselves_never_with_the_own_document():
    cfg = DataConfig()  # 32 ** 2 = 1024 keys, 10 per document: 101 distractors at most distinct
    batch = dictionary.dictionary_eval_batch(cfg, batch_size=2, num_distractors=200, seed=3)
    for r in range(2):
        own = {k for _, k, _, _ in parse_entries(batch.tokens[r, 0], cfg)}
        for window in batch.distractors[r]:
            keys = [k for _, k, _, _ in parse_entries(window, cfg)]
            assert len(set(keys)) == len(keys) == cfg.entries_per_window and not own & set(keys)


def test_redefining_distractors_use_the_own_keys_with_other_values():
    cfg = DataConfig()
    batch = dictionary.dictionary_eval_batch(cfg, batch_size=2, num_distractors=3, seed=0, redefine=True)
    for r in range(2):
        own = {k: v for _, k, v, _ in parse_entries(batch.tokens[r, 0], cfg)}
        for window in batch.distractors[r]:
            theirs = {k: v for _, k, v, _ in parse_entries(window, cfg)}
            assert set(theirs) == set(own) and all(theirs[k] != own[k] for k in own)


def test_too_small_key_space_is_a_clear_value_error():
    tiny = DataConfig(num_symbols=3, key_len=2, window=64, entries_per_window=5)  # 9 keys
    with pytest.raises(ValueError, match="9 keys"):
        dictionary.dictionary_eval_batch(tiny, batch_size=1, num_distractors=1)
    small = DataConfig(num_symbols=4, key_len=2, entries_per_window=10)
    with pytest.raises(ValueError, match="16"):
        dictionary.make_dictionary_document(small, 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="windows=1"):
        dictionary.make_dictionary_document(DataConfig(), 1, np.random.default_rng(0))


def test_format_window_reads_like_the_paper():
    cfg = DataConfig(num_symbols=32, key_len=2, value_len=2, entries_per_window=1, window=8)
    window = torch.tensor([32, 3, 17, 33, 5, 9, 35, 35])
    assert dictionary.format_window(window, cfg) == "<k> 3 17 <v> 5 9 <pad>*2"


# ---------------------------------------------------------------------------------------------
# passkey

EXPECTED_SEED_0 = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
    "I will quiz you about the important information there.\n"
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and\n"
    "The pass key is 42532. Remember it. 42532 is the pass key.\n"
    "The grass is green. The sky is blue. The su\n"
    "What is the pass key? The pass key is"
)


def test_passkey_prompt_matches_the_template_character_for_character():
    prompt, key = passkey.passkey_prompt(120, seed=0)
    assert key == 42532
    assert prompt == EXPECTED_SEED_0


@pytest.mark.parametrize("seed", range(20))
def test_passkey_prompt_structure(seed):
    filler_chars = 50 * seed + 7
    prompt, key = passkey.passkey_prompt(filler_chars, seed)
    assert 1 <= key <= 50000
    assert prompt.count(str(key)) == 2  # the filler has no digits: only the key line has K
    intro, prefix, info, suffix, question = prompt.split("\n")
    block = ("The grass is green. The sky is blue. The sun is yellow. Here we go. "
             "There and back again.")
    filler = " ".join([block] * 100)
    assert len(prefix) + len(suffix) == filler_chars
    assert prefix == filler[:len(prefix)] and suffix == filler[:len(suffix)]
    assert info == f"The pass key is {key}. Remember it. {key} is the pass key."
    assert question == "What is the pass key? The pass key is"
    assert intro.startswith("There is an important info hidden")


def test_passkey_is_deterministic_and_varies_with_seed():
    assert passkey.passkey_prompt(500, 3) == passkey.passkey_prompt(500, 3)
    assert len({passkey.passkey_prompt(500, s)[1] for s in range(10)}) > 1


@pytest.mark.parametrize("target", [300, 1000, 4096])
def test_filler_chars_for_tokens_lands_at_or_just_under_the_target(target):
    for seed in range(10):
        prompt, key = passkey.passkey_prompt(passkey.filler_chars_for_tokens(target), seed)
        assert target - 8 <= len(encode(prompt)) <= target
        exact = passkey.passkey_prompt(passkey.filler_chars_for_tokens(target, key=key), seed)[0]
        assert len(encode(exact)) == target
    with pytest.raises(ValueError, match="target_tokens=10"):
        passkey.filler_chars_for_tokens(10)


def test_score_passkey():
    assert passkey.score_passkey(" 42532. Remember", 42532)
    assert passkey.score_passkey("42532", 42532)
    assert not passkey.score_passkey(" 4253", 42532)
    assert not passkey.score_passkey(" 425321", 42532)
    assert not passkey.score_passkey(" the key", 42532)
    with pytest.raises(ValueError, match="filler_chars=-1"):
        passkey.passkey_prompt(-1, 0)


# -- retrieval curriculum (passkey-fot's training data) ---------------------------------------------

RETRIEVAL = DataConfig(task="retrieval", window=256, entries_per_window=3)


def test_retrieval_answers_follow_their_phrase_in_both_windows():
    batch = training_batch(RETRIEVAL, "train", 8, step=3)
    assert batch.tokens.shape == batch.targets.shape == (8, 2, 256)
    assert (batch.targets[:, 0] == -100).all()  # no loss on C_prev: it only hides the needles
    for row in range(8):
        prev = bytes(batch.tokens[row, 0].tolist())
        curr, targets = batch.tokens[row, 1], batch.targets[row, 1]
        answers = [m for m in re.finditer(rb" \d+\.", bytes(curr.tolist()))
                   if (targets[m.start() - 1:m.end() - 1] != -100).all()]
        assert len(answers) == RETRIEVAL.entries_per_window
        assert int((targets != -100).sum()) == sum(m.end() - m.start() for m in answers)
        for m in answers:
            # the target of each position is the next token, and the answer is only in C_prev
            assert torch.equal(targets[m.start() - 1:m.end() - 1], curr[m.start():m.end()])
            needle = bytes(curr[m.start() - 8:m.end()].tolist())  # phrase tail + answer
            assert needle in prev


def test_retrieval_shares_no_wording_with_the_passkey_template():
    text = b"".join(bytes(training_batch(RETRIEVAL, "train", 16, step=s).tokens.flatten().tolist())
                    for s in range(4)).lower()
    for phrase in (b"pass key", b"the grass is green", b"remember it", b"important info"):
        assert phrase not in text


def test_retrieval_needles_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="entries_per_window=6 needles"):
        training_batch(DataConfig(task="retrieval", window=64, entries_per_window=6), "train", 2, 0)


def test_passkey_prompt_options_for_new_experiments():
    prompt, key = passkey.passkey_prompt(400, 0, depth=0.0, key=1234567, filler="Call me Ishmael.")
    lines = prompt.split("\n")
    assert key == 1234567 and lines[1] == "" and lines[2] == passkey.passkey_line(1234567)
    assert lines[3].startswith("Call me Ishmael. Call me") and len(lines[3]) == 400
    deep, _ = passkey.passkey_prompt(400, 0, depth=1.0)
    assert deep.split("\n")[3] == ""
    _, big = passkey.passkey_prompt(10, 5, key_range=(10**6, 10**7 - 1))
    assert 10**6 <= big < 10**7
    assert passkey.passkey_prompt(300, 2) == passkey.passkey_prompt(300, 2, depth=None)
    for bad, match in (({"depth": 1.5}, "depth=1.5"), ({"key_range": (5, 1)}, "key_range"),
                       ({"filler": ""}, "filler")):
        with pytest.raises(ValueError, match=match):
            passkey.passkey_prompt(100, 0, **bad)
