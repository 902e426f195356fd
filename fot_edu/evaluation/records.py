"""Records: every measured figure the README, a notebook or a docstring states, kept with how it was
measured.

A record is a JSON file in ``results/records/`` (``results/README.md`` is the index). Every script
and benchmark that measures something writes its record with :func:`write_record`, so every record
has the same fields, in this order:

==========  =================================================================================
field       what it says
==========  =================================================================================
command     the exact command that produced it, to run it again
seed        the seed it used (``None`` when nothing was random)
commit      the git commit of the code that ran, flagged when the tree had uncommitted changes
machine     CPU model, cores, torch version and threads, Python version, the GPU if one was used
load        the 1-minute load average ``{"before": ..., "after": ...}``: was the machine busy?
seconds     wall time of the measurement
==========  =================================================================================

followed by the record's own fields (its results, with their sample sizes and intervals). A
:class:`Recording` is started before the measurement (it notes the load and the clock), and
``write_record`` finishes it::

    recording = Recording(seed=0)
    result = measure(...)
    write_record(RECORDS_DIR / "my-measurement-cpu.json", recording, result=result)

Records written before this module existed have the same fields; where the original run did not
note one (the load of an early run, say), its value is ``None``.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from fot_edu.runtime import SOURCE_ROOT

RESULTS_DIR = SOURCE_ROOT / "results"
RECORDS_DIR = RESULTS_DIR / "records"
FIELDS = ("command", "seed", "commit", "machine", "load", "seconds")


def machine(device=None) -> str:
    """One line: CPU model, cores, torch build and threads, Python (plus the GPU when ``device``,
    or by default any visible GPU, is cuda)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, python {platform.python_version()}")
    on_gpu = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    if on_gpu:
        text += f", GPU {torch.cuda.get_device_name()}"
    return text


def load_average() -> float | None:
    """The 1-minute load average (``None`` where the system does not say)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def git_commit(root: Path = SOURCE_ROOT) -> str | None:
    """The short hash of the checked-out commit, with " (with uncommitted changes)" when tracked
    files differ from it; ``None`` outside a git checkout."""
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=root, timeout=30).returncode
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    if not commit:
        return None
    return commit + (" (with uncommitted changes)" if dirty else "")


class Recording:
    """A measurement under way: its command and seed, the load and the clock when it started.

    ``command`` defaults to how this process was started (``python scripts/x.py --flag ...``).
    """

    def __init__(self, *, seed: int | None, command: str | None = None, device=None):
        self.command = command or shlex.join(["python", *sys.argv])
        self.seed = seed
        self.device = device
        self.load_before = load_average()
        self._start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self._start, 1)


def write_record(path, recording: Recording, **fields) -> Path:
    """Write ``recording``'s fields (:data:`FIELDS`), then ``fields``, to ``path`` as JSON,
    atomically (a crash leaves the previous record whole). Returns the path."""
    clash = sorted(set(fields) & set(FIELDS))
    if clash:
        raise ValueError(f"fields={clash!r} are not allowed: {FIELDS} are the recording's own")
    record = {"command": recording.command, "seed": recording.seed, "commit": git_commit(),
              "machine": machine(recording.device),
              "load": {"before": recording.load_before, "after": load_average()},
              "seconds": recording.seconds, **fields}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)
    return path
