"""How ``make lab`` / ``make test`` build .venv: the PyTorch build ``scripts/choose_torch.py`` picks
and the reason it prints, the pre-flight check of Python and its venv module, the Makefile's three
stamped levels, and ``binder/`` agreeing with them. Nothing is downloaded: the facts are passed
in, and the reachability probe only ever talks to servers on loopback."""
from __future__ import annotations

import ast
import http.server
import importlib.util
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


choose_torch = _load("choose_torch")
preflight = _load("preflight")
PIN, CPU = choose_torch.DEFAULT_PIN, choose_torch.CPU_INDEX


# ---- the choice ----------------------------------------------------------------------------

def test_linux_without_gpu_gets_the_cpu_build_from_pytorchs_index():
    choice = choose_torch.choose("Linux", gpu=False, index_reachable=True)
    assert choice.pip_args == [PIN, "--index-url", CPU]
    assert "CPU build" in choice.reason and "without an NVIDIA GPU" in choice.reason


def test_unreachable_cpu_index_falls_back_to_the_pin_and_says_so():
    choice = choose_torch.choose("Linux", gpu=False, index_reachable=False)
    assert choice.pip_args == [PIN]
    assert CPU in choice.reason and "cannot be reached" in choice.reason


@pytest.mark.parametrize("reachable", [True, False, None])
def test_gpu_machine_gets_the_package_indexs_cuda_build(reachable):
    choice = choose_torch.choose("Linux", gpu=True, index_reachable=reachable)
    assert choice.pip_args == [PIN]
    assert "CUDA" in choice.reason and "GPU" in choice.reason


@pytest.mark.parametrize("system, name", [("Darwin", "macOS"), ("Windows", "Windows")])
@pytest.mark.parametrize("reachable", [True, False])
def test_macos_and_windows_get_the_plain_pin(system, name, reachable):
    choice = choose_torch.choose(system, gpu=None, index_reachable=reachable)
    assert choice.pip_args == [PIN] and name in choice.reason


@pytest.mark.parametrize("system, gpu", [("Linux", False), ("Linux", True), ("Darwin", None)])
def test_torch_override_wins_everywhere(system, gpu):
    override = "torch --index-url https://download.pytorch.org/whl/cu126"
    choice = choose_torch.choose(system, gpu, True, override=override)
    assert choice.pip_args == override.split() and "TORCH=" in choice.reason
    assert choose_torch.choose(system, gpu, True, override="  ").pip_args[0] == PIN  # blank: no override


def test_the_pin_is_a_parameter():
    assert choose_torch.choose("Linux", False, True, pin="torch==2.5.1").pip_args[0] == "torch==2.5.1"


def _no_probing(monkeypatch):
    def probe(*args, **kwargs):
        raise AssertionError("probed although the facts were given")
    monkeypatch.setattr(choose_torch, "has_nvidia_gpu", probe)
    monkeypatch.setattr(choose_torch, "index_reachable", probe)


@pytest.mark.parametrize("argv, stdout", [
    (["--platform", "Linux", "--gpu", "no", "--index-reachable", "no"], PIN),
    (["--platform", "Linux", "--gpu", "no", "--index-reachable", "yes"], f"{PIN} --index-url {CPU}"),
    (["--platform", "Linux", "--gpu", "yes"], PIN),
    (["--platform", "Darwin"], PIN),
    (["--torch", "torch==2.5.1 --index-url https://example.invalid/whl"],
     "torch==2.5.1 --index-url https://example.invalid/whl"),
    (["--platform", "Linux", "--gpu", "no", "--index-reachable", "yes", "--pin", "torch==2.5.1"],
     f"torch==2.5.1 --index-url {CPU}"),
])
def test_command_line_prints_pip_args_and_one_reason_line(argv, stdout, monkeypatch, capsys):
    """What the Makefile reads: the pip arguments alone on stdout, the reason on stderr."""
    _no_probing(monkeypatch)
    assert choose_torch.main(argv) == 0
    out, err = capsys.readouterr()
    assert out == stdout + "\n"
    assert err.startswith("torch: ") and err.count("\n") == 1


# ---- the probes ----------------------------------------------------------------------------

def _script(path, body):
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_gpu_found_by_the_driver_or_by_nvidia_smi(tmp_path):
    missing = str(tmp_path / "no-driver")
    (tmp_path / "driver").mkdir()
    assert choose_torch.has_nvidia_gpu(str(tmp_path / "driver"), smi="")
    assert not choose_torch.has_nvidia_gpu(missing, smi="")
    works = _script(tmp_path / "smi-ok", 'echo "GPU 0: NVIDIA H200 (UUID: GPU-0)"')
    no_device = _script(tmp_path / "smi-none", 'echo "No devices were found"; exit 6')
    broken = _script(tmp_path / "smi-broken", 'echo "NVIDIA-SMI has failed" >&2; exit 9')
    assert choose_torch.has_nvidia_gpu(missing, smi=works)
    assert not choose_torch.has_nvidia_gpu(missing, smi=no_device)
    assert not choose_torch.has_nvidia_gpu(missing, smi=broken)
    assert not choose_torch.has_nvidia_gpu(missing, smi=str(tmp_path / "not-there"))


