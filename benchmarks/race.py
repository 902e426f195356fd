"""The live race against its targets, recorded: ``python benchmarks/race.py [--device cuda]``.

Runs ``fot_edu.teaching.race.race`` (what ``python -m fot_edu race``, notebook 04 and the race app
run: both runs from one untrained model), prints the result beside the targets of the
live-training issue, and writes the record ``results/records/race-{device}.json``: command, git
commit, machine, Python and torch versions, load average before and after, the race's
configuration (seeds included) and its results with 95% intervals: the starting point and both
runs, each with accuracy against N, r_8 on the shipped models' 64 pairs and the entry-key cosine
per head. Time it with nothing else running (the load is recorded so a reader can tell).

Targets (2-core CPU): whole race <= 180 s; FoT accuracy with 15 distractors >= 0.90; d = 1 <= 0.50
there; FoT's r_8 >= 2x d = 1's. On a GPU: <= 30 s.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from fot_edu.evaluation.records import RECORDS_DIR, Recording, write_record
from fot_edu.runtime import default_device
from fot_edu.teaching.race import RaceConfig, race
from fot_edu.teaching.race_board import race_table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the race's, 1)")
    parser.add_argument("--steps", type=int, help="steps per run (default: the race's, 600); the record "
                        "of another count is race-{device}-{steps}-steps.json")
    parser.add_argument("--no-record", action="store_true", help="print only, write no record")
    args = parser.parse_args(argv)
    device = default_device(args.device)
    config = RaceConfig() if args.steps is None else RaceConfig(steps=args.steps)
    recording = Recording(seed=config.data_seed, device=device)
    result = race(config, device=device, threads=args.threads)
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
    if not args.no_record:
        name = f"race-{device.type}" + ("" if args.steps is None else f"-{args.steps}-steps")
        path = write_record(RECORDS_DIR / f"{name}.json", recording,
                            config=dataclasses.asdict(result.config), result=out, targets=targets,
                            r_8_ratio=round(fot["r_8"] / d1["r_8"], 4))
        print(f"record: {path}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
