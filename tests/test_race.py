"""The live race at smoke size: its logic, its command line and its widget (not its wall time:
benchmarks/race.py measures that)."""
import json

import pytest
import torch

from fot_edu.cli.parser import main
from fot_edu.evaluation.stats import wilson
from fot_edu.teaching import widgets
from fot_edu.teaching.race import RUNS, RaceConfig, race, start_model, start_runs, starting_point
from fot_edu.training.checkpoint import load_checkpoint


def test_both_runs_start_from_the_same_base_and_differ_only_in_d():
    cfg = RaceConfig.smoke()
    trainers = start_runs(cfg)
    d1, fot = trainers["d=1"], trainers["FoT"]
    for (name, a), (_, b) in zip(d1.model.state_dict().items(), fot.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert d1.cfg.d_at(0) == 1 and fot.cfg.d_at(0) == cfg.fot_d
    assert d1.cfg.replace(d=cfg.fot_d) == fot.cfg  # nothing else differs
    layer = d1.model.cfg.memory_layers[0]
    assert torch.allclose(d1.model.blocks[layer].attn.log_tau.exp(), torch.tensor(cfg.tau))


def test_the_starting_point_is_the_base_with_only_its_memory_temperature_reset():
    cfg = RaceConfig.smoke()
    weights, base_cfg = starting_point(cfg)
    base = load_checkpoint(cfg.base)["model"]
    changed = {name for name in base if not torch.equal(base[name], weights[name])}
    assert changed == {"blocks.1.attn.log_tau"}
    assert torch.allclose(weights["blocks.1.attn.log_tau"].exp(), torch.tensor(cfg.tau))
    model, _ = start_model(cfg)
    assert torch.equal(model.blocks[1].attn.log_tau, weights["blocks.1.attn.log_tau"])
    same, _ = starting_point(RaceConfig(tau=None))
    assert all(torch.equal(base[name], same[name]) for name in base)
    with pytest.raises(ValueError, match="tau=0"):
        starting_point(RaceConfig(tau=0))


def test_smoke_race_trains_both_runs_and_evaluates_them():
    cfg = RaceConfig.smoke()
    events = []
    result = race(cfg, callback=lambda event, data: events.append(event))
    assert [len(result.history[run]) for run in RUNS] == [cfg.steps, cfg.steps]
    assert [row["d"] for row in result.history["FoT"]] == [cfg.fot_d] * cfg.steps
    assert list(result.live["FoT"]) == list(range(cfg.eval_every, cfg.steps + 1, cfg.eval_every))
    assert events.count("step") == 2 * cfg.steps and events[-2:] == ["evaluating", "done"]
    out = result.to_json()
    assert set(out) == {"seconds", "device", "models"} and set(out["models"]) == set(RUNS)
    for run in RUNS:
        model = out["models"][run]
        assert list(model["accuracy"]) == [str(n) for n in cfg.final_distractors]
        assert 0 < model["r_8"] <= 1 and model["n"]["accuracy"] == result.n_tokens > 0
        low, high = model["ci95"]["r_8"]
        assert low <= model["r_8"] <= high and model["n"]["r_8"] == 32
        for n, (low, high) in model["ci95"]["accuracy"].items():
            assert low <= model["accuracy"][n] <= high


def test_wilson_interval():
    assert wilson(0.5, 100) == [0.4038, 0.5962]
    low, high = wilson(1.0, 640)
    assert high == 1.0 and 0.99 < low < 1.0


def test_race_command_ends_with_one_json_line(capsys):
    assert main(["race", "--json", "--quiet"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last["models"]) == {"d=1", "FoT"} and last["seconds"] > 0
    assert set(last["models"]["FoT"]) >= {"accuracy", "r_8"}


def test_race_board_draws_live_curves_and_the_final_figure():
    board, h = widgets.race_board(RaceConfig.smoke())
    result = h["run"]()
    assert h["result"] == [result]
    assert [len(trace.x) for trace in h["loss"].data] == [6, 6]
    assert [len(trace.y) for trace in h["live"].data] == [2, 2]
    assert [trace.name.split(" ")[0] for trace in h["final"].data] == ["d=1", "FoT"]
    assert "done in" in h["status"].value and not h["start"].disabled
