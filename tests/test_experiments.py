"""Experiments end to end in fast mode: every eval command's JSON shape, and the shipped
checkpoints reproduce the figures recorded beside them."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from fot_edu.cli.parser import main
from fot_edu.evaluation.distraction import dictionary_accuracy, distraction_curve
from fot_edu.evaluation.passkey import parse_length, passkey_accuracy
from fot_edu.evaluation.perplexity import perplexity_with_distractors
from fot_edu.evaluation.sets import perplexity_eval_set
from fot_edu.training.checkpoint import CHECKPOINT_DIR, load_model


@pytest.fixture(scope="module")
def code_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("code")
    assert main(["train", "--preset", "tiny-code", "--steps", "6", "--out", str(out), "--quiet",
                 "--device", "cpu"]) == 0
    return str(out / "checkpoint.pt")


def run_json(capsys, argv):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def assert_intervals(res):
    """Every figure has, at the same level, its sample size and a 95% interval around it."""
    figures = {k: v for k, v in res.items() if k not in ("n", "ci95")}
    assert set(res["n"]) == set(res["ci95"]) == set(figures)
    for metric, values in figures.items():
        assert list(res["n"][metric]) == list(res["ci95"][metric]) == list(values)
        for key, value in values.items():
            low, high = res["ci95"][metric][key]
            assert res["n"][metric][key] >= 1 and low <= value + 1e-9 and value <= high + 1e-9


def test_eval_perplexity_json_shape(code_checkpoint, capsys):
    res = run_json(capsys, ["eval", "perplexity", "--checkpoint", code_checkpoint,
                            "--distractors", "0,3", "--batches", "1"])
    assert list(res) == ["perplexity", "rise", "n", "ci95"]
    assert list(res["perplexity"]) == ["no_memory", "0", "3"] and list(res["rise"]) == ["3"]
    assert all(1.0 < v < 1000.0 for v in res["perplexity"].values())
    assert_intervals(res)


def test_eval_perplexity_memory_sweep_json_shape(code_checkpoint, capsys):
    res = run_json(capsys, ["eval", "perplexity", "--checkpoint", code_checkpoint,
                            "--memory-tokens", "0,64", "--docs", "2", "--doc-tokens", "256"])
    assert set(res) == {"perplexity", "drop", "n", "ci95"}
    assert list(res["perplexity"]) == ["0", "64"] and list(res["drop"]) == ["64"]
    assert res["n"]["perplexity"] == {"0": 2, "64": 2}
    assert_intervals(res)


def test_every_memory_size_scores_the_same_tokens(code_checkpoint):
    """The sweep compares like with like: the same tokens of the same documents for every size,
    a memory of 0 is the window read alone, and a larger memory reads more of the text before."""
    from fot_edu.data.batches import eval_documents
    from fot_edu.evaluation.perplexity import nll_rows, perplexity_vs_memory

    model, cfg = load_model(code_checkpoint)
    n = cfg.data.window
    res = perplexity_vs_memory(model, cfg, (0, n, 2 * n), num_docs=2, max_tokens_per_doc=4 * n)
    assert res["perplexity"][n] != res["perplexity"][2 * n]
    doc = [d for d in eval_documents(cfg.data) if d.num_tokens >= 3 * n][0]
    with torch.no_grad():
        alone = [nll_rows(model(doc.tokens[None, s:s + n]).logits, doc.targets[None, s:s + n])
                 for s in (2 * n, 3 * n)]  # what M = 0 scores of the first document
    one = perplexity_vs_memory(model, cfg, (0,), score_from=2 * n, num_docs=1,
                               max_tokens_per_doc=4 * n)
    expected = torch.exp(sum(a[0, 0] for a in alone) / sum(a[0, 1] for a in alone))
    assert abs(one["perplexity"][0] - float(expected)) < 1e-4
    for bad, match in (({"score_from": n + 1}, "score_from"), ({"max_tokens_per_doc": 2 * n},
                                                                "max_tokens_per_doc")):
        with pytest.raises(ValueError, match=match):
            perplexity_vs_memory(model, cfg, (0, 2 * n), **bad)


def test_eval_passkey_json_shape(code_checkpoint, capsys):
    res = run_json(capsys, ["eval", "passkey", "--checkpoint", code_checkpoint,
                            "--lengths", "300,10x", "--trials", "1"])
    assert list(res["accuracy"]) == ["300", "10x"]
    assert all(v in (0.0, 1.0) for v in res["accuracy"].values())
    assert_intervals(res)
    res = run_json(capsys, ["eval", "passkey", "--checkpoint", code_checkpoint,
                            "--lengths", "10x", "--trials", "1", "--no-memory"])
    assert list(res["accuracy"]) == ["10x"]


def test_parse_length():
    assert parse_length("32x", 128) == 32 * 256 and parse_length("4096", 128) == 4096
    with pytest.raises(ValueError, match="length='lots'"):
        parse_length("lots", 128)


ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "checkpoints.json"
SHIPPED = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_checkpoint_reproduces_its_recorded_figure(name):
    model, cfg = load_model(name)
    figures = SHIPPED[name]["figures"]
    if cfg.data.task == "dictionary":  # the default 128 documents, as recorded
        got = dictionary_accuracy(model, cfg, (7,))["accuracy"][7]
        assert got == pytest.approx(figures["accuracy"]["7"], abs=0.01)
    elif cfg.data.task == "retrieval":  # the record's fixed pairs (16 a batch)
        pairs = figures.get("n", {}).get("perplexity", {}).get("0", 32)
        got = perplexity_with_distractors(model, cfg, (0,), batches=pairs // 16)["perplexity"][0]
        assert got == pytest.approx(figures["perplexity"]["0"], rel=0.01)
    else:  # a corpus: the record reads every held-out window (minutes); r_d is seconds
        if "r_d" in figures:
            got = distraction_curve(model, cfg, (8,))[8]
            assert got == pytest.approx(figures["r_d"]["8"], abs=0.01)
        if "n" in figures:  # the record counts every held-out file
            files = len(set(perplexity_eval_set(cfg, 0)[1].tolist()))
            assert figures["n"]["perplexity"]["0"] == files
    if cfg.data.task == "retrieval":  # the record's seeded prompts at 4x (n of them)
        trials = figures.get("n", {}).get("passkey_top32", {}).get("4x", 10)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # token-by-token decoding: 4x faster than 2 threads on a busy CPU
        try:
            got = passkey_accuracy(model, cfg, ("4x",), trials=trials, k=32)["accuracy"]["4x"]
        finally:
            torch.set_num_threads(threads)
        assert got == pytest.approx(figures["passkey_top32"]["4x"], abs=0.01)


def test_every_shipped_checkpoint_has_a_record_and_is_small():
    for path in CHECKPOINT_DIR.glob("*.pt"):
        assert path.stem in SHIPPED, f"{path.name} has no entry in results/checkpoints.json"
        assert path.stat().st_size <= 3_000_000, f"{path.name} is over 3 MB"


def test_plot_results_draws_one_png_per_finding_from_the_record(tmp_path):
    spec = importlib.util.spec_from_file_location("plot_results", ROOT / "scripts" / "plot_results.py")
    plot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot)
    record = {"dict-fot": {"figures": {"accuracy": {"0": 1.0, "7": 0.9}, "r_d": {"2": 0.9, "8": 0.6}}},
              "code-d1": {"figures": {"perplexity": {"no_memory": 4.0, "0": 3.8, "7": 4.2}}}}
    (tmp_path / "results.json").write_text(json.dumps(record))
    records = tmp_path / "records"
    records.mkdir()
    args = ["--results", str(tmp_path / "results.json"), "--records", str(records), "--out", str(tmp_path)]
    assert plot.main(args) == 0
    drawn = sorted(p.name for p in tmp_path.glob("*.png"))
    # no passkey-fot in this record, no copy-emergence record: skipped, not drawn empty
    assert drawn == ["code_perplexity.png", "dictionary_accuracy.png", "distraction_ratio.png"]
    assert all((tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in drawn)
    gap = {"gap": 0.1, "gap_ci95": [0.0, 0.2], "rows": 4}
    (records / "copy-emergence-synthetic-cpu.json").write_text(json.dumps(
        {"arm": {"synthetic": {}}, "curve": [{"step": s, "text": gap, "random": gap} for s in (0, 10)]}))
    assert plot.main(args) == 0
    assert (tmp_path / "copy_emergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
