"""Thin wrappers over iproute2 (`ip`, `tc`) for the lab.

We shell out rather than depend on pyroute2: the lab needs a few dozen
commands, iproute2 is on every Linux box that can run the lab at all, the
commands are exactly what a person types to inspect or repair a lab by hand,
and `ip -j` gives JSON where we need to read state back.  Every call has a
timeout so a wedged command cannot hang a test run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

log = logging.getLogger("boltring_rig.lab")

NETNS_DIR = "/run/netns"
CMD_TIMEOUT_S = 15.0


class LabError(RuntimeError):
    """A lab operation failed; the message says which command and why."""


def run(argv: Sequence[str], *, check: bool = True,
        timeout: float = CMD_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run one command, capturing output; raise LabError on failure if ``check``."""
    log.debug("run: %s", " ".join(argv))
    try:
        cp = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=timeout)
    except FileNotFoundError as e:
        raise LabError(f"{argv[0]} not found: the lab needs iproute2 (ip, tc)") from e
    except subprocess.TimeoutExpired as e:
        raise LabError(f"`{' '.join(argv)}` timed out after {timeout:.0f} s") from e
    if check and cp.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed ({cp.returncode}): {cp.stderr.strip()}")
    return cp


def ip(ns: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``ip [-n ns] args...``."""
    return run(["ip", *(["-n", ns] if ns else []), *args], check=check)


def tc(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``tc -n ns args...``."""
    return run(["tc", "-n", ns, *args], check=check)


def unavailable() -> str | None:
    """Why network namespaces cannot be made here (None when they can): the lab,
    its tests and the demo need Linux, root and iproute2."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    name = f"brl-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return None


def list_netns() -> list[str]:
    """Names of all named network namespaces (``ip netns list``)."""
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def add_netns(name: str) -> None:
    run(["ip", "netns", "add", name])
    ip(name, "link", "set", "dev", "lo", "up")


def del_netns(name: str) -> None:
    if netns_exists(name) or name in list_netns():
        run(["ip", "netns", "del", name], check=False)


def netns_pids(name: str) -> list[int]:
    """Pids of the processes whose network namespace is ``name``."""
    cp = run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in cp.stdout.split() if p.isdigit()]


def links(ns: str) -> dict[str, dict[str, Any]]:
    """Interfaces of ``ns`` by name, from ``ip -j addr show``."""
    cp = ip(ns, "-j", "addr", "show", check=False)
    if cp.returncode != 0 or not cp.stdout.strip():
        return {}
    return {d["ifname"]: d for d in json.loads(cp.stdout)}


def ipv4_of(info: dict[str, Any]) -> list[str]:
    """``addr/prefix`` strings of an interface record from :func:`links`."""
    return [f"{a['local']}/{a['prefixlen']}" for a in info.get("addr_info", []) if a.get("family") == "inet"]


def set_sysctls(ns: str, values: dict[str, str]) -> None:
    """Write ``net.*`` sysctls inside ``ns``; keys missing in this kernel are skipped.

    Done with the running interpreter rather than `sysctl(8)` so the only
    outside tools the lab needs are `ip` and `tc`.
    """
    code = (
        "import sys\n"
        "for kv in sys.argv[1:]:\n"
        "    k, v = kv.split('=', 1)\n"
        "    try:\n"
        "        open('/proc/sys/' + k.replace('.', '/'), 'w').write(v)\n"
        "    except FileNotFoundError:\n"
        "        pass\n"
    )
    run(["ip", "netns", "exec", ns, sys.executable, "-I", "-c", code,
         *(f"{k}={v}" for k, v in values.items())])


def has_ingress_redirect(ns: str, dev: str) -> bool:
    """Whether ``dev`` in ``ns`` has our ingress mirred redirect filter."""
    cp = tc(ns, "filter", "show", "dev", dev, "ingress", check=False)
    return cp.returncode == 0 and "mirred" in cp.stdout


def set_ingress_redirect(ns: str, dev: str, to: str) -> None:
    """Redirect every frame arriving on ``dev`` out of ``to``, in the kernel.

    u32 with a zero mask matches all frames (the `matchall` classifier is not
    built into every kernel); the ingress qdisc is recreated so the result is
    exactly one filter.
    """
    tc(ns, "qdisc", "del", "dev", dev, "ingress", check=False)
    tc(ns, "qdisc", "add", "dev", dev, "ingress")
    tc(ns, "filter", "add", "dev", dev, "parent", "ffff:", "protocol", "all", "prio", "1",
       "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", to)


def clear_ingress(ns: str, dev: str) -> None:
    tc(ns, "qdisc", "del", "dev", dev, "ingress", check=False)


# --- processes ---------------------------------------------------------------------------


def proc_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def proc_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except (FileNotFoundError, ProcessLookupError):
        return []


def terminate(pids: Iterable[int], *, grace_s: float = 2.0) -> list[int]:
    """SIGTERM ``pids``, wait up to ``grace_s``, SIGKILL the rest; return the pids signalled."""
    pids = [p for p in pids if p > 1 and p != os.getpid() and proc_alive(p)]
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    _wait_gone(pids, grace_s)
    for p in pids:
        if proc_alive(p):
            log.warning("pid %d ignored SIGTERM, killing it", p)
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _wait_gone(pids, grace_s)
    _reap(pids)
    return pids


def _wait_gone(pids: list[int], seconds: float) -> None:
    """Reap and wait until none of `pids` is alive, at most `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(proc_alive(p) for p in pids):
        _reap(pids)
        time.sleep(0.02)


def _reap(pids: Iterable[int]) -> None:
    """Collect any of ``pids`` that are our own exited children (no zombies left)."""
    for p in pids:
        try:
            os.waitpid(p, os.WNOHANG)
        except ChildProcessError:
            pass
