"""The raw ceiling of a lab link: iperf3 for bandwidth, sockperf for latency.

Servers run in one lab node and clients in the other, each bound to its end of
the link.  Nothing is installed here: a missing tool is reported and its
baseline skipped.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from typing import Any

from boltring_rig.bench.procs import Procs

TOOLS = {"iperf3": "iperf3", "sockperf": "sockperf"}
SOCKPERF_MAX_BYTES = 65507  # sockperf's largest message
_PCT = re.compile(r"percentile\s+([\d.]+)\s*=\s*([\d.]+)")
_SUMMARY = re.compile(r"Summary: Latency is ([\d.]+) usec")
_OBS = re.compile(r"(\d+) observations")


def missing() -> dict[str, str]:
    """Tool -> why it is skipped, for each baseline tool not on PATH."""
    return {tool: f"{tool} is not installed (Debian/Ubuntu: apt-get install {pkg})"
            for tool, pkg in TOOLS.items() if shutil.which(tool) is None}


def version(tool: str) -> str | None:
    if shutil.which(tool) is None:
        return None
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else None


def iperf3_bidir(procs: Procs, server: tuple[int, str], client: tuple[int, str], *, seconds: float,
                 port: int) -> dict[str, Any]:
    """`iperf3 --bidir`: both directions at once, one TCP stream each, as an all_sum
    of 2 ranks moves its bytes.  Returns each direction's rate and their mean."""
    (snode, sip), (cnode, cip) = server, client
    srv = procs.spawn(snode, ["iperf3", "-s", "-1", "-B", sip, "-p", str(port)], name="iperf3 server")
    try:
        argv = ["iperf3", "-c", sip, "-B", cip, "-p", str(port), "--bidir", "-t", f"{seconds:g}", "-J"]
        for attempt in range(20):  # until the server listens
            time.sleep(0.2)
            out = procs.run(cnode, argv, timeout=seconds + 20)
            try:
                report = json.loads(out.stdout)
            except ValueError:
                report = {"error": (out.stdout + out.stderr)[-400:] or f"exit code {out.returncode}"}
            error = report.get("error")
            if not error or "connect" not in error:
                break
        if error:
            raise RuntimeError(f"iperf3 client failed: {error}")
        end = report["end"]
    finally:
        procs.stop(srv)
    forward = end["sum_received"]["bits_per_second"] / 8
    reverse = end["sum_received_bidir_reverse"]["bits_per_second"] / 8
    return {"tool": "iperf3 --bidir", "seconds": seconds, "forward_Bps": forward, "reverse_Bps": reverse,
            "per_direction_Bps": (forward + reverse) / 2,
            "retransmits": end.get("sum_sent", {}).get("retransmits"),
            "cpu": end.get("cpu_utilization_percent")}


def sockperf_pingpong(procs: Procs, server: tuple[int, str], client: tuple[int, str], sizes: list[int], *,
                      seconds: float, port: int) -> list[dict[str, Any]]:
    """`sockperf ping-pong --tcp` per message size: one-way latency (half the round
    trip) percentiles in microseconds."""
    (snode, sip), (cnode, cip) = server, client
    srv = procs.spawn(snode, ["sockperf", "sr", "--tcp", "-i", sip, "-p", str(port)], name="sockperf server")
    rows = []
    try:
        time.sleep(0.3)
        for size in sizes:
            m = max(14, min(size, SOCKPERF_MAX_BYTES))
            argv = ["sockperf", "pp", "--tcp", "-i", sip, "-p", str(port), "--client_ip", cip,
                    "-m", str(m), "-t", str(max(1, round(seconds)))]  # whole seconds only
            out = procs.run(cnode, argv, timeout=seconds + 20)
            text = out.stdout + out.stderr
            pct = {float(p): float(v) for p, v in _PCT.findall(text)}
            if out.returncode != 0 or 50.0 not in pct:
                raise RuntimeError(f"sockperf -m {m} failed: {text[-400:]}")
            avg = _SUMMARY.search(text)
            obs = _OBS.search(text)
            rows.append({"bytes": size, "message_bytes": m, "p50_us": pct[50.0],
                         "avg_us": float(avg.group(1)) if avg else None,
                         "percentiles_us": {f"{k:g}": v for k, v in sorted(pct.items())},
                         "observations": int(obs.group(1)) if obs else None})
    finally:
        procs.stop(srv)
    return rows
