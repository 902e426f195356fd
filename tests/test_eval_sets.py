"""Fixed evaluation sets (the own documents do not depend on the N asked for), whole-value
accuracy, and r over answer queries against r over every query."""
import dataclasses

import pytest
import torch

from fot_edu.config import DataConfig, ModelConfig, TrainConfig
from fot_edu.data.batches import _split
from fot_edu.data.dictionary import dictionary_eval_batch
from fot_edu.data.tokenizer import IGNORE
from fot_edu.evaluation.distraction import (_pooled, _row_sums, dictionary_accuracy,
                                            distraction_ratio, distraction_summary, value_hits)
from fot_edu.evaluation.memory_fill import read_with_memory
from fot_edu.evaluation.perplexity import perplexity_with_distractors
from fot_edu.evaluation.sets import eval_pairs, perplexity_eval_set
from fot_edu.model import FoTModel
from fot_edu.training.presets import preset


def tiny(name="tiny-fot", **data):
    cfg = preset(name)
    if data:
        cfg = cfg.replace(data=dataclasses.replace(cfg.data, **data))
        cfg = cfg.replace(model=dataclasses.replace(cfg.model, vocab_size=cfg.data.num_symbols + 4))
    torch.manual_seed(0)
    return FoTModel(cfg.model).eval(), cfg


@pytest.mark.parametrize("k", [None, 3])
def test_assembled_memories_read_as_streamed_ones(k):
    model, cfg = tiny()
    batch = dictionary_eval_batch(cfg.data, 3, 4, seed=1)
    contexts = torch.cat([batch.tokens[:, :1], batch.distractors], 1)
    ids = torch.cat([batch.doc_ids[:, None], batch.distractor_ids], 1)
    logits, share = read_with_memory(model, contexts, ids, batch.tokens[:, 1], batch.doc_ids, k)
    memories = model.new_memories(3, contexts.shape[1] * contexts.shape[2])
    for j in range(contexts.shape[1]):
        model.prefill(contexts[:, j], memories, k=k, doc_ids=ids[:, j])
    out = model(batch.tokens[:, 1], memories=memories, k=k, add_to_memory=False)
    torch.testing.assert_close(logits, out.logits)
    assert share.shape == (3, cfg.model.n_heads, cfg.data.window) and (share <= 1 + 1e-6).all()


def test_own_documents_are_the_same_whatever_n_and_batching():
    cfg = preset("tiny-fot").data
    batches = {num: dictionary_eval_batch(cfg, 6, num, seed=3) for num in (0, 1, 7, 40)}
    for batch in batches.values():
        assert torch.equal(batch.tokens, batches[0].tokens)
        assert torch.equal(batch.doc_ids, batches[0].doc_ids)
    # nested distractors: N = 7's are N = 40's first seven
    assert torch.equal(batches[40].distractors[:, :7], batches[7].distractors)
    assert torch.equal(batches[40].distractor_ids[:, :7], batches[7].distractor_ids)
    # documents are a function of (seed, index): batch boundaries do not matter
    later = dictionary_eval_batch(cfg, 2, 7, seed=3, first=4)
    assert torch.equal(later.tokens, batches[7].tokens[4:])
    assert torch.equal(later.distractors, batches[7].distractors[4:])
    assert not torch.equal(dictionary_eval_batch(cfg, 6, 0, seed=4).tokens, batches[0].tokens)


def test_dictionary_figure_for_one_n_does_not_depend_on_the_others_asked_for():
    model, cfg = tiny()
    alone = dictionary_accuracy(model, cfg, (3,), batch_size=4, batches=2)
    together = dictionary_accuracy(model, cfg, (0, 3, 9), batch_size=8, batches=1)
    for part in ("accuracy", "value_accuracy", "r", "r_all_queries"):
        assert together[part][3] == pytest.approx(alone[part][3], abs=1e-6)
        assert together["n"][part][3] == alone["n"][part][3]


def test_perplexity_windows_are_the_same_whatever_n():
    _, cfg = tiny("tiny-code")
    sets = {num: perplexity_eval_set(cfg, num, batches=2) for num in (0, 3, 9)}
    for pairs, units, pool, pool_ids, chosen in sets.values():
        assert torch.equal(pairs.tokens, sets[0][0].tokens) and torch.equal(units, sets[0][1])
        # a distractor is never a window of the own file
        assert not (pool_ids[chosen] == pairs.doc_ids[:, None]).any()
    assert torch.equal(sets[9][4][:, :3], sets[3][4])  # nested
    # the subset is a prefix of the full set's fixed order: more batches keep the first ones
    more = perplexity_eval_set(cfg, 3, batches=3)
    assert torch.equal(more[0].tokens[:32], sets[3][0].tokens)


