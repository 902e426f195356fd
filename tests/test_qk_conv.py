"""Convolved queries and keys (fot_edu.qk_conv): the formula, causality, the config option, that
at init a convolved layer is the smeared-key layer it starts from, and one set of stored keys for
crossbatch training, streaming and prefill (a window continues the tokens before it)."""
import pytest
import torch
from torch.testing import assert_close

from fot_edu.config import ModelConfig
from fot_edu.model import FoTModel
from fot_edu.qk_conv import causal_conv, initial_weights
from fot_edu.streaming import generate, stream_logits
from carried import assert_continuation_starts_as_its_base, assert_training_streaming_and_prefill_agree


def config(**changes):
    return ModelConfig(**{**dict(vocab_size=30, d_model=32, n_heads=4, d_ff=64, n_layers=3,
                                 memory_layers=(2,)), **changes})


def test_causal_conv_is_the_sum_over_taps_of_earlier_tokens():
    x, weight = torch.randn(2, 3, 6, 4), torch.randn(3, 4, 3)
    out = causal_conv(x, weight)
    for t in range(6):
        expected = sum(weight[:, :, s] * x[:, :, t - s] for s in range(3) if t - s >= 0)
        assert_close(out[:, :, t], expected)
    changed = x.clone()
    changed[:, :, 4:] = 0.0  # later tokens cannot reach earlier outputs
    assert_close(causal_conv(changed, weight)[:, :, :4], out[:, :, :4])
    before = torch.randn(2, 3, 2, 4)  # the two raw tokens before t = 0, oldest first
    whole = causal_conv(torch.cat([before, x], dim=2), weight)[:, :, 2:]
    assert_close(causal_conv(x, weight, before), whole)
    with pytest.raises(ValueError, match=r"weight \(h, dh, W\)"):
        causal_conv(x, weight[:2])
    with pytest.raises(ValueError, match=r"before must be \(b, h, W - 1, dh\) = \(2, 3, 2, 4\)"):
        causal_conv(x, weight, before[:, :, :1])


def test_initial_weights_are_the_plain_query_and_the_evenly_smeared_key():
    w_q, w_k = initial_weights(2, 3, 4)
    assert w_q.shape == w_k.shape == (2, 3, 4)
    assert w_q[..., 0].eq(1).all() and w_q[..., 1:].eq(0).all()
    assert w_k[..., :2].eq(0.5).all() and w_k[..., 2:].eq(0).all()
    with pytest.raises(ValueError, match="width=1"):
        initial_weights(2, 3, 1)


def test_at_init_a_convolved_layer_computes_what_a_smeared_layer_does():
    torch.manual_seed(0)
    conv = FoTModel(config(qk_conv=(0, 1))).eval()
    smeared = FoTModel(config(smear_keys=(0, 1))).eval()
    shared = {k: v for k, v in conv.state_dict().items() if "conv_" not in k}
    missing, unexpected = smeared.load_state_dict(shared, strict=False)
    assert set(missing) == {"blocks.0.attn.smear_logit", "blocks.1.attn.smear_logit"} and not unexpected
    tokens = torch.randint(0, 30, (2, 12))
    assert_close(conv(tokens).logits, smeared(tokens).logits)
    plain = FoTModel(config()).eval()
    plain.load_state_dict(shared)
    assert not torch.allclose(conv(tokens).logits, plain(tokens).logits)  # the mix does something


def test_a_trained_convolution_reaches_several_tokens_back_and_no_further_forward():
    torch.manual_seed(0)
    model = FoTModel(config(qk_conv=(0,), qk_conv_width=3)).eval()
    with torch.no_grad():
        model.blocks[0].attn.conv_k.normal_()
        model.blocks[0].attn.conv_q.normal_()
    tokens = torch.randint(0, 30, (1, 10))
    changed = tokens.clone()
    changed[0, 6] = (tokens[0, 6] + 1) % 30
    diff = (model(tokens).logits - model(changed).logits).abs().amax(-1)[0]
    assert diff[:6].eq(0).all() and diff[6:].gt(0).all()


@pytest.mark.parametrize("changes, message", [
    (dict(qk_conv=(0,), smear_keys=(0,)), "one or the other"),
    (dict(qk_conv=(3,)), "distinct layer indices in 0..2"),
    (dict(qk_conv=(0, 0)), "distinct layer indices"),
    (dict(qk_conv=(0,), qk_conv_width=1), "qk_conv_width=1 is not allowed: an integer >= 2"),
])
def test_bad_options_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        config(**changes)


def test_lists_from_a_json_config_become_tuples():
    assert config(qk_conv=[0, 1]).qk_conv == (0, 1)


def trained(cfg_changes, seed=0):
    """A model whose convolutions are away from init (every tap used, different per channel)."""
    torch.manual_seed(seed)
    model = FoTModel(config(**cfg_changes)).eval()
    with torch.no_grad():
        for block in model.blocks:
            if hasattr(block.attn, "conv_q"):
                block.attn.conv_q.normal_()
                block.attn.conv_k.normal_()
    return model


@pytest.mark.parametrize("position", ["none", "rope"])
@pytest.mark.parametrize("layers", [(0, 1, 2), (2,)])
def test_crossbatch_streaming_and_prefill_store_and_read_the_same_convolved_keys(position, layers):
    model = trained(dict(qk_conv=layers, memory_position=position))
    assert_training_streaming_and_prefill_agree(model, 2, 30, traced=position == "none")


def test_the_carry_spans_windows_shorter_than_the_convolution_and_restarts_at_a_new_document():
    """One position-free memory layer reading everything before it (dense) computes what one
    window over the whole input computes: with windows of 2, 3 or 8 tokens and 4 taps, each
    window's first queries and keys continue the raw ones of earlier windows."""
    model = trained(dict(n_layers=1, memory_layers=(0,), qk_conv=(0,), qk_conv_width=4))
    tokens = torch.randint(0, 30, (2, 24))
    whole = model(tokens).logits
    for window in (2, 3, 8):
        assert_close(stream_logits(model, tokens, window=window), whole, atol=1e-5, rtol=1e-5)
    reset = torch.zeros(2, 3, dtype=torch.bool)
    reset[1, 1] = True  # row 1: a new document starts at token 8, nothing carried into it
    streamed = stream_logits(model, tokens, window=8, reset=reset)
    assert_close(streamed[0], whole[0], atol=1e-5, rtol=1e-5)
    assert_close(streamed[1, 8:], model(tokens[1:, 8:]).logits[0], atol=1e-5, rtol=1e-5)


def test_generation_continues_the_prompt_as_one_long_window_would():
    model = trained(dict(n_layers=1, memory_layers=(0,), qk_conv=(0,), qk_conv_width=3), seed=1)
    prompt = torch.randint(0, 30, (2, 11))
    tokens = prompt
    for _ in range(6):  # greedy decoding over the whole sequence at once
        tokens = torch.cat([tokens, model(tokens).logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(generate(model, prompt, 6, window=4), tokens[:, 11:])


def test_a_continuation_keeps_its_bases_convolution_in_the_memory_layer(tmp_path):
    """The LongLLaMA recipe with a convolved base: with nothing in memory the memory layer
    computes what the base's layer computed."""
    assert_continuation_starts_as_its_base(
        tmp_path, dict(qk_conv=(0, 1)), 0, lambda base: base.blocks[0].attn.conv_k.normal_())
