"""The command line end to end on the tiny preset: train, then every eval with --json."""
import json
import re

import pytest
from test_experiments import assert_intervals

from fot_edu.cli.parser import main


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--preset", "tiny-fot", "--steps", "12", "--out", str(out), "--quiet",
                 "--device", "cpu"]) == 0
    return out / "checkpoint.pt"


def run_json(capsys, argv):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_eval_dictionary_json_shape(tiny_checkpoint, capsys):
    res = run_json(capsys, ["eval", "dictionary", "--checkpoint", str(tiny_checkpoint),
                            "--distractors", "0,1,3", "--batches", "1"])
    assert set(res) == {"accuracy", "value_accuracy", "r", "r_all_queries", "n", "ci95"}
    assert list(res["accuracy"]) == ["0", "1", "3"] and list(res["r"]) == ["1", "3"]
    assert all(0.0 <= v <= 1.0 for part in ("accuracy", "r") for v in res[part].values())
    assert_intervals(res)
    assert res["n"]["accuracy"]["0"] == 32 * 4  # 32 documents, 4 value tokens each (tiny-fot)
    assert res["n"]["value_accuracy"]["0"] == 32 * 4 and res["n"]["r"]["1"] == 32  # value_len 1


def test_eval_distraction_json_shape(tiny_checkpoint, capsys):
    res = run_json(capsys, ["eval", "distraction", "--checkpoint", str(tiny_checkpoint),
                            "--d", "2,4", "--batches", "1"])
    assert list(res["r_d"]) == list(res["r_d_all_queries"]) == ["2", "4"]
    assert all(0.0 < v <= 1.0 for v in res["r_d"].values())
    assert_intervals(res)
    assert res["n"]["r_d"]["2"] == 32  # one group of 32 pairs


def test_unknown_preset_and_checkpoint_are_named(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--preset", "no-such-preset"])
    assert "no-such-preset" in capsys.readouterr().err
    assert main(["eval", "distraction", "--checkpoint", "no-such-ckpt"]) == 2
    assert "no-such-ckpt" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "eval", "demo", "data"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage" in capsys.readouterr().out


@pytest.mark.parametrize("argv, expected", [
    (["eval", "passkey", "--checkpoint", "passkey-fot", "--trials", "0"], "--trials"),
    (["eval", "passkey", "--checkpoint", "passkey-fot", "--lengths", "2x,100"], "length='100'"),
    (["eval", "distraction", "--checkpoint", "runs/no-such/checkpoint.pt"], "train --preset"),
    (["eval", "perplexity", "--checkpoint", "code-fot", "--baseline", "code-vanilla"],
     "has no memory layer"),
])
def test_command_line_edges_fail_at_once_in_one_line(argv, expected, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse's own errors
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err
    assert "passkey 2x" not in err  # no progress bar: the valid length was not run first


def test_vanilla_dictionary_says_it_has_no_r(capsys):
    assert main(["eval", "dictionary", "--checkpoint", "dict-vanilla", "--distractors", "0",
                 "--batches", "1"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "no memory layer" in out and "\nr:" not in out
    assert "95% interval" in out and "n (value tokens)" in out


@pytest.mark.slow
def test_demo_tours_the_shipped_models_and_fot_wins_with_distractors(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "shipped checkpoints" in out
    rows = {line.split()[0]: [float(x) for x in line.split()[1:]] for line in out.splitlines()
            if re.match(r"\s*(d=1|FoT)\s+\d", line)}
    assert rows["FoT"][2] > 0.9 > 0.5 > rows["d=1"][2]  # accuracy with 15 distractors
    assert rows["FoT"][-1] > 2 * rows["d=1"][-1]  # r_8
