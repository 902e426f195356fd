"""The race as people watch it: a live widget with a start button, and the same outcome as text.

:func:`race_board` (a notebook or the race app) runs ``fot_edu.teaching.race.race`` with a
callback that draws both runs' loss and accuracy-with-distractors curves as they train
(:func:`race_figures`), then the accuracy against N with intervals (:func:`race_result_figure`).
:func:`race_table`, :func:`start_summary` and :func:`end_summary` say the same in a terminal
(``python -m fot_edu race``) and in the board's status line.
"""
from __future__ import annotations

import ipywidgets as W
import plotly.graph_objects as go

from fot_edu.runtime import fast_mode
from fot_edu.teaching.figures import MODEL_COLORS
from fot_edu.teaching.race import RUNS, RaceConfig, RaceResult, race

__all__ = ["race_board", "race_table", "start_summary", "end_summary"]


def race_board(cfg: RaceConfig | None = None, *, device=None, threads: int | None = None,
               redraw_every: int = 10):
    """The live race (``fot_edu.teaching.race``) as a widget: a start button, a status line with the
    starting point and the time left, the two runs' loss curves and their accuracy with distractors
    as they train (step 0: the starting point, measured), and at the end the accuracy against N
    with intervals, the starting point's beside the runs', and the entry-key cosines before and after.

    Handles: ``start`` (Button), ``status`` (HTML), ``loss``, ``live``, ``final`` (FigureWidgets),
    ``run`` (a function that runs the race in the calling cell and returns the
    :class:`~fot_edu.teaching.race.RaceResult`; the button calls it too) and ``result`` (a one-item list
    that holds the last result).
    """
    cfg = cfg or (RaceConfig.smoke() if fast_mode() else RaceConfig())
    loss_fig, live_fig = (go.FigureWidget(f) for f in race_figures(cfg.steps, cfg.fot_d,
                                                                        cfg.live_distractors))
    schedule = " -> ".join(str(d) for _, d in cfg.fot_schedule)
    loss_fig.layout.annotations[0].text = f"step 0: both from one model; FoT's d: {schedule}"
    final = go.FigureWidget(layout=dict(title="After the race: accuracy against distractors "
                                              "(press start)", height=420))
    start = W.Button(description="Start the race", button_style="success", icon="play",
                     layout=W.Layout(width="220px", height="48px"))
    big = "<span style='font-size:18px'>{}</span>".format
    status = W.HTML(big(f"Two copies of {cfg.start_name()} will train {cfg.steps} steps each: "
                        f"d = 1 and FoT (d = {schedule})."))
    index = {run: i for i, run in enumerate(RUNS)}
    points: dict = {run: ([], []) for run in index}
    result: list = []
    said: list = [""]  # the starting point, once measured

    def show(event, data):
        if event == "start":
            said[0] = start_summary(data, cfg.live_distractors)
            for trace in live_fig.data:
                trace.x, trace.y = [0], [data["live"]]
            status.value = big(f"{said[0]}; training...")
        elif event == "step":
            xs, ys = points[data["run"]]
            xs.append(data["step"])
            ys.append(data["loss"])
            if data["run"] == "FoT" and (data["step"] % redraw_every == 0 or data["step"] + 1 == cfg.steps):
                with loss_fig.batch_update():
                    for run, (x, y) in points.items():
                        loss_fig.data[index[run]].x, loss_fig.data[index[run]].y = list(x), list(y)
                status.value = big(f"{said[0]}<br>step {data['step'] + 1} of {cfg.steps} &middot; "
                                   f"{data['seconds']:.0f} s so far &middot; about {data['eta']:.0f} s "
                                   "of training left")
        elif event == "live":
            trace = live_fig.data[index[data["run"]]]
            trace.x, trace.y = list(trace.x) + [data["step"]], list(trace.y) + [data["accuracy"]]
        elif event == "evaluating":
            status.value = big("training done: both runs now answer with "
                               f"{', '.join(map(str, cfg.final_distractors))} distractor documents in memory...")

    def run() -> RaceResult:
        start.disabled = True
        for fig in (loss_fig, live_fig):
            for trace in fig.data:
                trace.x, trace.y = [], []
        for xs, ys in points.values():
            xs.clear(), ys.clear()
        try:
            res = race(cfg, device=device, threads=threads, callback=show)
        finally:
            start.disabled = False
        out = res.to_json()
        shown = {"start": out["start"], **out["models"]}
        fresh = race_result_figure(
            {name: {int(n): a for n, a in m["accuracy"].items()} for name, m in shown.items()},
            {name: {int(n): ci for n, ci in m["ci95"]["accuracy"].items()} for name, m in shown.items()},
            {name: m["r_8"] for name, m in shown.items()}, out["start"]["n"]["accuracy"])
        with final.batch_update():
            final.data = []
            final.add_traces(list(fresh.data))
            final.layout = fresh.layout
        status.value = big(f"done in {res.seconds:.0f} s on {res.device}<br>{end_summary(res)}")
        result[:] = [res]
        return res

    start.on_click(lambda _: run())
    wrap = W.Layout(flex_flow="row wrap")
    widget = W.VBox([W.HBox([start, status]), W.HBox([loss_fig, live_fig], layout=wrap), final])
    return widget, {"start": start, "status": status, "loss": loss_fig, "live": live_fig,
                    "final": final, "run": run, "result": result}


