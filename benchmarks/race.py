"""The live race against its targets, recorded: ``python benchmarks/race.py [--device cuda]``.

Runs ``fot_edu.race.race`` (what ``python -m fot_edu race`` and notebook 04 run), prints the
result beside the targets of the live-training issue, and writes the record
``docs/records/race-{device}.json``: command, git commit, machine, Python and torch versions, load
average before and after, the race's configuration (seeds included) and its results with 95%
intervals. Time it with nothing else running (the load is recorded so a reader can tell).

Targets (2-core CPU): whole race <= 180 s; FoT accuracy with 15 distractors >= 0.90; d = 1 <= 0.50
there; FoT's r_8 >= 2x d = 1's. On a GPU: <= 30 s.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys

import torch

from common import ROOT, machine  # noqa: E402 (sets sys.path)
from fot_edu.race import RaceConfig, race, race_table  # noqa: E402
from fot_edu.runtime import default_device  # noqa: E402


def loadavg() -> str:
    try:
        return open("/proc/loadavg").read().split(" ")[0]
    except OSError:
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the race's, 1)")
    parser.add_argument("--no-record", action="store_true", help="print only, write no record")
    args = parser.parse_args(argv)
    device = default_device(args.device)
    before = loadavg()
    result = race(RaceConfig(), device=device, threads=args.threads)
    out = result.to_json()
    fot, d1 = out["models"]["FoT"], out["models"]["d=1"]
    limit = 30 if device.type == "cuda" else 180
    targets = {
        f"race <= {limit} s": out["seconds"] <= limit,
        "FoT accuracy N=15 >= 0.90": fot["accuracy"]["15"] >= 0.90,
        "d=1 accuracy N=15 <= 0.50": d1["accuracy"]["15"] <= 0.50,
        "FoT r_8 >= 2x d=1's": fot["r_8"] >= 2 * d1["r_8"],
    }
    print(race_table(result))
    for name, ok in targets.items():
        print(f"  {'met ' if ok else 'MISS'}  {name}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    record = {"command": "python benchmarks/race.py" + (f" --device {args.device}" if args.device else ""),
              "commit": commit, "machine": machine(), "python": platform.python_version(),
              "torch": torch.__version__, "load_before": before, "load_after": loadavg(),
              "config": dataclasses.asdict(result.config), "result": out, "targets": targets,
              "r_8_ratio": round(fot["r_8"] / d1["r_8"], 4)}
    if not args.no_record:
        path = ROOT / "docs" / "records" / f"race-{device.type}.json"
        path.write_text(json.dumps(record, indent=1) + "\n")
        print(f"record: {path.relative_to(ROOT)}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
