"""Which PyTorch build ``make`` installs into .venv, and why (standard library only).

    python3 scripts/choose_torch.py [--pin torch==2.13.0] [--torch "ARGS"]

prints the pip arguments on stdout (the Makefile passes them to ``pip install``) and one line
saying what it chose and why on stderr. The rule, ``choose`` below:

* ``--torch`` (the Makefile's ``TORCH=``) given: exactly that, nothing is probed.
* Linux with an NVIDIA GPU (``nvidia-smi -L`` works, or ``/proc/driver/nvidia`` exists): the pin from
  the configured package index, which on Linux x86_64 is PyTorch's CUDA build.
* Linux without one: the CPU build from PyTorch's CPU wheel index (``CPU_INDEX``), a few hundred MB
  instead of several GB of nvidia-* packages never used; when that index cannot be reached within
  a few seconds, the plain pin from the configured index.
* macOS, Windows and the rest: the plain pin (there the package index's build is the right one).

``--platform``, ``--gpu`` and ``--index-reachable`` replace a probed fact (tests, or to see what
another machine would get); they never download anything.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from typing import NamedTuple

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
DEFAULT_PIN = "torch==2.13.0"
PROBE_TIMEOUT_S = 5.0  # a missing route usually fails at once; a silent firewall takes this long


class Choice(NamedTuple):
    pip_args: list[str]  # what follows `pip install`
    reason: str  # one line for the person watching `make`


def choose(system: str, gpu: bool | None, index_reachable: bool | None,
           pin: str = DEFAULT_PIN, override: str = "") -> Choice:
    """The PyTorch pip arguments for these facts. ``system``: ``platform.system()`` ("Linux",
    "Darwin", "Windows"); ``gpu`` and ``index_reachable`` are only consulted where they matter
    (``None`` = not probed)."""
    if override.strip():
        return Choice(override.split(), f"torch: TORCH={override.strip()!r} given, installing exactly that")
    if system != "Linux":
        name = {"Darwin": "macOS"}.get(system, system or "this system")
        return Choice([pin], f"torch: {pin} from the package index (on {name} that is the right build)")
    if gpu:
        return Choice([pin], f"torch: {pin} from the package index, the CUDA build (an NVIDIA GPU "
                             "was found; TORCH=... picks another build)")
    if index_reachable:
        return Choice([pin, "--index-url", CPU_INDEX],
                      f"torch: {pin}, the CPU build from {CPU_INDEX} (Linux without an NVIDIA GPU: "
                      "no CUDA packages to download)")
    return Choice([pin], f"torch: {pin} from the configured package index, because {CPU_INDEX} "
                         "cannot be reached (on Linux x86_64 the index's build may be the CUDA "
                         "one, several GB; TORCH=... picks another)")


def has_nvidia_gpu(proc_path: str = "/proc/driver/nvidia", smi: str | None = None) -> bool:
    """An NVIDIA driver is loaded (``/proc/driver/nvidia``) or ``nvidia-smi -L`` lists a GPU."""
    if os.path.exists(proc_path):
        return True
    smi = smi if smi is not None else shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and "GPU" in done.stdout


def index_reachable(url: str = CPU_INDEX, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """The index answers an HTTP request within ``timeout`` seconds (any HTTP status counts: a
    proxy's or the server's answer proves the route; only no answer at all does not)."""
    try:
        request = urllib.request.Request(url.rstrip("/") + "/", method="HEAD",
                                         headers={"User-Agent": "fot_edu choose_torch"})
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except urllib.error.HTTPError as err:
        return err.code < 500
    except (OSError, ValueError):  # URLError, timeouts, refused connections; ValueError: a bad URL
        return False


def _yes_no(text: str) -> bool:
    if text not in ("yes", "no"):
        raise argparse.ArgumentTypeError("yes or no")
    return text == "yes"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pin", default=DEFAULT_PIN, help="the requirement (default %(default)s)")
    parser.add_argument("--torch", default="", help="pip arguments that replace the choice (TORCH=)")
    parser.add_argument("--platform", default=None, help="instead of platform.system()")
    parser.add_argument("--gpu", type=_yes_no, default=None, help="yes/no instead of probing")
    parser.add_argument("--index-reachable", type=_yes_no, default=None,
                        help="yes/no instead of asking the CPU index")
    parser.add_argument("--timeout", type=float, default=PROBE_TIMEOUT_S,
                        help="seconds to wait for the CPU index (default %(default)s)")
    args = parser.parse_args(argv)

    system = args.platform if args.platform is not None else platform.system()
    gpu = reachable = None
    if not args.torch.strip() and system == "Linux":
        gpu = args.gpu if args.gpu is not None else has_nvidia_gpu()
        if not gpu:
            reachable = (args.index_reachable if args.index_reachable is not None
                         else index_reachable(CPU_INDEX, args.timeout))
    choice = choose(system, gpu, reachable, pin=args.pin, override=args.torch)
    print(choice.reason, file=sys.stderr)
    print(" ".join(choice.pip_args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
