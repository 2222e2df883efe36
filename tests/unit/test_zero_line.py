"""BOLTRING_MLX=1: `mx.distributed` on boltring with no line of the program changed.

Real interpreters started the way a user starts them: plain `python` with the
variable set or not (what start-up imports, what the first `import mlx.core`
does), MLX's own launcher `mlx.launch --env BOLTRING_MLX=1` over loopback, and
`boltring run -- python ...` with exo's MLX_HOSTFILE/MLX_RANK.  Every rank runs
`plain_mx_worker.py`, which knows nothing of boltring.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import site
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import _boltring_hook as hook
import boltring
from ports import free_port_run, free_ports
from processes import killed_at_exit
from test_mlx_dropin import plain_hostfile

WORKER = Path(__file__).with_name("plain_mx_worker.py")
PTH = Path(__file__).parents[2] / "src" / "_boltring_hook.pth"
OURS = ("mlx", "boltring", "_boltring_hook")  # module name prefixes start-up must not load
SHOW = ("import json, sys; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{OURS!r})))")


def child_env(**extra: str) -> dict[str, str]:
    """This environment without any BOLTRING_ variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOLTRING_")}
    env.update(extra)
    return env


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=child_env(**env), capture_output=True,
                          text=True, timeout=60)


def reports(out: str, err: str, n: int) -> list[dict[str, Any]]:
    """The worker's JSON lines, one per rank, in rank order."""
    found = sorted((json.loads(line) for line in out.splitlines() if line.startswith("{")),
                   key=lambda r: r["rank"])
    assert [r["rank"] for r in found] == list(range(n)), f"stdout:\n{out}\nstderr:\n{err[-3000:]}"
    assert all(r["size"] == n and r["sum_ok"] and r["gather_ok"] for r in found), found
    return found


def assert_on_boltring(found: list[dict[str, Any]]) -> None:
    for r in found:
        assert r["type"] == "boltring.group.Group", r
        assert r["path"] == {"iface": "lo", "kind": "loopback", "state": "primary"}, r


def test_the_hook_is_installed_in_site_packages() -> None:
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    installed = [Path(d, PTH.name) for d in dirs if Path(d, PTH.name).is_file()]
    assert installed, f"{PTH.name} is in none of {dirs}: reinstall boltring (pip install -e .)"
    assert installed[0].read_text() == PTH.read_text()


@pytest.mark.parametrize("value", [None, "", "0", "off"])
def test_without_the_variable_start_up_imports_nothing_of_boltring_or_mlx(value: str | None) -> None:
    cp = python(SHOW, **({} if value is None else {hook.SWITCH: value}))
    assert cp.returncode == 0, cp.stderr
    loaded = json.loads(cp.stdout)
    # set but off, the .pth line imports the hook (which then does nothing); unset, not even that
    assert loaded == ([] if not value else ["_boltring_hook"])


@pytest.mark.parametrize("first", ["mlx.core", "mlx.nn", "boltring"])
def test_with_it_start_up_imports_only_the_hook_and_the_first_mlx_import_applies_use(first: str) -> None:
    code = f"""{SHOW}
import sys, json
waiting = [type(f).__name__ for f in sys.meta_path if type(f).__module__ == "_boltring_hook"]
import {first}
import mlx.core as mx
import boltring.mlx
left = [f for f in sys.meta_path if type(f).__module__ == "_boltring_hook"]
print(json.dumps({{"waiting": waiting, "left": len(left), "active": boltring.mlx.active(),
                  "init": mx.distributed.init is boltring.mlx.init, "loader": type(mx.__loader__).__name__}}))
"""
    cp = python(code, BOLTRING_MLX="1")
    assert cp.returncode == 0, cp.stderr
    at_start, after = (json.loads(line) for line in cp.stdout.splitlines())
    assert at_start == ["_boltring_hook"]
    assert after == {"waiting": ["_Finder"], "left": 0, "active": True, "init": True,
                     "loader": "ExtensionFileLoader"}


