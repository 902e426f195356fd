"""Run every benchmark, each in its own process, and print their summary lines and JSON.

``python benchmarks/run_all.py --quick`` (under 3 minutes on a 2-core laptop CPU) or without
``--quick`` for the full sizes (1M keys in knn; several minutes). Extra arguments (``--threads``)
are passed on. Exits non-zero if a benchmark fails.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("train_step", "knn", "streaming", "fraction_of_peak", "gpu")


def main(argv: list[str]) -> int:
    results, failed = {}, []
    start = time.perf_counter()
    for name in BENCHMARKS:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *argv],
                              capture_output=True, text=True, cwd=HERE)
        print(proc.stdout, end="")
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            failed.append(name)
            continue
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"[{name}: {time.perf_counter() - t0:.0f} s]\n")
    print(f"all benchmarks: {time.perf_counter() - start:.0f} s; failed: {failed or 'none'}")
    print(json.dumps(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