class _Answer(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):  # the path's last part is the status to answer with
        self.send_response(int(self.path.strip("/").split("/")[-1]))
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def loopback_index(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status, reachable", [(200, True), (301, True), (404, True), (503, False)])
def test_index_reachable_reads_any_answer_but_a_server_error_as_reachable(loopback_index, status,
                                                                           reachable):
    assert choose_torch.index_reachable(f"{loopback_index}/whl/{status}", timeout=5) is reachable


def test_index_unreachable_when_refused_or_silent(monkeypatch):
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert not choose_torch.index_reachable(f"http://127.0.0.1:{port}/whl/cpu", timeout=2)
    with socket.socket() as silent:  # accepts the connection, never answers: the timeout decides
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        assert not choose_torch.index_reachable(f"http://127.0.0.1:{port}/whl/cpu", timeout=0.5)
    assert not choose_torch.index_reachable("not a url", timeout=0.5)


# ---- the pre-flight check ------------------------------------------------------------------

def test_preflight_passes_a_good_python():
    assert preflight.problems((3, 10), True, True) == []
    assert preflight.problems((3, 13, 1), True, True) == []


@pytest.mark.parametrize("version", [(3, 9), (3, 6), (2, 7)])
def test_preflight_old_python_one_line_with_the_fix(version):
    found = preflight.problems(version, has_venv=False, has_ensurepip=False, python="python3")
    assert len(found) == 1  # the venv fix would be for the wrong interpreter
    line = found[0]
    assert "\n" not in line and "python3 is Python %d.%d" % version in line
    assert "3.10 or newer" in line and "PYTHON=python3.11" in line


@pytest.mark.parametrize("has_venv, has_ensurepip, missing", [
    (True, False, "no ensurepip"), (False, True, "no venv"), (False, False, "no venv and ensurepip")])
def test_preflight_missing_venv_one_line_with_the_fix(has_venv, has_ensurepip, missing):
    found = preflight.problems((3, 11), has_venv, has_ensurepip, python="python3")
    assert len(found) == 1 and "\n" not in found[0]
    assert missing in found[0] and "cannot create .venv" in found[0]
    assert "sudo apt install python3-venv" in found[0] and "python3.11-venv" in found[0]


def test_preflight_script_on_this_python():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "preflight.py"), "python3"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == ""
    assert re.fullmatch(r"pre-flight: python3 is Python 3\.\d+\.\d+ with venv and ensurepip: fine\n",
                        done.stdout)


def test_preflight_parses_on_old_pythons():
    """An old interpreter must reach the version check, not stop at a syntax error: no f-strings,
    annotations or other syntax newer than Python 3.4."""
    source = (ROOT / "scripts" / "preflight.py").read_text()
    tree = ast.parse(source)
    assert not any(isinstance(node, ast.JoinedStr) for node in ast.walk(tree))  # f-strings
    assert not any(isinstance(node, (ast.AnnAssign, ast.NamedExpr)) for node in ast.walk(tree))
    assert not any(isinstance(node, ast.FunctionDef) and (node.returns or any(
        a.annotation for a in node.args.args)) for node in ast.walk(tree))
    assert "from __future__ import annotations" not in source


# ---- the Makefile and binder/ --------------------------------------------------------------

def _make_n(target, venv):
    done = subprocess.run(["make", "-n", "-C", str(ROOT), f"VENV={venv}", target],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_lab_installs_torch_then_the_notebook_extras_and_no_test_tools(tmp_path):
    plan = _make_n("lab", tmp_path / "venv")
    steps = [plan.index(s) for s in ("scripts/preflight.py", "-m venv", "scripts/choose_torch.py",
                                     '-e ".[notebooks,faiss]"', "-m fot_edu lab")]
    assert steps == sorted(steps)
    assert "test" not in re.findall(r'-e "\.\[([^\]]*)\]"', plan)[0].split(",")
    assert "--quiet" not in plan and "==> [1/3]" in plan and "==> [2/3]" in plan


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_test_after_make_lab_only_adds_the_test_tools(tmp_path):
    venv = tmp_path / "venv"
    assert "choose_torch.py" in _make_n("test", venv)  # a fresh venv: every level
    venv.mkdir()
    for stamp in (".stamp-torch", ".stamp-lab"):  # what make lab leaves (newer than pyproject.toml)
        (venv / stamp).touch()
    plan = _make_n("test", venv)
    assert "choose_torch.py" not in plan and '-e ".[notebooks,faiss]"' not in plan
    assert '-e ".[notebooks,test,faiss,book]"' in plan and "-m pytest" in plan


def test_binder_installs_the_pinned_cpu_build_and_the_notebook_extras_only():
    makefile = (ROOT / "Makefile").read_text()
    pin = re.search(r"^TORCH_PIN \?= (\S+)$", makefile, re.M).group(1)
    assert pin == PIN
    env = yaml.safe_load((ROOT / "binder" / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert f"--extra-index-url {CPU}" in pip and f"{pin}+cpu" in pip
    assert not any(line.startswith("-e") or line.startswith(".") for line in pip)  # repo not there yet
    post_build = ROOT / "binder" / "postBuild"
    assert post_build.stat().st_mode & 0o111
    extras = re.findall(r'-e "\.\[([^\]]*)\]"', post_build.read_text())
    assert [e.split(",") for e in extras] == [["notebooks", "faiss"]]
