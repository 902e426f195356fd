"""One check for every mechanism that carries state across windows (smeared keys, convolved
queries and keys): crossbatch training, streaming and prefill must store and read the same keys."""
import torch
from torch.testing import assert_close

from fot_edu.streaming import stream_logits


def assert_training_streaming_and_prefill_agree(model, layer: int, vocab: int, n: int = 8,
                                                traced: bool = True):
    """Three rows of two windows: crossbatch (d = 1) logits == streamed logits; the keys memory
    layer ``layer`` stores by reading == by ``prefill``; with ``traced`` (a position-free layer,
    whose stored keys are the keys it attends) ``C_curr``'s keys in training == the stored ones;
    a later window reads both memories alike. Returns the two memories ``(read, filled)``."""
    pairs = torch.randint(0, vocab, (3, 2, n))
    train = model(pairs, d=1, trace=True)
    streamed = stream_logits(model, pairs.flatten(1), window=n, capacity=2 * n)
    assert_close(streamed[:, :n], train.logits[:, 0], atol=1e-5, rtol=1e-5)
    assert_close(streamed[:, n:], train.logits[:, 1], atol=1e-5, rtol=1e-5)
    read, filled = model.new_memories(3, 2 * n), model.new_memories(3, 2 * n)
    for j in range(2):
        model(pairs[:, j], memories=read)
        model.prefill(pairs[:, j], filled)
    assert_close(filled[layer].keys, read[layer].keys)
    if traced:
        assert_close(read[layer].keys[:, :, n:], train.traces[layer].keys, atol=1e-6, rtol=1e-5)
    query = torch.randint(0, vocab, (3, n))
    assert_close(model(query, memories=filled, add_to_memory=False).logits,
                 model(query, memories=read, add_to_memory=False).logits)
    return read, filled


def assert_continuation_starts_as_its_base(tmp_path, changes: dict, layer: int, perturb):
    """The LongLLaMA recipe from a small ``books`` base of ``ModelConfig(**changes)``, whose
    weights ``perturb(base_model)`` moves away from init: with ``layer`` made a memory layer and
    nothing in memory, the continuation computes what the base computed. Returns its config."""
    from fot_edu.config import DataConfig, ModelConfig, TrainConfig
    from fot_edu.model import FoTModel
    from fot_edu.training.checkpoint import save_checkpoint
    from fot_edu.training.longllama import continuation_weights
    model_cfg = ModelConfig(d_model=32, n_heads=4, d_ff=64, n_layers=3, memory_layers=(),
                            memory_position="rope", **changes)
    base = TrainConfig(model=model_cfg, data=DataConfig(task="books", window=32), mode="plain",
                       batch_size=4)
    torch.manual_seed(0)
    base_model = FoTModel(base.model).eval()
    with torch.no_grad():
        perturb(base_model)
    save_checkpoint(tmp_path / "base.pt", base_model, base)
    cfg = base.replace(model__memory_layers=(layer,), mode="crossbatch", base=str(tmp_path / "base.pt"))
    model = FoTModel(cfg.model).eval()
    model.load_state_dict(continuation_weights(cfg))
    tokens = torch.randint(0, 256, (2, 32))
    assert_close(model(tokens).logits, base_model(tokens).logits, atol=1e-5, rtol=1e-5)
    return cfg
