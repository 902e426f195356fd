"""Passkey evaluation, fairly (fot_edu.evaluation.passkey): prompts drawn per length, readings paired on
the same prompts, a no-memory reading that sees one window at most, and n / ci95 everywhere."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from fot_edu.cli.parser import build_parser
from fot_edu.config import DataConfig, ModelConfig, TrainConfig
from fot_edu.data.passkey import passkey_line
from fot_edu.evaluation.passkey import (parse_length, passkey_accuracy, passkey_paired,
                                        passkey_prompts)
from fot_edu.evaluation.stats import mcnemar, wilson
from fot_edu.layer import Attention, Streaming
from fot_edu.model import FoTModel
from fot_edu.teaching import figures

WINDOW = 64
CFG = TrainConfig(model=ModelConfig(n_layers=2, d_model=32, n_heads=2, d_ff=64, memory_layers=(1,)),
                  data=DataConfig(task="code", window=WINDOW))
LENGTHS = ("4x", "6x")  # 512 and 768 bytes: 8 and 12 windows of 64


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models decode token by token: one thread is fastest, and on a busy 2-core machine
    two threads fight (one of these tests takes 2 s alone and over 30 s so)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FoTModel(CFG.model).eval()


def depth(text: str, key: int) -> int:
    """Where the key line starts, in bytes."""
    return text.index(passkey_line(key))


def test_each_length_draws_its_own_keys_and_depths():
    sets = passkey_prompts(("4x", "8x", "16x"), WINDOW, trials=30, seed=0)
    keys = {spec: [key for _, key in prompts] for spec, prompts in sets.items()}
    depths = {spec: [depth(text, key) / len(text) for text, key in prompts]
              for spec, prompts in sets.items()}
    for spec, prompts in sets.items():
        assert len(prompts) == 30 and len(set(keys[spec])) >= 28  # keys vary within a length
        assert all(len(text.encode()) <= parse_length(spec, WINDOW) for text, _ in prompts)
    for a, b in (("4x", "8x"), ("8x", "16x"), ("4x", "16x")):
        assert len(set(keys[a]) & set(keys[b])) <= 2  # not the same keys again (1..50000)
        # not the same depths again: a shared seed would put the key line at the same fractions
        assert sum(abs(x - y) < 0.01 for x, y in zip(depths[a], depths[b])) <= 3
    assert len({round(d, 2) for d in depths["16x"]}) >= 20  # depths spread over the prompt


def test_prompt_sets_are_reproducible_and_grow_by_appending():
    def prompts(trials, seed=0):
        return passkey_prompts(("4x",), WINDOW, trials, seed)["4x"]

    assert prompts(12, seed=3) == prompts(12, seed=3)
    assert prompts(12)[:5] == prompts(5)  # more prompts append, the first ones stay
    assert prompts(5, seed=1) != prompts(5)
    # a length named two ways is the same length, so the same prompts
    assert passkey_prompts(("512",), WINDOW, 5)["512"] == passkey_prompts(("4x",), WINDOW, 5)["4x"]
    for bad, match in (({"trials": 0}, "trials=0"), ({"seed": -1}, "seed=-1")):
        with pytest.raises(ValueError, match=match):
            passkey_prompts(("4x",), WINDOW, **{"trials": 3, **bad})


def test_readings_read_the_same_prompts_and_report_n_and_ci95(model):
    examples = {}
    for name, kwargs in (("top2", {"k": 2}), ("dense", {}), ("none", {"memory": False})):
        res = passkey_accuracy(model, CFG, LENGTHS, trials=3, examples=examples.setdefault(name, []),
                               **kwargs)
        assert list(res) == ["accuracy", "n", "ci95"]
        assert res["n"] == {"accuracy": {spec: 3 for spec in LENGTHS}}
        for spec, value in res["accuracy"].items():
            assert res["ci95"]["accuracy"][spec] == wilson(value, 3)
    expected = [(spec, key) for spec, prompts in passkey_prompts(LENGTHS, WINDOW, 3).items()
                for _, key in prompts]
    for answers in examples.values():
        assert [(e["length"], e["key"]) for e in answers] == expected
    paired = passkey_paired(examples["top2"], examples["dense"])
    assert list(paired) == list(LENGTHS)
    assert all(0.0 <= c["p"] <= 1.0 and c["only_a"] + c["only_b"] <= 3 for c in paired.values())
    with pytest.raises(ValueError, match="same prompts"):
        passkey_paired(examples["top2"], examples["dense"][::-1])


@pytest.mark.parametrize("memory", [False, True])
def test_no_memory_reading_never_sees_more_than_one_window(model, memory):
    seen = []  # (layer, positions in the local context, memory context)

    def record(module, args):
        x, context = args[0], args[1] if len(args) > 1 else None
        seen.append((module.index, x.shape[1], context))

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, Attention)]
    try:
        passkey_accuracy(model, CFG, ("8x",), trials=1, memory=memory, k=2)
    finally:
        for hook in hooks:
            hook.remove()
    assert seen and max(positions for _, positions, _ in seen) <= WINDOW
    memory_layer = [context for index, _, context in seen if index in CFG.model.memory_layers]
    if memory:  # the same reading with memory on: the memory layer reads a store
        assert any(isinstance(c, Streaming) and c.memories for c in memory_layer)
    else:  # memory off: no layer is ever handed a memory
        assert all(context is None for _, _, context in seen)


def test_mcnemar_exact():
    assert mcnemar(0, 0) == 1.0 and mcnemar(3, 3) == 1.0
    assert mcnemar(5, 0) == mcnemar(0, 5) == 0.0625  # 2 * 0.5 ** 5
    assert mcnemar(10, 2) == pytest.approx(0.0386, abs=1e-4)  # scipy.stats.binomtest(2, 12)
    assert mcnemar(0, 20) == pytest.approx(2 * 0.5 ** 20, rel=1e-2)  # 3 digits, not rounded to 0
    with pytest.raises(ValueError, match="only_a=-1"):
        mcnemar(-1, 2)


def test_cli_defaults_to_50_prompts_per_length():
    args = build_parser().parse_args(["eval", "passkey", "--checkpoint", "passkey-fot"])
    assert args.trials == 50 and args.seed == 0 and not args.no_memory


def _reproduce():
    path = Path(__file__).resolve().parents[1] / "scripts" / "reproduce.py"
    spec = importlib.util.spec_from_file_location("reproduce", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipping_replaces_one_entry_and_keeps_the_others(tmp_path, monkeypatch):
    reproduce = _reproduce()
    monkeypatch.setattr(reproduce, "CHECKPOINT_DIR", tmp_path)
    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "results.json")
    base = {"command": "c", "seed": 0, "train_seconds": 1.0, "machine": "m"}
    (tmp_path / "results.json").write_text(json.dumps(
        {"other": {**base, "figures": {"accuracy": {"0": 0.5}}},
         "passkey-fot": {**base, "figures": {"passkey_top32": {"1x": 0.9}}}}))
    # meanwhile another run ships its entry; ours must not undo it
    newer = {**base, "figures": {"accuracy": {"0": 0.75}}}
    (tmp_path / "results.json").write_text(json.dumps(
        {**json.loads((tmp_path / "results.json").read_text()), "other": newer}))
    figures = {"passkey_top32": {"1x": 1.0}, "n": {"passkey_top32": {"1x": 50}},
               "ci95": {"passkey_top32": {"1x": [0.93, 1.0]}},
               "paired": {"passkey_top32_vs_dense": {"1x": {"only_a": 0, "only_b": 0, "p": 1.0}}}}
    record = {**base, "eval_machine": "here", "eval_seconds": 2.0, "figures": figures}
    reproduce.ship_record("passkey-fot", record)
    shipped = json.loads((tmp_path / "results.json").read_text())
    assert shipped == {"other": newer, "passkey-fot": record}
    readme = (tmp_path / "README.md").read_text()
    assert "| 95% | 0.93-1.00 |" in readme and "| n | 50 |" in readme
    assert "top32 only 0, dense only 0, p = 1.0" in readme


def test_figure_draws_the_95_percent_intervals():
    fig = figures.metric_vs_memory_figure({"top-32": {"1x": 0.5, "4x": 1.0}}, "passkey",
                                      intervals={"top-32": {"1x": [0.2, 0.9], "4x": [0.9, 1.0]}})
    bars = fig.data[0].error_y
    assert list(bars.array) == pytest.approx([0.4, 0.0])
    assert list(bars.arrayminus) == pytest.approx([0.3, 0.1])
    assert figures.metric_vs_memory_figure({"a": {0: 1.0}}).data[0].error_y.array is None
