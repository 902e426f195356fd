"""Starting and stopping the servers the tests run (JupyterLab, Voila) on loopback."""
import os
import signal
import socket
import subprocess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def terminal_signals() -> None:
    """``preexec_fn`` of a server the tests start: Ctrl-C (SIGINT) back to its default. A shell
    that runs the tests as a background job (``make test &``) starts them with SIGINT ignored, and
    children inherit that, so the server would ignore the Ctrl-C :func:`stop` sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop(proc: subprocess.Popen, first_wait_s: float = 30) -> int:
    """Ctrl-C as a terminal sends it (SIGINT to the process group), then SIGTERM, then SIGKILL."""
    for sig, wait_s in ((signal.SIGINT, first_wait_s), (signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            pass
    return proc.wait(timeout=5)
