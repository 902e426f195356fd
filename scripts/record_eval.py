"""Run one ``python -m fot_edu eval ...`` command and keep its JSON result as a record.

    python scripts/record_eval.py docs/records/text-rise-ratio-cpu.json --what "..." -- \
        eval perplexity --checkpoint text-fot --baseline text-d1 --distractors 0,7 --threads 1

The record holds the exact command, the git commit, the machine, the load average before and
after, the wall time and the command's JSON output (figures with their ``n`` and ``ci95``), so
a figure quoted in the README can be traced to how it was measured (tests/test_readme_records.py).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import machine  # noqa: E402


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "unknown"


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
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    before, start = loadavg(), time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fot_edu", *command], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = round(time.perf_counter() - start, 1)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        return done.returncode
    result = json.loads(done.stdout.strip().splitlines()[-1])
    record = {"command": "python -m fot_edu " + shlex.join(command), "what": args.what,
              "commit": commit, "machine": machine(), "load_before": before,
              "load_after": loadavg(), "seconds": seconds, "result": result}
    args.record.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.record.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, args.record)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
