"""``boltring doctor`` and ``boltring preflight`` as real processes in the lab.

Two nodes joined by ``thunderbolt0`` (kernel veth) and ``tailscale0`` (20 ms each
way).  The doctor runs in node 0's namespace with its own state dir, once while
healthy (so it remembers which interface carried 192.168.4.0/24) and once after
``break_link(0)``, the seed's failure.  Preflight runs on both nodes at once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from boltring_rig.lab import Lab, netns
from ports import free_port

PORT = free_port()  # any free port: the ranks listen only inside this test's own lab namespaces


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _remove_stale_labs() -> None:
    """Labs of earlier runs of this module that died (prefix d<pid>, pid gone)."""
    found = {m.group(1) for n in netns.list_netns()
             if (m := re.match(r"^(d(\d+))-(?:n\d+|w\d+|slow)$", n)) and not _alive(int(m.group(2)))}
    for prefix in sorted(found):
        Lab(2, prefix).down()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    _remove_stale_labs()
    lab = Lab(2, f"d{os.getpid()}", slow_delay_ms=20.0, max_lifetime_s=300)
    hosts = tmp_path_factory.mktemp("doctor") / "hosts.json"
    hosts.write_text(json.dumps(lab.hostfile(PORT)))
    lab.hosts = hosts  # type: ignore[attr-defined]
    try:
        lab.up()
        yield lab
    finally:
        lab.down()
        assert not any(n.startswith(lab.prefix + "-") for n in netns.list_netns())


def run(lab: Lab, node: int, argv: list[str], state: Path, timeout: float = 60.0,
        **env: str) -> subprocess.Popen[str]:
    """Start ``boltring <argv>`` inside ``node`` with its own state dir."""
    state.mkdir(parents=True, exist_ok=True)
    e = dict(os.environ, BOLTRING_STATE_DIR=str(state), **env)
    e.pop("BOLTRING_SECRET", None)
    return lab.popen(node, [sys.executable, "-m", "boltring.tools.cli", *argv], env=e, text=True,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[str], timeout: float = 60.0) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=5)
        raise AssertionError(f"{proc.args} did not finish within {timeout} s: {out}\n{err}") from None
    return proc.returncode, out, err


def doctor(lab: Lab, node: int, state: Path, *extra: str) -> tuple[int, str, str]:
    hosts = str(lab.hosts)  # type: ignore[attr-defined]
    return finish(run(lab, node, ["doctor", "--hostfile", hosts, "--rank", str(node), *extra], state))


def preflight(lab: Lab, state: Path, *extra: str) -> list[tuple[int, dict[str, Any], str]]:
    hosts = str(lab.hosts)  # type: ignore[attr-defined]
    procs = [run(lab, r, ["preflight", "--hostfile", hosts, "--rank", str(r), "--json", "--timeout", "5",
                          "--seconds", "0.5", "--pings", "20", *extra], state / f"n{r}")
             for r in (0, 1)]
    out = []
    for p in procs:
        code, stdout, stderr = finish(p)
        out.append((code, json.loads(stdout), stderr))
    return out


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_doctor_healthy_then_thunderbolt_missing(lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "n0"
    code, out, err = doctor(lab, 0, state)
    print(out)
    assert code == 0, out + err
    assert f"thunderbolt0 (thunderbolt) -> 192.168.4.2:{PORT}  refused" in out
    assert "would use: thunderbolt0 (thunderbolt)" in out and "[primary]" in out
    assert "OK: every neighbour would use its primary path." in out
    code, out, err = doctor(lab, 1, tmp_path / "n1")  # rank 1 remembers its links too
    assert code == 0, out + err

    lab.break_link(0)
    try:
        code, out, err = doctor(lab, 0, state)
        print(out)
        assert code == 1, out + err
        # rank 1 dials rank 0, at rank 0's addresses: 192.168.4.1 is on nothing now
        assert "peer 1 dials this rank: it would use tailscale0 (vpn): thunderbolt0 is missing" in out
        code, js, err = doctor(lab, 0, state, "--json")
        data = json.loads(js)
        assert code == 1 and data["ok"] is False
        (peer,) = data["peers"]
        assert peer["dials"] is False and peer["state"] == "fallback"
        assert [(x["remote"], x["iface"], x["status"]) for x in peer["inbound"]] == [
            (f"192.168.4.1:{PORT}", "thunderbolt0", "missing"), (f"100.64.0.1:{PORT}", "tailscale0", "listening")]
        assert peer["would_use"]["iface"] == "tailscale0"
        # this rank's own check of the link: thunderbolt0 missing, tailscale0 answers
        assert peer["paths"][0]["iface"] == "thunderbolt0" and peer["paths"][0]["status"] == "missing"
        assert peer["paths"][1]["status"] == "refused" and peer["paths"][1]["connect_ms"] >= 30
        assert [x["iface"] for x in data["listen"]] == ["tailscale0"]

        # rank 1 (which dials): its thunderbolt0 lost carrier (or, before the kernel
        # says so, nothing answers through it)
        code, out, err = doctor(lab, 1, tmp_path / "n1")
        print(out)
        assert code == 1, out + err
        assert ("peer 0: would use tailscale0 (vpn): thunderbolt0 has no carrier" in out
                or f"peer 0: would use tailscale0 (vpn): no answer from 192.168.4.1:{PORT} via thunderbolt0" in out)
    finally:
        lab.heal(0)
    code, out, _ = doctor(lab, 0, state)
    assert code == 0, out


def _by_iface(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["iface"]: p for p in report["peers"][0]["paths"]}


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_preflight_measures_every_path(lab: Lab, tmp_path: Path) -> None:
    (c0, r0, e0), (c1, r1, e1) = preflight(lab, tmp_path)
    paths = _by_iface(r1)  # rank 1 dialled: its own interfaces
    for name, p in paths.items():
        print(f"{name}: RTT {p['rtt_ms']:.3f} ms, {p['mb_per_s']:.0f} MB/s each way "
              f"({p['bulk_bytes'] >> 20} MiB in {p['bulk_s']:.3f} s)")
    assert c0 == 0 and c1 == 0, (r0["failures"], r1["failures"], e0, e1)
    tb, ts = paths["thunderbolt0"], paths["tailscale0"]
    assert tb["status"] == "ok" and tb["rtt_ms"] < 1.0 and tb["mb_per_s"] > 100
    assert ts["status"] == "ok" and 38.0 <= ts["rtt_ms"] < 80.0
    assert r1["peers"][0]["would_use"]["iface"] == "thunderbolt0"
    assert _by_iface(r0)["thunderbolt0"]["rtt_ms"] == tb["rtt_ms"]  # both ranks print the same


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_preflight_fails_on_a_degraded_fast_link(lab: Lab, tmp_path: Path) -> None:
    lab.degrade(0, 10)
    try:
        (c0, r0, _), (c1, r1, _) = preflight(lab, tmp_path, "--max-rtt-ms", "5")
    finally:
        lab.degrade(0, 0)
    tb = _by_iface(r1)["thunderbolt0"]
    print(f"degraded thunderbolt0: RTT {tb['rtt_ms']:.2f} ms; failures: {r1['failures']}")
    assert 10.0 <= tb["rtt_ms"] < 30.0
    assert c0 == 1 and c1 == 1
    ts = _by_iface(r1)["tailscale0"]
    assert r1["failures"] == [(f"peer 0: no path within --max-rtt-ms 5: thunderbolt0 (thunderbolt) RTT "
                               f"{tb['rtt_ms']:.2f} ms, tailscale0 (vpn) RTT {ts['rtt_ms']:.2f} ms")]
    assert r0["failures"][0].startswith("peer 1: no path within --max-rtt-ms 5: thunderbolt0")
