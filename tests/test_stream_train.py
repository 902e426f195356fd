"""Stream training (``mode="stream"``, the Memorizing Transformer's recipe): each row reads its
documents window by window into its own memory, which is detached and cleared at every new document."""
import dataclasses
import itertools
import json
import math

import pytest
import torch
from torch.testing import assert_close

from fot_edu.config import DataConfig, ModelConfig, TrainConfig
from fot_edu.data.batches import WindowStream, iter_stream_windows, training_stream
from fot_edu.data.dictionary import DictionaryDocument
from fot_edu.model import FoTModel
from fot_edu.runtime import one_thread
from fot_edu.streaming import read_window
from fot_edu.training.checkpoint import load_checkpoint, load_model, save_checkpoint
from fot_edu.training.presets import preset
from fot_edu.training.train import Trainer, train

VOCAB, N, B = 16, 12, 8
BLANK = VOCAB - 1


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread is fastest, and on a busy 2-core machine two threads fight."""
    with one_thread():
        yield


def recall_docs(seed=0):
    """Endless documents of two windows: ``a a ... a`` then ``BLANK ...`` whose every target is
    ``a``. The second window alone says nothing about ``a``: only memory can answer."""
    g = torch.Generator().manual_seed(seed)
    for i in itertools.count():
        a = int(torch.randint(0, BLANK, (), generator=g))
        tokens = torch.tensor([a] * N + [BLANK] * N)
        targets = torch.full_like(tokens, -100)
        targets[N:] = a
        yield DictionaryDocument(i, f"recall-{i}", tokens, targets)


def recall_stream():
    return WindowStream(lambda: iter_stream_windows(recall_docs(), B, N))


def tiny_cfg(kind="mt", **kw):
    model = ModelConfig(vocab_size=VOCAB, d_model=32, n_heads=2, d_ff=64, n_layers=2,
                        memory_layers=(1,), memory_kind=kind)
    base = dict(model=model, data=DataConfig(task="code", window=N), mode="stream", batch_size=B,
                steps=60, lr=3e-3, warmup_steps=5, eval_every=1000, checkpoint_every=1000,
                memory_capacity=4 * N)
    return TrainConfig(**{**base, **kw})


def dictionary_cfg(**kw):
    """The smoke-sized dictionary task, streamed: documents of 2, 3, 4 windows, then 4."""
    return preset("tiny-fot").replace(mode="stream", d_schedule=(), model__memory_kind="mt",
                                      batch_size=4, eval_every=1000, **kw)


def test_memory_is_cleared_when_a_new_document_starts_in_a_row():
    trainer = Trainer(dictionary_cfg(steps=12), device="cpu")
    cfg, memory = trainer.cfg, trainer.memories[1]
    windows = training_stream(cfg.data, "train", cfg.batch_size, seed=cfg.seed)  # the same stream
    read_in_doc = [0] * cfg.batch_size  # windows of its current document each row has read
    switches = 0
    for _ in range(12):
        before = trainer.windows_read
        trainer.step()
        for index in range(before, trainer.windows_read):  # the windows this step read
            window = windows(index)
            for r in range(cfg.batch_size):
                read_in_doc[r] = 1 if window.new_doc[r] else read_in_doc[r] + 1
                switches += int(window.new_doc[r]) if index else 0
        for r, count in enumerate(read_in_doc):  # only the current document, every window of it
            assert int(memory.sizes[r]) == count * cfg.data.window
            assert (memory.doc_ids[r, :count * cfg.data.window] == window.doc_ids[r]).all()
    assert switches >= 4  # rows did move on to new documents during the test


def test_memory_keys_are_detached_so_no_gradient_reaches_earlier_windows():
    model = FoTModel(tiny_cfg().model)
    memories = model.new_memories(B, 4 * N)
    stored = []
    hook = model.blocks[1].attn.to_qkv.register_forward_hook(lambda m, i, out: stored.append(out))
    first, second = recall_stream()(0), recall_stream()(1)
    read_window(model, first.tokens, memories, reset=first.new_doc, k=4)
    logits = read_window(model, second.tokens, memories, k=4).logits
    hook.remove()
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), second.targets.flatten())
    earlier, current = torch.autograd.grad(loss, stored, allow_unused=True)
    assert earlier is None  # the first window's keys and values left no path to the loss
    assert current is not None and current.abs().sum() > 0
    assert not memories[1].keys.requires_grad and not memories[1].values.requires_grad
    # and the memory is really read: without it the second window's logits change
    alone = model(second.tokens).logits
    assert not torch.allclose(alone, logits.detach())


def test_stream_training_lowers_the_loss_below_chance_through_memory():
    result = train(tiny_cfg(), batch_fn=recall_stream(), progress=False, device="cpu")
    losses = [row["loss"] for row in result.history]
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.5 * math.log(BLANK) < first, f"loss {first:.3f} -> {last:.3f}"


@pytest.mark.parametrize("changes, expected", [
    (dict(model__memory_layers=()), ["model.memory_layers=()", "mode='stream'"]),
    (dict(d=2), ["d=2", "mode='stream'"]),
    (dict(d_schedule=((0, 1), (5, 2))), ["d_schedule=((0, 1), (5, 2))", "empty"]),
    (dict(memory_k=0), ["memory_k=0", "None for all of memory"]),
    (dict(memory_capacity=8), ["memory_capacity=8", "data.window=12"]),
    (dict(data=DataConfig(task="retrieval", window=12, entries_per_window=1)),
     ["data.task='retrieval'", "mode='stream'"]),
])
def test_stream_config_errors_name_the_field_and_value(changes, expected):
    with pytest.raises(ValueError) as info:
        tiny_cfg().replace(**changes)
    for text in expected:
        assert text in str(info.value), f"{text!r} not in {info.value}"


def test_dictionary_documents_too_long_for_the_key_space_are_refused():
    with pytest.raises(ValueError, match="data.doc_windows=40"):
        dictionary_cfg(data=preset("tiny-fot").data.__class__(
            task="dictionary", window=24, num_symbols=4, key_len=2, value_len=1,
            entries_per_window=4, doc_windows=40))


def test_fot_memory_layers_stream_too():
    result = train(tiny_cfg("fot", steps=3), batch_fn=recall_stream(), progress=False, device="cpu")
    assert len(result.history) == 3 and all(math.isfinite(r["loss"]) for r in result.history)


def test_stream_checkpoint_round_trips(tmp_path):
    cfg = dictionary_cfg(steps=3)
    result = train(cfg, out_dir=tmp_path, progress=False, device="cpu")
    model, loaded = load_model(tmp_path / "checkpoint.pt")
    assert loaded == result.config and loaded.mode == "stream"
    stream = training_stream(loaded.data, "eval", 4)
    reads = []
    for reader in (model, result.model):
        memories = reader.new_memories(4, loaded.memory_capacity)
        reads.append(torch.cat([read_window(reader, stream(i).tokens, memories, k=loaded.memory_k,
                                            reset=stream(i).new_doc).logits for i in range(3)]))
    assert torch.equal(*reads)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["extra"]["stream_windows"] == 4


def test_a_resumed_stream_run_continues_at_its_window_with_its_memories(tmp_path):
    cfg = dictionary_cfg(steps=8, checkpoint_every=4)
    full = train(cfg, progress=False, device="cpu")

    def crash(row):
        if row["step"] == 5:  # killed after the step-4 checkpoint
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, out_dir=tmp_path, progress=False, device="cpu", callback=crash)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    resumed = Trainer.resumed(state["config"], tmp_path / "checkpoint.pt", device="cpu")
    assert resumed.step_index == 4 and resumed.windows_read == state["extra"]["stream_windows"] == 5
    sizes = [int(s) for s in resumed.memories[1].sizes]
    assert min(sizes) > 0  # every row's memory read again, up to the window it had reached
    while not resumed.done:
        resumed.step()
    assert [r["step"] for r in resumed.history] == list(range(8))
    assert_close(torch.tensor([r["loss"] for r in resumed.history[:4]]),
                 torch.tensor([r["loss"] for r in full.history[:4]]))
    # the same windows after the resume; only the re-read memories differ a little
    assert_close(torch.tensor([r["loss"] for r in resumed.history[4:]]),
                 torch.tensor([r["loss"] for r in full.history[4:]]), rtol=0.05, atol=0.05)


def test_a_checkpoint_in_another_mode_is_not_resumed(tmp_path):
    cfg = dictionary_cfg(steps=2)
    train(cfg, out_dir=tmp_path, progress=False, device="cpu")
    other = cfg.replace(mode="crossbatch")
    with pytest.raises(ValueError, match="mode='stream'"):
        Trainer.resumed(other, tmp_path / "checkpoint.pt", device="cpu")


def test_an_old_mt_checkpoint_still_loads(tmp_path):
    """Written before stream training: ``mode="mt"``, none of the stream fields."""
    cfg = preset("dict-mt").replace(model__vocab_size=36)
    path = save_checkpoint(tmp_path / "old.pt", FoTModel(cfg.model), cfg)
    state = torch.load(path, weights_only=True)
    old = json.loads(state["config_json"])
    for name in ("memory_k", "memory_capacity"):
        old.pop(name)
    old["data"].pop("doc_windows")
    state["config_json"] = json.dumps({**old, "mode": "mt"})
    torch.save(state, path)
    _, loaded = load_model(path)
    assert loaded.mode == "crossbatch" and loaded.model.memory_kind == "mt" and loaded.d == 1
    assert loaded.memory_k == 32 and loaded.data.doc_windows == 4


def test_mt_presets_stream_with_the_fot_presets_model_data_and_steps():
    for task in ("dict", "code"):
        mt, fot = preset(f"{task}-mt"), preset(f"{task}-fot")
        assert mt.mode == "stream" and mt.model.memory_kind == "mt"
        assert mt.model == dataclasses.replace(fot.model, memory_kind="mt")
        assert (mt.data, mt.steps, mt.batch_size) == (fot.data, fot.steps, fot.batch_size)
    stream = training_stream(preset("dict-mt").data, "train", 4)
    assert [int(stream(i).new_doc.sum()) for i in range(5)] == [4, 0, 2, 1, 1]