def test_eval_pairs_cover_every_window_but_the_first():
    _, cfg = tiny("tiny-code")
    pairs = eval_pairs(cfg.data)
    assert len(perplexity_eval_set(cfg, 0)[1]) == len(pairs.doc_ids)  # the default: all of them
    n = cfg.data.window
    first = pairs.doc_ids[0]
    mine = pairs.select(pairs.doc_ids == first)
    assert torch.equal(mine.tokens[1:, 0], mine.tokens[:-1, 1])  # C_prev is the window before
    assert torch.equal(mine.offsets, torch.arange(len(mine.offsets)) * n)
    scored = int((mine.targets[:, 1] != IGNORE).sum())  # the document's tokens but the first window's
    doc = next(d for d in _split("code", False)["eval"] if d.id == int(first))
    assert scored == doc.num_tokens - 1 - n


def test_whole_values_are_right_only_when_every_token_is():
    mask = torch.tensor([[0, 1, 1, 0, 1, 1, 0, 1, 1]], dtype=torch.bool)
    hit = torch.tensor([[0, 1, 1, 0, 1, 0, 0, 0, 0]], dtype=torch.bool)
    assert value_hits(hit, mask).tolist() == [[1, 3]]
    model, cfg = tiny(value_len=2, window=24, entries_per_window=3)
    res = dictionary_accuracy(model, cfg, (0, 2), batch_size=4, batches=1)
    for num in (0, 2):
        assert res["value_accuracy"][num] <= res["accuracy"][num]
        assert res["n"]["accuracy"][num] == 2 * res["n"]["value_accuracy"][num] == 4 * 3 * 2
    model, cfg = tiny()  # value_len = 1: a value is one token
    res = dictionary_accuracy(model, cfg, (0, 2), batch_size=4, batches=1)
    assert res["value_accuracy"] == res["accuracy"] and res["n"]["value_accuracy"] == res["n"]["accuracy"]


def test_all_query_r_is_the_count_weighted_mean_of_answer_and_other_queries():
    model, cfg = tiny()
    batch = dictionary_eval_batch(cfg.data, 4, 3, seed=0)
    pairs = torch.stack([batch.tokens[:, 0], batch.tokens[:, 1]], dim=1)
    answer = batch.targets[:, 1] != IGNORE
    rows = {name: distraction_ratio(model, pairs, 3, query_mask=mask, per_row=True)
            for name, mask in (("answer", answer), ("other", ~answer), ("all", None))}
    assert torch.allclose(rows["all"], rows["answer"] + rows["other"], atol=1e-5)
    # a constructed case: answer queries focused (0.9 on the own document), the rest not (0.25)
    contexts = torch.cat([batch.distractors, batch.tokens[:, :1]], 1)
    ids = torch.cat([batch.distractor_ids, batch.doc_ids[:, None]], 1)
    _, share = read_with_memory(model, contexts, ids, batch.tokens[:, 1], batch.doc_ids)
    made = torch.where(answer[:, None, :], 0.9, 0.25).expand_as(share)
    r_answer, r_all = _pooled(_row_sums(made, answer)), _pooled(_row_sums(made, None))
    share_answers = answer.float().mean().item()
    assert r_answer == pytest.approx(0.9)
    assert r_all == pytest.approx(0.9 * share_answers + 0.25 * (1 - share_answers))
    summary = distraction_summary(model, cfg, (2, 4), batches=1)
    assert set(summary) == {"r_d", "r_d_all_queries", "n", "ci95"}


def test_rise_and_rise_ratio_are_paired_over_files():
    model, cfg = tiny("tiny-code")
    res = perplexity_with_distractors(model, cfg, (0, 3), batches=2, baseline=model)
    ppl = res["perplexity"]
    assert res["rise"][3] == pytest.approx(ppl[3] - ppl[0], abs=1e-6)
    assert res["rise_ratio"][3] == pytest.approx(1.0)  # a model against itself
    assert res["n"]["rise"][3] == res["n"]["perplexity"][0] == len(set(
        perplexity_eval_set(cfg, 3, batches=2)[1].tolist()))
    for part in ("perplexity", "rise", "rise_ratio"):
        assert set(res["n"][part]) == set(res["ci95"][part]) == set(res[part])


def test_r_d_on_a_corpus_with_few_held_out_documents_uses_smaller_groups():
    """``books`` holds 8 held-out documents: r_d reads groups of 8 (as many pairs in all), and a
    d larger than a group is refused rather than filled with the own document's other windows."""
    cfg = TrainConfig(model=ModelConfig(d_model=32, n_heads=2, d_ff=64, n_layers=2, memory_layers=(1,)),
                      data=DataConfig(task="books", window=32))
    torch.manual_seed(0)
    model = FoTModel(cfg.model)
    res = distraction_summary(model, cfg, (2, 8), batches=1)
    assert res["n"]["r_d"] == {2: 32, 8: 32}
    assert 0 < res["r_d"][8] < 1
    with pytest.raises(ValueError, match="d=16 is not allowed for corpus 'books'.*8 documents"):
        distraction_summary(model, cfg, (2, 16), batches=1)
