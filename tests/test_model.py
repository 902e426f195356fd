import pytest
import torch
from torch.testing import assert_close

from fot_edu.config import ModelConfig
from fot_edu.model import FoTModel
from fot_edu.streaming import generate, stream_logits


def make(kind="fot", layers=(1,), vocab=30):
    cfg = ModelConfig(vocab_size=vocab, d_model=32, n_heads=4, d_ff=64, n_layers=3,
                      memory_layers=layers, memory_kind=kind)
    torch.manual_seed(0)
    return FoTModel(cfg).eval()


@pytest.mark.parametrize("k", [None, 8])
def test_streaming_dense_memory_equals_crossbatch_d1(k):
    """Training path (crossbatch, C_curr attends C_prev directly) == inference path (stream
    C_prev into a KNNMemory, then C_curr reads all of it: dense, or top-k with k = n)."""
    model, n = make(), 8
    pairs = torch.randint(0, 30, (3, 2, n))
    train_logits = model(pairs, d=1).logits
    streamed = stream_logits(model, pairs.flatten(1), window=n, k=k, capacity=4 * n)
    assert_close(streamed[:, :n], train_logits[:, 0], atol=1e-5, rtol=1e-5)
    assert_close(streamed[:, n:], train_logits[:, 1], atol=1e-5, rtol=1e-5)


def test_memory_layer_traces_weights_and_docs():
    model, n = make(), 6
    pairs = torch.randint(0, 30, (4, 2, n))
    out = model(pairs, d=3, doc_ids=torch.tensor([10, 11, 12, 13]), trace=True)
    tr = out.traces[1]
    assert tr.weights.shape == (4, 4, n, n + 3 * n)
    assert tr.context_docs[1].tolist() == [11, 12, 13]
    assert_close(tr.weights.sum(-1), torch.ones(4, 4, n))


def test_mt_gate_zero_equals_local_attention():
    model = make("mt")
    with torch.no_grad():
        model.blocks[1].attn.gate_bias.fill_(-1e4)
    pairs = torch.randint(0, 30, (2, 2, 7))
    assert_close(model(pairs, d=1).logits, model(pairs).logits)


def embedding_grad(model, pairs):
    """Gradient of C_curr's logits w.r.t. the token embeddings, ``(b, 2, n, D)``."""
    captured = {}

    def keep(module, inputs, output):
        output.retain_grad()
        captured["x"] = output

    handle = model.embed.register_forward_hook(keep)
    model(pairs, d=1).logits[:, 1].sum().backward()
    handle.remove()
    return captured["x"].grad.view(*pairs.shape, -1)


def test_mt_memory_gets_no_gradient():
    model = make("mt").train()
    pairs = torch.randint(0, 30, (2, 2, 5))
    grad = embedding_grad(model, pairs)
    assert grad[:, 0].abs().sum() == 0, "MT's memory (C_prev) must not be differentiable"
    assert model.blocks[1].attn.gate_bias.grad.abs().sum() > 0
    grad = embedding_grad(make("fot").train(), pairs)
    assert grad[:, 0].abs().sum() > 0, "FoT's memory is differentiable"


def test_vanilla_model_has_rope_everywhere_and_no_memory():
    model = make(layers=())
    assert not any(block.attn.is_memory for block in model.blocks)
    with pytest.raises(ValueError, match="memory layers"):
        model(torch.randint(0, 30, (2, 2, 4)), d=1)


def test_memory_layers_have_no_position_information():
    """Without RoPE and with causal attention, a memory layer's output at the last position is
    invariant to permuting earlier tokens' hidden states; checked on the layer directly."""
    model = make()
    attn = model.blocks[1].attn
    x = torch.randn(1, 6, 32)
    perm = torch.tensor([2, 0, 4, 1, 3, 5])
    out, _ = attn(x)
    out_perm, _ = attn(x[:, perm])
    assert_close(out[0, -1], out_perm[0, -1], atol=1e-5, rtol=1e-5)
    rope_attn = model.blocks[0].attn
    assert not torch.allclose(rope_attn(x)[0][0, -1], rope_attn(x[:, perm])[0][0, -1])


def test_generate_is_greedy_and_uses_memory():
    model = make()
    prompt = torch.randint(0, 30, (1, 37))
    out = generate(model, prompt, 5, window=8, k=4)
    assert out.shape == (1, 5)
    # first token: the prompt's last window is local, everything before it is in memory
    split = prompt.shape[1] - 8
    memories = model.new_memories(1, 64)
    stream_logits(model, prompt[:, :split], 8, memories, k=4)
    last = model(prompt[:, split:], memories=memories, k=4, add_to_memory=False).logits[0, -1]
    assert out[0, 0] == last.argmax()


def test_generate_within_one_window_is_plain_greedy_decoding():
    model = make()
    tokens = torch.randint(0, 30, (2, 5))
    out = generate(model, tokens, 6, window=16)
    for _ in range(6):  # 11 tokens < window: no memory involved, one forward per token
        tokens = torch.cat([tokens, model(tokens).logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(out, tokens[:, 5:])


@pytest.mark.parametrize("tokens, match", [
    (torch.randint(0, 30, (2, 2, 2000)), "max_window"),
    (torch.full((2, 5), 99), "token ids"),
    (torch.rand(2, 5), "integer ids"),
    (torch.randint(0, 30, (2, 3, 5)), "C_prev, C_curr"),
])
def test_bad_tokens_are_named(tokens, match):
    with pytest.raises(ValueError, match=match):
        make()(tokens, d=1)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="memory_layers"):
        ModelConfig(n_layers=3, memory_layers=(5,))
    with pytest.raises(ValueError, match="d_model"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="memory_kind"):
        ModelConfig(memory_kind="gated")


@pytest.mark.parametrize("layers,k", [((1,), None), ((1,), 4), ((0, 2), None), ((0, 2), 4)])
def test_prefill_fills_memory_exactly_as_reading_does(layers, k):
    """prefill (no logits, no search in the last memory layer) stores the same keys and values as
    a full streaming read, with one memory layer or several."""
    model, n = make(layers=layers), 6
    windows = torch.randint(0, 30, (2, 3, n))
    read, filled = model.new_memories(2, 3 * n), model.new_memories(2, 3 * n)
    for j in range(3):
        ids = torch.tensor([10 + j, 20 + j])
        model(windows[:, j], memories=read, k=k, doc_ids=ids)
        model.prefill(windows[:, j], filled, k=k, doc_ids=ids)
    for layer in layers:
        assert_close(filled[layer].keys, read[layer].keys)
        assert_close(filled[layer].values, read[layer].values)
        assert torch.equal(filled[layer].doc_ids, read[layer].doc_ids)
    query = torch.randint(0, 30, (2, n))
    assert_close(model(query, memories=filled, k=k, add_to_memory=False).logits,
                 model(query, memories=read, k=k, add_to_memory=False).logits)
