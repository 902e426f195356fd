"""Run notebooks headless in normal mode (``FOT_EDU_FAST`` unset) and record how long each takes.

    python scripts/time_notebooks.py [notebooks/04_crossbatch_training.ipynb ...]

Each notebook runs in its own kernel, as Run All does; the record ``results/records/notebook-times.json``
(``fot_edu.evaluation.records``: command, commit, machine, load and seconds of the latest run) keeps,
per notebook, the seconds, whether it ran without error, the load average before and after, and
the git commit it ran at. The README's notebook table is read from it. Run it
with nothing else on the machine.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fot_edu.evaluation.records import (RECORDS_DIR, Recording, git_commit, load_average,
                                        write_record)
from fot_edu.runtime import SOURCE_ROOT as ROOT

RECORD = RECORDS_DIR / "notebook-times.json"


def run(notebook: Path, out_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "FOT_EDU_FAST"}
    before, t0 = load_average(), time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook",
                           "--execute", "--ExecutePreprocessor.timeout=3600", "--output-dir",
                           str(out_dir), str(notebook)], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        print(proc.stderr[-2000:], file=sys.stderr)
    return {"seconds": round(seconds, 1), "ok": proc.returncode == 0,
            "load": {"before": before, "after": load_average()}}


def main(argv: list[str]) -> int:
    notebooks = [Path(a) for a in argv] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    notebook_times = json.loads(RECORD.read_text())["notebooks"] if RECORD.exists() else {}
    recording, commit = Recording(seed=None), git_commit()
    with tempfile.TemporaryDirectory() as out_dir:
        for notebook in notebooks:
            timing = run(notebook.resolve(), Path(out_dir))
            notebook_times[notebook.name] = {**timing, "commit": commit}
            print(f"{notebook.name}: {timing['seconds']:.0f} s, {'ok' if timing['ok'] else 'FAILED'}, "
                  f"load {timing['load']['before']} -> {timing['load']['after']}", flush=True)
    write_record(RECORD, recording, notebooks=dict(sorted(notebook_times.items())))
    return 0 if all(n["ok"] for n in notebook_times.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
