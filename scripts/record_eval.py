"""Run one ``python -m fot_edu eval ...`` command and keep its JSON result as a record.

    python scripts/record_eval.py results/records/text-rise-ratio-cpu.json --what "..." -- \
        eval perplexity --checkpoint text-fot --baseline text-d1 --distractors 0,7 --threads 1

The record (``fot_edu.evaluation.records.write_record``) holds the exact command, the git commit,
the machine, the load average before and after, the wall time and the command's JSON output (figures with their ``n`` and ``ci95``), so
a figure quoted in the README can be traced to how it was measured (tests/test_readme_records.py).
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from fot_edu.evaluation.records import Recording, write_record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("record", type=Path, help="the JSON record to write")
    parser.add_argument("--what", required=True, help="one sentence: what the figures measure")
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    command = argv[cut + 1:]  # after --: the arguments of python -m fot_edu (an eval command)
    if not command or command[0] != "eval":
        parser.error(f"command={' '.join(command)!r} is not allowed: an `eval ...` command after --")
    if "--json" not in command:
        command.append("--json")
    seed = int(command[command.index("--seed") + 1]) if "--seed" in command else 0
    recording = Recording(seed=seed, command="python -m fot_edu " + shlex.join(command))
    done = subprocess.run([sys.executable, "-m", "fot_edu", *command], capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        return done.returncode
    result = json.loads(done.stdout.strip().splitlines()[-1])
    write_record(args.record, recording, what=args.what, result=result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
