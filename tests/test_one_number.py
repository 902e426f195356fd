"""One measurement, one number: r_d for a shipped model is the same from the command line, the
HTML report and the classroom dashboard (they all call ``distraction.distraction_curve``)."""
import json

import pytest

from fot_edu.cli.parser import main
from fot_edu.teaching import report, widgets
from fot_edu.training.checkpoint import load_model


@pytest.mark.slow
def test_r_d_is_the_same_from_cli_report_and_dashboard(capsys):
    models = {"d=1": load_model("dict-d1"), "FoT": load_model("dict-fot")}
    names = {"d=1": "dict-d1", "FoT": "dict-fot"}
    ds = (1, 2, 4, 8, 16)
    figures = dict(report.headline_figures(models, ds=ds, distractors=(0,)))
    from_report = {trace.name: dict(zip(trace.x, trace.y)) for trace in
                   next(fig for caption, fig in figures.items() if caption.startswith("r_d")).data}
    _, handles = widgets.classroom_dashboard(models, r_d_values=ds)
    for name, checkpoint in names.items():
        assert main(["eval", "distraction", "--checkpoint", checkpoint, "--d", "2,4,8,16",
                     "--json"]) == 0
        from_cli = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["r_d"]
        handles["model"].value = name
        curve = next(t for t in handles["r_d"].data if t.name == name)
        from_dashboard = dict(zip(curve.x, curve.y))
        for d in (2, 4, 8, 16):
            assert round(from_cli[str(d)], 3) == round(from_report[name][d], 3) \
                == round(from_dashboard[d], 3), (name, d)
    assert from_cli["8"] > 0.5  # dict-fot, the last one read: focused, far above 1/8