@pytest.mark.parametrize("variable, value", [
    ("BOLTRING_MLX", "maybe"),
    ("BOLTRING_FALLBACK", "sometimes"),
    ("BOLTRING_TIMEOUT_S", "abc"),
    ("BOLTRING_PREFER_WAIT_S", "-1"),
    ("BOLTRING_MIN_GBPS", "inf"),
    ("BOLTRING_PREFLIGHT", "2"),
    ("BOLTRING_LOG", "loud"),
])
def test_a_bad_value_fails_the_import_of_mlx_core_naming_the_variable(variable: str, value: str) -> None:
    env = {"BOLTRING_MLX": "1", variable: value}
    cp = python("import mlx.core", **env)
    assert cp.returncode == 1
    last = cp.stderr.strip().splitlines()[-1]
    assert last.startswith(f"boltring.errors.ConfigError: {variable}: must be "), last
    assert repr(value) in last


def test_the_environment_gives_use_its_keywords() -> None:
    env = {"BOLTRING_FALLBACK": "never", "BOLTRING_TIMEOUT_S": "7", "BOLTRING_PREFER_WAIT_S": "0",
           "BOLTRING_PROBE_INTERVAL_S": "0.25", "BOLTRING_MAX_RTT_MS": "2.5", "BOLTRING_PREFLIGHT": "yes",
           "BOLTRING_MIN_GBPS": "10", "UNRELATED": "x"}
    assert hook.options(env) == {"fallback": "never", "timeout_s": 7.0, "prefer_wait_s": 0.0,
                                 "probe_interval_s": 0.25, "max_rtt_ms": 2.5, "preflight": True,
                                 "min_gbps": 10.0}
    assert hook.options({}) == {}
    assert set(hook.OPTIONS) < set(inspect.signature(boltring.init).parameters)


def launch(tmp_path: Path, *env: str, timeout: float = 90.0) -> tuple[str, str]:
    """`mlx.launch` of 2 local ranks of the worker, exo's style, with `--env` for each of `env`."""
    argv = [str(Path(sys.executable).with_name("mlx.launch")), "--hosts", "127.0.0.1,127.0.0.1",
            "--backend", "ring", "--starting-port", str(free_port_run(2)),
            *(arg for e in env for arg in ("--env", e)), "--", sys.executable, str(WORKER), "exo"]
    proc = subprocess.Popen(argv, env=child_env(), cwd=tmp_path, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        try:  # the launcher and its ranks share the session it leads
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
    assert proc.returncode == 0, err[-3000:]
    return out, err


@pytest.mark.timeout(120)
def test_mlx_launch_with_the_variable_runs_an_unmodified_script_on_boltring(tmp_path: Path) -> None:
    out, err = launch(tmp_path, "BOLTRING_MLX=1", "BOLTRING_TIMEOUT_S=20", "BOLTRING_SECRET=s3cret")
    found = reports(out, err, 2)
    assert_on_boltring(found)
    assert all(r["settings"] == {"timeout_s": 20.0, "fallback": "allow", "authenticated": True} for r in found)


@pytest.mark.timeout(120)
def test_mlx_launch_without_it_runs_the_same_script_on_mlx_ring(tmp_path: Path) -> None:
    out, err = launch(tmp_path)
    assert all(r["type"] == "mlx.core.distributed.Group" and "path" not in r for r in reports(out, err, 2))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("style", ["exo", "mlx-lm"])
def test_boltring_run_runs_an_unmodified_script_on_boltring(tmp_path: Path, style: str) -> None:
    with killed_at_exit() as procs:
        for rank, entries in enumerate(plain_hostfile(free_ports(2))):
            path = tmp_path / f"hosts_{rank}.json"
            path.write_text(json.dumps(entries))
            argv = [sys.executable, "-m", "boltring.tools.cli", "run", "--fallback", "never", "--timeout-s", "15",
                    "--", sys.executable, str(WORKER), style]
            procs.append(subprocess.Popen(argv, env=child_env(MLX_HOSTFILE=str(path), MLX_RANK=str(rank)),
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outs = [proc.communicate(timeout=90) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err[-2000:] for _, err in outs]
    found = reports("\n".join(out for out, _ in outs), "\n".join(err for _, err in outs), 2)
    assert_on_boltring(found)
    assert all(r["settings"] == {"timeout_s": 15.0, "fallback": "never", "authenticated": False} for r in found)


def test_boltring_run_refuses_a_bad_option_and_a_missing_command() -> None:
    run = [sys.executable, "-m", "boltring.tools.cli", "run"]
    bad = subprocess.run([*run, "--timeout-s", "soon", "--", "true"], env=child_env(), capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "--timeout-s: must be a number > 0, not 'soon'" in bad.stderr
    missing = subprocess.run([*run, "--", "no-such-command-here"], env=child_env(), capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 127 and "no-such-command-here" in missing.stderr