def race_table(result: RaceResult) -> str:
    """The starting point and the final comparison as a terminal table."""
    ns, rows = result.config.final_distractors, {"start": result.start, **result.final}
    lines = [f"{'':>5}  " + "  ".join(f"{f'acc N={n}':>9}" for n in ns)
             + "  r_8 at answers [95% interval]  entry-key cosine per head"]
    lines += [f"{name:>5}  " + "  ".join(f"{m['accuracy'][n]:>9.3f}" for n in ns)
              + f"  {m['r_8']:.3f} [{m['r_8_ci95'][0]:.3f}, {m['r_8_ci95'][1]:.3f}]        "
              + " ".join(f"{c:.2f}" for c in m["key_cosine"]) for name, m in rows.items()]
    return "\n".join(lines + [
        f"({result.start['n_tokens']} value tokens per N, r_8 over {result.start['r_8_pairs']} "
        f"held-out pairs; both runs trained {result.config.steps} steps from "
        f"{result.config.start_name()}; {result.seconds:.0f} s on {result.device})"])


def _cosine(m: dict) -> float:  # the mean over heads
    return sum(m["key_cosine"]) / len(m["key_cosine"])


def start_summary(start: dict, distractors: int = 15) -> str:
    """The starting point in one line: accuracy with 0 and ``distractors`` documents, r_8, cosine."""
    acc = start["accuracy"]
    most = max(n for n in acc if n <= distractors)
    return (f"starting point: accuracy {acc[0]:.0%} with its own document alone, {acc[most]:.0%} with "
            f"{most} distractors; r_8 {start['r_8']:.2f}; entry-key cosine {_cosine(start):.2f}")


def end_summary(result: RaceResult) -> str:
    """The outcome in one line: accuracy with distractors, r_8 and entry-key cosine, start -> end."""
    acc, most = result.accuracy, max(n for n in result.config.final_distractors
                                      if n <= result.config.live_distractors)
    start, fot, d1 = result.start, result.final["FoT"], result.final["d=1"]
    return (f"with {most} distractors: d = 1 answers {acc['d=1'][most]:.0%}, FoT {acc['FoT'][most]:.0%}"
            f" (start {start['accuracy'][most]:.0%}); r_8: d = 1 {d1['r_8']:.2f}, FoT {fot['r_8']:.2f}"
            f"; entry-key cosine {_cosine(start):.2f} at the start, then d = 1 {_cosine(d1):.2f}, "
            f"FoT {_cosine(fot):.2f}")


def race_figures(steps: int, fot_d: int, live_distractors: int) -> tuple[go.Figure, go.Figure]:
    """Empty live figures of the race (``fot_edu.teaching.race``): training loss and accuracy with
    ``live_distractors`` documents in memory, one line per run, filled in as it trains."""
    runs = {"d=1": "d = 1 (own C_prev only)", "FoT": f"FoT (d = {fot_d}: {fot_d - 1} negatives)"}
    loss = go.Figure([go.Scatter(x=[], y=[], mode="lines", name=label, line=dict(
        color=MODEL_COLORS[run], width=3)) for run, label in runs.items()])
    loss.add_vline(x=0, line_dash="dot", annotation_position="top right",
                   annotation_text=f"step 0: both from one model; FoT reads d = {fot_d} contexts")
    loss.update_layout(title="Training loss, live (value tokens of C_curr and C_prev)",
                       xaxis_title="training step", xaxis_range=[0, steps],
                       yaxis_title="LM loss (nats per target token)", legend_title_text="run",
                       height=380, font=dict(size=15))
    live = go.Figure([go.Scatter(x=[], y=[], mode="lines+markers", name=label, line=dict(
        color=MODEL_COLORS[run], width=3), marker=dict(size=9)) for run, label in runs.items()])
    live.update_layout(title=f"Accuracy with {live_distractors} distractor documents in memory, live",
                       xaxis_title="training step", xaxis_range=[0, steps],
                       yaxis_title="value-token accuracy (0..1)", yaxis_range=[0, 1.02],
                       legend_title_text="run", height=380, font=dict(size=15))
    return loss, live


def race_result_figure(accuracy: dict, ci95: dict, r_8: dict, n: int, title: str = "") -> go.Figure:
    """Final race figure: accuracy against distractors in memory per run, with 95% intervals
    (``ci95`` ``{run: {N: [low, high]}}``) and each run's r_8 in the legend."""
    fig = go.Figure()
    for run, curve in accuracy.items():
        xs = sorted(curve)
        low = [curve[x] - ci95[run][x][0] for x in xs]
        high = [ci95[run][x][1] - curve[x] for x in xs]
        fig.add_trace(go.Scatter(x=[str(x) for x in xs], y=[curve[x] for x in xs],
                                 name=f"{run} (r_8 = {r_8[run]:.2f})", mode="lines+markers",
                                 line=dict(color=MODEL_COLORS.get(run), width=3), marker=dict(size=10),
                                 error_y=dict(type="data", symmetric=False, array=high, arrayminus=low)))
    return fig.update_layout(
        title=title or (f"After the race: accuracy as distractors fill the memory<br><sub>{n} value "
                         "tokens per point, 95% intervals</sub>"),
        xaxis_title="distractor documents in memory (N)", yaxis_title="value-token accuracy (0..1)",
        yaxis_range=[0, 1.02], legend_title_text="run (r_8: attention on own C_prev, d = 8)",
        height=420, font=dict(size=15))
