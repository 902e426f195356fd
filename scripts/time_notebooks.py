"""Run notebooks headless in normal mode (``FOT_EDU_FAST`` unset) and record how long each takes.

    python scripts/time_notebooks.py [notebooks/04_crossbatch_training.ipynb ...]

Each notebook runs in its own kernel, as Run All does; the record ``docs/records/notebook-times.json``
keeps, per notebook, the seconds, whether it ran without error, and the load average before and
after, with the git commit and the machine. The README's notebook table is read from it. Run it
with nothing else on the machine.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "docs" / "records" / "notebook-times.json"


def loadavg() -> str:
    try:
        return open("/proc/loadavg").read().split(" ")[0]
    except OSError:
        return "unknown"


def run(notebook: Path, out_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "FOT_EDU_FAST"}
    before, t0 = loadavg(), time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook",
                           "--execute", "--ExecutePreprocessor.timeout=3600", "--output-dir",
                           str(out_dir), str(notebook)], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        print(proc.stderr[-2000:], file=sys.stderr)
    return {"seconds": round(seconds, 1), "ok": proc.returncode == 0, "load_before": before,
            "load_after": loadavg()}


def main(argv: list[str]) -> int:
    notebooks = [Path(a) for a in argv] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    record = json.loads(RECORD.read_text()) if RECORD.exists() else {"notebooks": {}}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as out_dir:
        for notebook in notebooks:
            timing = run(notebook.resolve(), Path(out_dir))
            record["notebooks"][notebook.name] = {**timing, "commit": commit}
            print(f"{notebook.name}: {timing['seconds']:.0f} s, {'ok' if timing['ok'] else 'FAILED'}, "
                  f"load {timing['load_before']} -> {timing['load_after']}", flush=True)
    record.update(command="python scripts/time_notebooks.py", machine=f"{platform.machine()}, "
                  f"{os.cpu_count()} cores, python {platform.python_version()}")
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return 0 if all(n["ok"] for n in record["notebooks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
