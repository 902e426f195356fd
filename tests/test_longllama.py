"""LongLLaMA's memory layers (RoPE kept, memory keys at position 0) and the recipe that makes them
from a vanilla model."""
import pytest
import torch
from torch.testing import assert_close

from fot_edu.config import ModelConfig
from fot_edu.model import FoTModel
from fot_edu.streaming import stream_logits
from fot_edu.training.checkpoint import load_state_into
from fot_edu.training.longllama import add_memory_layers

VANILLA = ModelConfig(vocab_size=30, d_model=32, n_heads=4, d_ff=64, n_layers=3, memory_layers=())


def vanilla():
    torch.manual_seed(0)
    return FoTModel(VANILLA).eval()


def converted(position="rope"):
    base = vanilla()
    weights, cfg = add_memory_layers(base.state_dict(), VANILLA, (1,), position)
    model = FoTModel(cfg).eval()
    load_state_into(model, weights)
    return base, model


def test_a_rope_kept_memory_layer_computes_what_the_vanilla_layer_did_until_memory_is_added():
    base, model = converted("rope")
    tokens = torch.randint(0, 30, (2, 16))
    assert_close(model(tokens).logits, base(tokens).logits, atol=1e-5, rtol=1e-5)
    assert set(model.state_dict()) == set(base.state_dict())  # no new parameter


def test_a_position_free_memory_layer_gets_a_temperature_and_changes_the_function():
    base, model = converted("none")
    assert torch.allclose(model.blocks[1].attn.log_tau.exp(), torch.full((4,), VANILLA.tau_init))
    tokens = torch.randint(0, 30, (2, 16))
    assert not torch.allclose(model(tokens).logits, base(tokens).logits, atol=1e-3)


@pytest.mark.parametrize("k", [None, 8])
def test_rope_kept_layers_read_the_same_in_training_and_streaming(k):
    """Crossbatch d=1 (C_curr attends C_prev) == streaming C_prev into memory, then C_curr."""
    _, model = converted("rope")
    n = 8
    pairs = torch.randint(0, 30, (3, 2, n))
    train_logits = model(pairs, d=1).logits
    streamed = stream_logits(model, pairs.flatten(1), window=n, k=k, capacity=4 * n)
    assert_close(streamed[:, n:], train_logits[:, 1], atol=1e-5, rtol=1e-5)


def test_memory_keys_are_stored_at_position_0():
    """The stored keys are the layer's raw key projections: RoPE's rotation at position 0."""
    _, model = converted("rope")
    tokens = torch.randint(0, 30, (1, 8))
    memories = model.new_memories(1, 64)
    model.prefill(tokens, memories)
    attn = model.blocks[1].attn
    x = model.blocks[0](model.embed(tokens))[0]
    _, raw, _ = attn.to_qkv(model.blocks[1].norm_attn(x)).view(1, 8, 3, 4, 8).unbind(2)
    stored, _, _ = memories[1].all_items()
    assert_close(stored[0, :, :8], raw[0].transpose(0, 1), atol=1e-6, rtol=1e-6)
    assert torch.equal(attn.rope(raw.transpose(1, 2))[..., 0, :], raw.transpose(1, 2)[..., 0, :])


def test_bad_recipes_are_refused_with_the_value_named():
    base, model = converted("rope")
    with pytest.raises(ValueError, match="memory_layers=\\(1,\\)"):
        add_memory_layers(model.state_dict(), model.cfg, (2,))
    with pytest.raises(ValueError, match="layers=\\(\\)"):
        add_memory_layers(base.state_dict(), VANILLA, ())
    with pytest.raises(ValueError, match="memory_position='sinusoid'"):
        add_memory_layers(base.state_dict(), VANILLA, (1,), "sinusoid")
    with pytest.raises(ValueError, match="memory_position='rope'"):
        ModelConfig(memory_layers=(1,), memory_kind="mt", memory_position="rope")


def _saved_vanilla(tmp_path):
    """A vanilla byte-level checkpoint of the books corpus, trained 2 steps."""
    from fot_edu.config import DataConfig, TrainConfig
    from fot_edu.training.train import train
    model = ModelConfig(d_model=32, n_heads=4, d_ff=64, n_layers=3, memory_layers=(),
                        memory_position="rope")
    cfg = TrainConfig(model=model, data=DataConfig(task="books", window=32), mode="plain",
                      batch_size=4, steps=2, warmup_steps=1, eval_every=2, checkpoint_every=2,
                      eval_batches=1)
    train(cfg, out_dir=tmp_path / "base", progress=False, device="cpu")
    return cfg, tmp_path / "base" / "checkpoint.pt"


def test_a_continuation_starts_from_its_base_with_memory_layers_added(tmp_path):
    """``TrainConfig.base`` (the text-d1 / text-fot presets): the continuation's first weights
    are the base's, and with nothing in memory it computes what the base computed."""
    import dataclasses

    from fot_edu.training.checkpoint import load_model
    from fot_edu.training.longllama import continuation_weights
    from fot_edu.training.train import Trainer, starting_weights

    base_cfg, path = _saved_vanilla(tmp_path)
    cfg = base_cfg.replace(model__memory_layers=(1,), mode="crossbatch", d=2, base=str(path))
    with pytest.raises(ValueError, match="init_state=starting_weights"):
        Trainer(cfg, device="cpu")  # a base is never dropped silently
    trainer = Trainer(cfg, device="cpu", init_state=starting_weights(cfg))
    base_model, _ = load_model(path)
    tokens = torch.randint(0, 256, (2, 32))
    with torch.no_grad():
        assert_close(trainer.model.eval()(tokens).logits, base_model(tokens).logits,
                     atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="d_model=32 there, 64 here"):
        continuation_weights(cfg.replace(model__d_model=64))
    with pytest.raises(ValueError, match="task 'books'"):
        continuation_weights(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, task="proofs")))
    with pytest.raises(ValueError, match="base=None"):
        continuation_weights(cfg.replace(base=None))


@pytest.mark.parametrize("family", ["text", "text-plain"])
def test_the_text_presets_are_a_base_and_two_short_continuations_of_it(family):
    import dataclasses

    from fot_edu.training.presets import preset
    base = preset(f"{family}-vanilla")
    for name in (f"{family}-d1", f"{family}-fot"):
        cfg = preset(name)
        assert cfg.base == f"{family}-vanilla" and cfg.steps <= base.steps // 10
        assert cfg.model.memory_position == "rope" and cfg.model.memory_layers
        # the base's architecture with memory layers added; the same corpus and windows
        assert dataclasses.replace(cfg.model, memory_layers=()) == base.model
        assert (cfg.data.task, cfg.data.window) == (base.data.task, base.data.window)
    assert preset(f"{family}-d1").d == 1
    assert preset(f"{family}-fot").d_at(preset(f"{family}-fot").steps) > 1


def test_the_copying_base_learns_to_copy_first_and_its_continuations_read_repeats_across_windows():
    """text-vanilla: convolved queries and keys, copying data first; its continuations' memory
    layer is layer 0 (where its copying formed) and their data repeats strings across windows."""
    from fot_edu.training.presets import preset
    base = preset("text-vanilla")
    assert base.model.qk_conv == (0, 1, 2, 3) and base.data.repeats[0] == (0, "synthetic")
    assert preset("text-plain-vanilla").model.qk_conv == () and not preset("text-plain-vanilla").data.repeats
    for name in ("text-d1", "text-fot"):
        assert preset(name).model.memory_layers == (0,)
        assert preset(name).data.repeats == ((0, "cross-phrase"),)
