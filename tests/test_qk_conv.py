"""Convolved queries and keys (fot_edu.qk_conv): the formula, causality, the config option, and
that at init a convolved layer is the smeared-key layer it starts from."""
import pytest
import torch
from torch.testing import assert_close

from fot_edu.config import ModelConfig
from fot_edu.model import FoTModel
from fot_edu.qk_conv import causal_conv, initial_weights


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
    with pytest.raises(ValueError, match=r"weight \(h, dh, W\)"):
        causal_conv(x, weight[:2])


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
    (dict(qk_conv=(2,)), r"qk_conv=\(2,\) is not allowed: ordinary layers only"),
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
