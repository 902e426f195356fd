"""Smeared keys (fot_edu.smear): the formula, the config option, and one set of stored keys for
crossbatch training, streaming and prefill (a window's first key mixes with the key before it)."""
import json
import re

import pytest
import torch
from torch.testing import assert_close

from fot_edu.config import ModelConfig, TrainConfig
from fot_edu.model import FoTModel
from fot_edu.smear import smear
from fot_edu.training.checkpoint import load_model
from carried import assert_continuation_starts_as_its_base, assert_training_streaming_and_prefill_agree


def make(smear_keys=(0, 1), layers=(1,), position="none", seed=0):
    cfg = ModelConfig(vocab_size=30, d_model=32, n_heads=4, d_ff=64, n_layers=3, memory_layers=layers,
                      memory_position=position, smear_keys=smear_keys)
    torch.manual_seed(seed)
    model = FoTModel(cfg).eval()
    with torch.no_grad():  # away from the even mix of init, different per head
        for block in model.blocks:
            if hasattr(block.attn, "smear_logit"):
                block.attn.smear_logit.normal_(0, 2)
    return model


def test_smear_is_the_per_head_mix_of_each_key_with_the_one_before():
    keys, logit = torch.randn(2, 3, 5, 4), torch.tensor([-1.0, 0.0, 2.0])
    before = torch.randn(2, 3, 1, 4)
    out = smear(keys, logit, before)
    for h in range(3):
        s = torch.sigmoid(logit[h])
        for j in range(5):
            previous = before[:, h, 0] if j == 0 else keys[:, h, j - 1]
            assert_close(out[:, h, j], s * keys[:, h, j] + (1 - s) * previous)
    assert_close(smear(keys, logit)[:, :, 0], torch.sigmoid(logit).view(1, 3, 1) * keys[:, :, 0])
    with pytest.raises(ValueError, match=r"before must be \(b, h, 1, dh\)"):
        smear(keys, logit, before[:1])


def test_smear_keys_is_validated_and_survives_a_json_round_trip():
    for bad in [(3,), (1, 1), (-1,), (True,), "0", (0.0,)]:
        with pytest.raises(ValueError, match=re.escape(f"smear_keys={bad!r} is not allowed")):
            ModelConfig(n_layers=3, smear_keys=bad)
    cfg = TrainConfig(model=ModelConfig(n_layers=3, smear_keys=(0, 2)))
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again.model.smear_keys == (0, 2)


def test_off_by_default_and_shipped_checkpoints_load_without_the_parameter():
    assert ModelConfig().smear_keys == ()
    model, cfg = load_model("text-plain-vanilla")
    assert cfg.model.smear_keys == () and not any("smear" in k for k in model.state_dict())


def test_a_smear_share_of_one_computes_what_the_unsmeared_model_does():
    """Smearing is the only change: sigmoid(a_h) -> 1 gives back the model without it."""
    plain, smeared = make(smear_keys=()), make(smear_keys=(0, 1, 2))
    weights = {**plain.state_dict(), **{f"blocks.{i}.attn.smear_logit": torch.full((4,), 40.0)
                                        for i in range(3)}}
    smeared.load_state_dict(weights)
    tokens = torch.randint(0, 30, (2, 2, 8))
    assert_close(smeared(tokens, d=1).logits, plain(tokens, d=1).logits)
    smeared.blocks[0].attn.smear_logit.data.zero_()
    assert not torch.allclose(smeared(tokens, d=1).logits, plain(tokens, d=1).logits, atol=1e-3)


@pytest.mark.parametrize("position", ["none", "rope"])
@pytest.mark.parametrize("smear_keys", [(0, 1, 2), (1,)])
def test_crossbatch_streaming_and_prefill_store_and_read_the_same_smeared_keys(position, smear_keys):
    model = make(smear_keys, position=position)
    read, filled = assert_training_streaming_and_prefill_agree(model, 1, 30, traced=position == "none")
    assert_close(filled[1].smear_carry, read[1].smear_carry)


def test_the_carry_crosses_window_boundaries_and_a_new_document_starts_from_zeros():
    model, n = make((1,)), 8
    windows = torch.randint(0, 30, (2, 2, n))
    memories = model.new_memories(2, 2 * n)
    model(windows[:, 0], memories=memories)
    carried = model(windows[:, 1], memories=memories, add_to_memory=False).logits
    del memories[1].smear_carry  # the same memory, the first key smeared with zeros instead
    assert not torch.allclose(model(windows[:, 1], memories=memories, add_to_memory=False).logits,
                              carried, atol=1e-4)
    fresh = model.new_memories(2, 2 * n)  # row 1 starts a document at window 1: zeros before it
    model(windows[:, 0], memories=fresh)
    fresh[1].clear([1])
    model(windows[:, 1], memories=fresh)
    alone = model.new_memories(2, n)
    model(windows[:, 1], memories=alone)
    assert_close(fresh[1].keys[1, :, :n], alone[1].keys[1])
    assert not torch.allclose(fresh[1].keys[0, :, n:], alone[1].keys[0], atol=1e-4)


def test_a_continuation_keeps_its_bases_smeared_keys_in_the_memory_layer(tmp_path):
    """The LongLLaMA recipe with a smeared base: the memory layer starts from the base's smear
    shares and, with nothing in memory, computes what the base computed; other shares refused."""
    from fot_edu.training.longllama import continuation_weights
    cfg = assert_continuation_starts_as_its_base(
        tmp_path, dict(smear_keys=(1,)), 1, lambda base: base.blocks[1].attn.smear_logit.normal_(0, 2))
    with pytest.raises(ValueError, match=r"smear_keys=\(1,\) there, \(\) here"):
        continuation_weights(cfg.replace(model__smear_keys=()))
