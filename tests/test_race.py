"""The live race at smoke size: its logic, its command line and its widget (not its wall time:
benchmarks/race.py measures that)."""
import dataclasses
import json

import pytest
import torch

from fot_edu.cli.parser import main
from fot_edu.evaluation.stats import wilson
from fot_edu.model import FoTModel
from fot_edu.teaching.race import RUNS, RaceConfig, race, start_model, start_runs, starting_point
from fot_edu.teaching.race_board import end_summary, race_board, start_summary
from fot_edu.training.checkpoint import load_checkpoint


def test_both_runs_start_from_the_same_untrained_weights_and_differ_only_in_d():
    cfg = RaceConfig.smoke()
    trainers = start_runs(cfg)
    d1, fot = trainers["d=1"], trainers["FoT"]
    for (name, a), (_, b) in zip(d1.model.state_dict().items(), fot.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert [d1.cfg.d_at(s) for s in range(cfg.steps)] == [1] * cfg.steps
    assert [fot.cfg.d_at(s) for s in range(cfg.steps)] == [1, 1, 2, 2, 4, 4]
    assert d1.cfg.replace(d_schedule=cfg.fot_schedule) == fot.cfg  # nothing else differs
    # untrained: fresh weights drawn with init_seed, not any shipped checkpoint's
    weights, _ = starting_point(cfg)
    shipped = load_checkpoint("dict-fot")["model"]
    assert not any(torch.equal(weights[n], shipped[n]) for n in weights if "norm" not in n)
    torch.manual_seed(cfg.init_seed)
    fresh = FoTModel(d1.model.cfg).state_dict()
    assert all(torch.equal(fresh[n], weights[n]) for n in weights)
    other, _ = starting_point(RaceConfig(init_seed=1))
    assert not torch.equal(other["embed.weight"], weights["embed.weight"])


def test_the_starting_point_does_not_move_the_callers_random_state():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    starting_point(RaceConfig.smoke())
    assert torch.equal(torch.rand(3), expected)


def test_a_race_from_a_checkpoint_starts_from_its_weights_unchanged():
    weights, base_cfg = starting_point(RaceConfig(base="dict-fot"))
    shipped = load_checkpoint("dict-fot")["model"]
    assert all(torch.equal(shipped[n], weights[n]) for n in shipped)
    model, _ = start_model(RaceConfig(base="dict-fot"))
    assert torch.equal(model.embed.weight, shipped["embed.weight"])
    assert "dict-fot" in RaceConfig(base="dict-fot").start_name()
    assert "untrained" in RaceConfig().start_name()


@pytest.mark.parametrize("change, message", [({"steps": 0}, "steps=0"), ({"base": 3}, "base=3"),
                                             ({"fot_schedule": ((0, 1),)}, "fot_schedule=")])
def test_bad_race_settings_are_refused_by_name(change, message):
    with pytest.raises(ValueError, match=message):
        RaceConfig(**change)


SMOKE = dataclasses.replace(RaceConfig.smoke(), data_seed=7)  # batches unlike the r_d pairs' seed 0


@pytest.fixture(scope="module")
def smoke():
    """One smoke race in this process and the events its callback saw."""
    events = []
    result = race(SMOKE, callback=lambda event, data: events.append((event, data)))
    return result, events


def test_smoke_race_measures_the_start_trains_both_runs_and_evaluates_them(smoke):
    cfg = RaceConfig.smoke()
    result, events = smoke
    names = [event for event, _ in events]
    assert names[0] == "start" and names[-2:] == ["evaluating", "done"]
    assert names.count("step") == 2 * cfg.steps
    start = events[0][1]
    # step 0 of the live curves is the starting point, measured before any training
    assert all(result.live[run][0] == start["live"] for run in RUNS)
    assert list(result.live["FoT"]) == [0, *range(cfg.eval_every, cfg.steps + 1, cfg.eval_every)]
    assert [row["d"] for row in result.history["FoT"]] == [1, 1, 2, 2, 4, 4]
    assert [row["d"] for row in result.history["d=1"]] == [1] * cfg.steps
    model, base_cfg = start_model(cfg)
    again = result.start["accuracy"]
    from fot_edu.evaluation.distraction import dictionary_accuracy
    assert dictionary_accuracy(model, base_cfg, cfg.final_distractors, batch_size=cfg.final_docs,
                               batches=1)["accuracy"] == again
    out = result.to_json()
    assert set(out) == {"seconds", "device", "start", "models", "live"} and set(out["models"]) == set(RUNS)
    assert out["live"] == {run: {str(k): round(v, 4) for k, v in result.live[run].items()} for run in RUNS}
    for model in (out["start"], *out["models"].values()):
        assert list(model["accuracy"]) == [str(n) for n in cfg.final_distractors]
        assert 0 < model["r_8"] <= 1 and model["n"]["accuracy"] == 40
        assert len(model["key_cosine"]) == base_cfg.model.n_heads
        assert all(-1 <= c <= 1 for c in model["key_cosine"])
        low, high = model["ci95"]["r_8"]
        assert low <= model["r_8"] <= high and model["n"]["r_8"] == 32
        for n, (low, high) in model["ci95"]["accuracy"].items():
            assert low <= model["accuracy"][n] <= high
    assert "starting point" in start_summary(start) and "FoT" in end_summary(result)


def test_the_two_runs_in_two_processes_give_the_same_race_as_in_one(smoke):
    cfg = SMOKE
    one = smoke[0]
    two = race(dataclasses.replace(cfg, parallel=True))
    for run in RUNS:
        assert [r["loss"] for r in two.history[run]] == pytest.approx(
            [r["loss"] for r in one.history[run]], abs=1e-5)
        assert two.final[run]["r_8"] == pytest.approx(one.final[run]["r_8"], abs=1e-5)
        model, _ = two.models[run]
        assert not model.training
    assert two.start == one.start


def test_r_8_is_read_on_the_shipped_models_pairs(smoke):
    cfg, result = SMOKE, smoke[0]
    from fot_edu.evaluation.distraction import distraction_summary
    model, train_cfg = result.models["FoT"]
    assert train_cfg.seed == cfg.data_seed != 0
    shipped_pairs = distraction_summary(model, train_cfg.replace(seed=0), (8,), batches=1)
    assert result.r_8["FoT"] == pytest.approx(shipped_pairs["r_d"][8], abs=1e-6)


def test_wilson_interval():
    assert wilson(0.5, 100) == [0.4038, 0.5962]
    low, high = wilson(1.0, 640)
    assert high == 1.0 and 0.99 < low < 1.0


def test_race_command_ends_with_one_json_line(capsys):
    assert main(["race", "--json", "--quiet"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last["models"]) == {"d=1", "FoT"} and last["seconds"] > 0
    assert set(last["models"]["FoT"]) >= {"accuracy", "r_8", "key_cosine"}
    assert set(last["start"]) >= {"accuracy", "r_8", "key_cosine"}


def test_race_board_shows_the_start_at_step_0_and_the_final_figure():
    board, h = race_board(RaceConfig.smoke())
    assert "untrained" in h["status"].value
    result = h["run"]()
    assert h["result"] == [result]
    assert [len(trace.x) for trace in h["loss"].data] == [6, 6]
    assert [list(trace.x) for trace in h["live"].data] == [[0, 3, 6], [0, 3, 6]]
    assert [trace.y[0] for trace in h["live"].data] == [result.live["d=1"][0]] * 2
    assert [trace.name.split(" ")[0] for trace in h["final"].data] == ["start", "d=1", "FoT"]
    assert "done in" in h["status"].value and "entry-key cosine" in h["status"].value
    assert not h["start"].disabled
