"""`boltring bench`: boltring, MLX's ring and the raw link, measured in one run.

Everything runs in one lab (a unique prefix, removed at the end even on Ctrl-C;
the seed stage adds a second one for its control pair):

1. reduce kernels against numpy (this process);
2. the link's ceiling: iperf3 --bidir and sockperf ping-pong between nodes 0 and 1,
   before the collectives and again after them;
3. collectives (all_sum, all_gather, send/recv ping-pong) by size and dtype, for
   boltring and for MLX's ring backend, ranks as processes in the lab nodes;
   then 16 KiB all_sum with the group's state published and not (``publish``);
4. decode of a tiny sharded Llama: one process, two ranks with no communication
   (the bound for any transport), boltring, MLX's ring;
5. the seed in miniature: boltring's decode while thunderbolt breaks and heals,
   next to a control pair that is never broken.

Systems take turns (case by case in ABBA order, round by round), never run at
once: on a shared machine, load that comes and goes falls on all of them alike,
and every ratio compares measurements from the same minutes.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from boltring_rig.bench import baselines, kernels
from boltring_rig.bench.procs import Procs, WorkerError
from boltring_rig.bench.ui import UI
from boltring_rig.lab import Lab

KiB, MiB = 1 << 10, 1 << 20
FULL_SIZES = [64, 256, KiB, 4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, MiB, 4 * MiB, 16 * MiB, 64 * MiB]
QUICK_SIZES = [64, KiB, 16 * KiB, 256 * KiB, MiB, 64 * MiB]
DTYPES = ["bfloat16", "float16", "float32"]
# all_sum_tmp: all_sum of a temporary the program does not hold (MLX donates it to the
# result), from 1 MiB up; all_sum's own input is an array the program still holds
OPS = ["all_sum", "all_sum_tmp", "all_gather", "sendrecv"]
SYSTEMS = ["boltring", "mlx"]
PORT = 52700
# glibc keeps blocks up to 1 GiB in the heap instead of mmap/munmap per block, so a
# process reuses freed memory instead of page-faulting every large new array
MALLOC_CACHE_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(4 << 30)}


@dataclass
class Options:
    quick: bool = False
    ranks: int = 2
    out: Path = Path("bench-results")
    plot: Path | None = None
    sizes: list[int] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)  # stages: kernels baselines collectives publish decode seed
    prefix: str = ""
    keep_logs: bool = False
    malloc_cache: bool = False
    command: str = ""

    def __post_init__(self) -> None:
        if not self.sizes:
            self.sizes = list(QUICK_SIZES if self.quick else FULL_SIZES)
        if not self.dtypes:
            self.dtypes = ["bfloat16"] if self.quick else list(DTYPES)
        if not self.prefix:
            self.prefix = f"bb{os.getpid() % 100000}"

    @property
    def effort(self) -> Effort:
        """How hard each stage works."""
        return QUICK if self.quick else FULL


@dataclass(frozen=True)
class Effort:
    budget_s: float  # per case, split over the passes
    passes: int
    min_iters: int
    max_iters: int
    link_seconds: float  # each iperf3 / sockperf run
    decode_rounds: int


QUICK = Effort(budget_s=0.15, passes=2, min_iters=4, max_iters=300, link_seconds=1.0, decode_rounds=2)
FULL = Effort(budget_s=0.7, passes=4, min_iters=8, max_iters=2000, link_seconds=3.0, decode_rounds=5)


def machine_facts() -> dict[str, Any]:
    import mlx.core as mx
    import numpy as np

    import boltring

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        rev = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "describe", "--always",
                              "--dirty"], capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        rev = ""
    try:
        import mlx_lm
        mlx_lm_version = mlx_lm.__version__
    except ImportError:
        mlx_lm_version = None
    src = Path(boltring.__file__).resolve().parents[2] / "csrc" / "reduce.c"
    reduce_c = hashlib.sha256(src.read_bytes()).hexdigest()[:12] if src.exists() else None
    return {
        "reduce_c_sha256": reduce_c,  # the reduce kernels this build was made from (a source tree)
        "loadavg_at_start": os.getloadavg(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(), "platform": platform.platform(), "machine": platform.machine(),
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
        "boltring": boltring.__version__, "revision": rev, "mlx": mx.__version__,
        "mlx_lm": mlx_lm_version, "numpy": np.__version__,
        "iperf3": baselines.version("iperf3"), "sockperf": baselines.version("sockperf"),
        "link": "lab veth pair 'thunderbolt0' (kernel tc redirect between network namespaces)",
    }


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


class Run:
    """One `boltring bench` run: the lab, its processes, and everything measured."""

    def __init__(self, opts: Options, ui: UI):
        self.opts = opts
        self.ui = ui
        self.lab = Lab(nodes=max(2, opts.ranks), prefix=opts.prefix)
        self.workdir = Path(tempfile.mkdtemp(prefix="boltring-bench-"))
        self.procs = Procs(self.lab, self.workdir)
        self.port = PORT
        self.results: dict[str, Any] = {
            "schema": 1, "command": opts.command, "options": {**asdict(opts), "out": str(opts.out),
                                                              "plot": str(opts.plot) if opts.plot else None},
            "facts": machine_facts(), "skipped": {}, "errors": [], "kernels": [], "baselines": {},
            "collectives": [], "publish": {}, "decode": {}, "seed": {}, "stages_s": {},
            "load": {},  # 1-minute load average at the start and end of each stage
            "launches": [],  # every set of rank processes: system, hostfiles, environment names
        }
        self.control: Lab | None = None  # the seed stage's second lab
        fl = self.lab.links()[0]
        self.pair = fl  # every 2-rank measurement runs over fast link 0, between nodes 0 and 1

    # ---------------------------------------------------------------- helpers

    def next_port(self) -> int:
        self.port += 10
        return self.port

    def write(self, name: str, data: Any) -> str:
        path = self.workdir / name
        path.write_text(json.dumps(data))
        return str(path)

    def hostfile_pair(self, port: int) -> list[list[str]]:
        """2 ranks over link 0: each rank's fast address, then its slow one (for N >= 3
        ranks boltring gets `Lab.hostfile`: MLX's per-rank format, fast then slow)."""
        return [[f"{self.pair.addr(r)}:{port}", f"{self.lab.slow_addr(r)}:{port}"] for r in (0, 1)]

    def exo_hostfile(self, rank: int, port: int, ranks: int) -> list[list[str]]:
        """The MLX ring hostfile exo writes for `rank`: its own entry 0.0.0.0, each
        ring neighbour's fast address on the link they share, a placeholder otherwise.

        MLX's ring (mlx/distributed/ring/ring.cpp) reads a JSON list, one entry per
        rank, each a list of "ip:port": a rank binds and listens on every address
        of its own entry (one connection each) and connects to every address of
        rank+1.  So an entry must hold only what the rank can bind (0.0.0.0 does),
        and a second address for a peer means a second connection that MLX splits
        traffic over: listing the tailscale0 address as well would send part of
        every collective over the slow path."""
        if ranks == 2:
            return [[f"0.0.0.0:{port}"] if r == rank else [f"{self.pair.addr(r)}:{port}"] for r in (0, 1)]
        out = []
        for p in range(ranks):
            shared = next((fl for fl in self.lab.links() if {fl.a, fl.b} == {rank, p}), None)
            out.append([f"0.0.0.0:{port}"] if p == rank else
                       [f"{shared.addr(p)}:{port}"] if shared else ["198.51.100.1:9"])
        return out

    def start_ranks(self, system: str, ranks: int, spec: dict[str, Any], *, stdin: bool = False,
                    lab: Lab | None = None) -> list[Any]:
        """Start `ranks` worker processes of `system` with `spec` (in `lab`, default the
        main one); returns them once formed."""
        port = self.next_port()
        spec = {**spec, "system": system, "ranks": ranks}
        env: list[dict[str, str]] = [dict(MALLOC_CACHE_ENV) if self.opts.malloc_cache else {}
                                     for _ in range(ranks)]
        if system == "boltring":
            spec["hostfile"] = self.write(f"hosts-{port}.json", self.hostfile_pair(port) if ranks == 2
                                          else self.lab.hostfile(port))
        elif system == "mlx":
            for r in range(ranks):
                env[r].update(MLX_HOSTFILE=self.write(f"mlx-hosts-{port}-{r}.json",
                                                      self.exo_hostfile(r, port, ranks)),
                              MLX_RANK=str(r))
        spec_path = self.write(f"spec-{port}.json", spec)
        self.results["launches"].append({
            "system": system, "ranks": ranks, "job": spec["job"], "port": port,
            "hostfile": json.loads(Path(spec["hostfile"]).read_text()) if "hostfile" in spec else None,
            "mlx_hostfiles": [json.loads(Path(e["MLX_HOSTFILE"]).read_text()) for e in env]
            if system == "mlx" else None,
            "env": sorted({k for e in env for k in e})})
        procs = [self.procs.spawn(r, [sys.executable, "-m", "boltring_rig.bench.worker", spec_path, str(r)],
                                  name=f"{system} rank {r}", env=env[r], json_lines=True, stdin=stdin,
                                  lab=lab)
                 for r in range(ranks)]
        try:
            for p in procs:
                p.until("formed", 45)
        except BaseException:
            for p in procs:
                self.procs.stop(p)
            raise
        return procs

    def finish(self, procs: list[Any], timeout: float = 30) -> None:
        for p in procs:
            self.procs.wait(p, timeout)

    def stop_all(self, live: dict[str, list[Any]]) -> None:
        """Tell every system's workers to stop, and wait for them."""
        for procs in live.values():
            for p in procs:
                p.say("stop")
            self.finish(procs, 10)

    def stage(self, name: str, fn: Any) -> None:
        if name in self.opts.skip:
            self.results["skipped"][name] = "--skip"
            return
        t0 = time.monotonic()
        load0 = os.getloadavg()[0]
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 -- one stage failing must not lose the others' results
            self.results["errors"].append({"stage": name, "error": f"{type(exc).__name__}: {exc}"})
            self.ui.error(f"{name}: {type(exc).__name__}: {exc}")
        finally:
            self.results["stages_s"][name] = round(time.monotonic() - t0, 2)
            self.results["load"][name] = [round(load0, 2), round(os.getloadavg()[0], 2)]

    # ----------------------------------------------------------------- stages

    def kernels(self) -> None:
        sizes = [16 * KiB, MiB, 64 * MiB]
        with self.ui.task("reduce kernels vs numpy", len(sizes)) as advance:
            for size in sizes:
                self.results["kernels"] += kernels.measure([size], ["float32", "float16", "bfloat16"],
                                                           budget_s=0.1 if self.opts.quick else 0.3)
                advance()

    def baselines(self, sizes: list[int] | None = None, label: str = "before") -> None:
        """The link's ceiling.  Run before the collectives and again after them: the
        ratios use the mean of both, so load that comes and goes hits both sides."""
        missing = baselines.missing()
        for tool, why in missing.items():
            if tool not in self.results["skipped"]:
                self.results["skipped"][tool] = why
                self.ui.warn(f"skipping the {tool} baseline: {why}")
        server = (0, self.pair.addr(0))
        client = (1, self.pair.addr(1))
        if sizes is None:
            sizes = [s for s in self.opts.sizes if s <= baselines.SOCKPERF_MAX_BYTES + 1]
        runs = self.results["baselines"].setdefault("runs", [])
        with self.ui.task(f"link ceiling, {label} (iperf3 --bidir, sockperf ping-pong)", 2) as advance:
            if "iperf3" not in missing:
                runs.append({"when": label, **baselines.iperf3_bidir(
                    self.procs, server, client, seconds=self.opts.effort.link_seconds, port=self.next_port())})
            advance()
            if "sockperf" not in missing:
                for row in baselines.sockperf_pingpong(self.procs, server, client, sizes, seconds=1,
                                                       port=self.next_port()):
                    runs.append({"when": label, "tool": "sockperf", **row})
            advance()
        self.summarise_baselines()

    def summarise_baselines(self) -> None:
        runs = self.results["baselines"].get("runs", [])
        ip = [r for r in runs if r["tool"] == "iperf3 --bidir"]
        if ip:
            self.results["baselines"]["iperf3"] = {
                "per_direction_Bps": statistics.mean(r["per_direction_Bps"] for r in ip),
                "forward_Bps": statistics.mean(r["forward_Bps"] for r in ip),
                "reverse_Bps": statistics.mean(r["reverse_Bps"] for r in ip),
                "runs": len(ip), "spread_Bps": [min(r["per_direction_Bps"] for r in ip),
                                                max(r["per_direction_Bps"] for r in ip)]}
        sp = [r for r in runs if r["tool"] == "sockperf"]
        if sp:
            rows = []
            for size in sorted({r["bytes"] for r in sp}):
                mine = [r for r in sp if r["bytes"] == size]
                rows.append({"bytes": size, "p50_us": statistics.mean(r["p50_us"] for r in mine),
                             "p50_runs_us": [r["p50_us"] for r in mine],
                             "avg_us": statistics.mean(r["avg_us"] or 0 for r in mine),
                             "observations": sum(r["observations"] or 0 for r in mine)})
            self.results["baselines"]["sockperf"] = rows

    def cases(self) -> list[dict[str, Any]]:
        """Every (op, dtype, size) as `passes` consecutive passes sharing the budget:
        the collectives run them in ABBA order (A B, then B A, ...), so load that
        comes and goes on a shared machine falls on both systems alike."""
        passes = self.opts.effort.passes
        out = []
        for op in OPS:
            for dtype in (self.opts.dtypes if op == "all_sum" else self.opts.dtypes[:1]):
                for size in self.opts.sizes:
                    if op == "all_sum_tmp" and size < MiB:
                        continue
                    warmup = 2 if size >= 16 * MiB else 3 if size >= MiB else 10
                    for p in range(passes):
                        out.append({"op": op, "dtype": dtype, "bytes": size, "pass": p,
                                    "warmup": warmup if p == 0 else max(1, warmup // 2),
                                    "budget_s": self.opts.effort.budget_s / passes,
                                    "min_iters": max(2, -(-self.opts.effort.min_iters // passes)),
                                    "max_iters": max(self.opts.effort.min_iters, self.opts.effort.max_iters // passes)})
        return out

    def collectives(self) -> None:
        """Both systems' ranks stay up; cases alternate between them (ABBA order)."""
        cases = self.cases()
        ranks = max(2, self.opts.ranks)
        spec = {"job": "collectives", "cases": cases}
        with self.ui.status(f"forming {ranks}-rank groups: {', '.join(SYSTEMS)}"):
            live = {system: self.start_ranks(system, ranks, spec, stdin=True) for system in SYSTEMS}
        self.results["collectives"] += self.interleave(live, cases, "collectives",
                                                       f"collectives, {ranks} ranks: {' vs '.join(SYSTEMS)}")

    def publish(self) -> None:
        """16 KiB all_sum with the group's state published (the default: a snapshot file
        rewritten every 0.25 s) and with publishing off: two boltring pairs, their
        short passes (0.25 s, a snapshot each) alternating in ABBA order."""
        passes = 10 * self.opts.effort.passes
        cases = [{"op": "all_sum", "dtype": "bfloat16", "bytes": 16 * KiB, "pass": p, "warmup": 20,
                  "budget_s": 0.25, "min_iters": 100, "max_iters": 100_000} for p in range(passes)]
        configs = {"published": True, "not published": False}
        with self.ui.status("forming two boltring pairs: state published, and not"):
            live = {name: self.start_ranks("boltring", 2, {"job": "collectives", "cases": cases,
                                                           "init": {"publish": on}}, stdin=True)
                    for name, on in configs.items()}
        lines = self.interleave(live, cases, "publish", "16 KiB all_sum: state published vs not")
        # per pass, rank 0: the load on a shared machine moves whole passes, so the
        # passes' medians are compared (each published pass with the unpublished one
        # next to it), not one median of every sample pooled
        out: dict[str, Any] = {"cases": lines}
        per_pass: dict[str, dict[int, float]] = {}
        for name in configs:
            mine = [line for line in lines if line["system"] == name and line["rank"] == 0 and line["samples_ns"]]
            samples = sorted(x for line in mine for x in line["samples_ns"])
            per_pass[name] = {line["pass"]: median(line["samples_ns"]) / 1e3 for line in mine}
            if samples:
                out[name] = {"median_us": median(list(per_pass[name].values())),
                             "pass_medians_us": list(per_pass[name].values()),
                             "mean_us": statistics.mean(samples) / 1e3,
                             "p99_us": samples[int(0.99 * (len(samples) - 1))] / 1e3, "samples": len(samples)}
        both = sorted(set(per_pass["published"]) & set(per_pass["not published"]))
        if both:
            out["paired_ratio"] = median([per_pass["published"][p] / per_pass["not published"][p] for p in both])
        self.results["publish"] = out

    def interleave(self, live: dict[str, list[Any]], cases: list[dict[str, Any]], stage: str,
                   title: str) -> list[dict[str, Any]]:
        """Every case on each system's ranks in `live` (which stay up), systems taking
        turns case by case in ABBA order; the result lines, each tagged with its
        system.  A system whose ranks fail is dropped, its error recorded.  Stops
        every rank at the end."""
        out: list[dict[str, Any]] = []
        systems = list(live)
        last = max(c["pass"] for c in cases)
        try:
            with self.ui.task(title, len(cases) * len(live)) as advance:
                for i, case in enumerate(cases):
                    for system in (systems if i % 2 == 0 else systems[::-1]):
                        if system not in live:
                            continue
                        try:
                            lines = self.step(live[system], "case", 60 + case["bytes"] / MiB)
                        except WorkerError as exc:
                            self.fail(f"{stage} ({system})", exc, live.pop(system))
                            continue
                        for line in lines:
                            line["system"] = system
                        out += lines
                        if case["pass"] == last:
                            self.ui.case(system, lines[0])
                        advance()
        finally:
            self.stop_all(live)
        return out

    def step(self, procs: list[Any], kind: str, timeout: float) -> list[dict[str, Any]]:
        """Let every rank in `procs` take one step; their result lines."""
        for p in procs:
            p.say("go")
        return [p.until(kind, timeout) for p in procs]

    def fail(self, what: str, exc: BaseException, procs: list[Any]) -> None:
        self.results["errors"].append({"stage": what, "error": f"{type(exc).__name__}: {exc}"})
        self.ui.error(f"{what}: {exc}")
        for p in procs:
            self.procs.stop(p)

    def decode(self) -> None:
        """One process (unsharded), 2 ranks with no communication at all (the bound any
        transport could reach here), boltring and MLX's ring: all loaded, rounds
        alternating between them."""
        model = {"seed": 0, "hidden": 256, "layers": 16, "tokens": 64, "prompt": 8}
        spec = {"job": "decode", "model": model, "warmup": 1, "rounds": self.opts.effort.decode_rounds}
        runs = {"single": 1, "nocomm": 2, "boltring": 2, "mlx": 2}
        live, built, rounds = {}, {}, {s: [] for s in runs}
        try:
            with self.ui.status("loading the tiny Llama: one process, 2 ranks without communication, "
                                "boltring, MLX ring"):
                for system, ranks in runs.items():
                    live[system] = self.start_ranks(system, ranks, spec, stdin=True)
                    built[system] = live[system][0].until("model", 60)
            order = list(runs)
            total = spec["warmup"] + spec["rounds"]
            with self.ui.task("decode: tiny Llama, 64 tokens a round", total * len(order)) as advance:
                for i in range(total):
                    for system in (order if i % 2 == 0 else order[::-1]):
                        if system not in live:
                            continue
                        try:
                            rounds[system].append(self.step(live[system], "decode", 120)[0])
                        except WorkerError as exc:
                            self.fail(f"decode ({system})", exc, live.pop(system))
                        advance()
        finally:
            self.stop_all(live)
        for system, got in rounds.items():
            timed = [r for r in got if not r["warmup"]]
            if not timed:
                continue
            self.results["decode"][system] = {
                "ranks": runs[system], "model": model, "builder": built[system]["builder"],
                "routing": built[system]["routing"], "rounds": got,
                "tokens_per_s": median([r["tokens_per_s"] for r in timed]), "ids": timed[-1]["ids"],
                # where a token's time goes on rank 0: cores busy (all its threads), and
                # the part of each token spent inside collectives (waiting for the peer included)
                "cpu_cores": median([r["cpu_s"] / r["seconds"] for r in timed]),
                "collective_ms_per_token": (median([1e3 * r["collective_s"] / r["tokens"] for r in timed])
                                            if all(r.get("collective_s") is not None for r in timed) else None)}
            self.ui.note(f"decode {system}: {self.results['decode'][system]['tokens_per_s']:.1f} tokens/s")
        d = self.results["decode"]
        if "boltring" in d and "mlx" in d:
            d["same_tokens_boltring_mlx"] = d["boltring"]["ids"] == d["mlx"]["ids"]

    def seed(self) -> None:
        """The seed in miniature: boltring's decode healthy, after thunderbolt0 breaks
        (fallback to tailscale0), and after it heals (re-promotion).

        A control pair in a second lab, never broken, decodes in the rounds between
        (alternating, never at once): its rate tracks what the rest of the machine
        does to decode speed, so the phases can also be compared relative to it."""
        fast_if, slow_if = self.pair.iface(0), "tailscale0"
        spec = {"job": "decode", "mode": "seed",
                "model": {"seed": 0, "hidden": 256, "layers": 16, "tokens": 64, "prompt": 8},
                "fast_tokens": 16, "slow_tokens": 2, "fast_iface": fast_if}
        want = 3 if self.opts.quick else 8
        phases: dict[str, list[dict[str, Any]]] = {"healthy": [], "fallback": [], "promoted": []}
        marks: dict[str, float] = {}
        self.control = Lab(nodes=2, prefix=self.opts.prefix + "c")
        with self.ui.status("control lab up, loading the tiny Llama in both"):
            self.control.up()
            subject = self.start_ranks("boltring", 2, spec, stdin=True)
            control = self.start_ranks("boltring", 2, spec, stdin=True, lab=self.control)
        try:
            for p in (subject[0], control[0]):
                p.until("model", 60)

            def rounds_on(iface: str, count: int, skip: int, timeout: float) -> list[dict[str, Any]]:
                """`count` subject rounds with both ranks on `iface` (after `skip` there),
                each with the control round that follows it."""
                got: list[dict[str, Any]] = []
                seen = 0
                end = time.monotonic() + timeout
                while len(got) < count:
                    if time.monotonic() > end:
                        raise WorkerError(f"seed: {len(got)} of {count} rounds on {iface} within {timeout:.0f} s")
                    a, b = self.step(subject, "seed", 60)
                    c = self.step(control, "seed", 60)[0]
                    if a["path"] == iface and b["path"] == iface:
                        seen += 1
                        if seen > skip:
                            got.append({**a, "dialer_path": b["path"], "events": b["events"],
                                        "control_tokens_per_s": c["tokens_per_s"],
                                        "relative": a["tokens_per_s"] / c["tokens_per_s"]})
                return got

            with self.ui.task("seed in miniature: healthy, broken, healed (with a control pair)", 3) as advance:
                phases["healthy"] = rounds_on(fast_if, want, 2, 60)
                advance()
                marks["break"] = time.time()
                self.lab.break_link(1, self.pair.iface(1))
                phases["fallback"] = rounds_on(slow_if, 2 if self.opts.quick else 3, 1, 60)
                advance()
                marks["heal"] = time.time()
                self.lab.heal(1, self.pair.iface(1))
                phases["promoted"] = rounds_on(fast_if, want, 1, 60)
                advance()
        finally:
            for p in subject + control:
                p.say("stop")
            self.finish(subject + control, 15)
            if "break" in marks and "heal" not in marks:
                self.lab.heal(1, self.pair.iface(1))
        events = phases["promoted"][-1]["events"] if phases["promoted"] else []
        switch = {}
        for kind, mark in (("fallback", "break"), ("promote", "heal")):
            times = [e["time"] for e in events if e["kind"] == kind and e["time"] >= marks.get(mark, 0)]
            if times:
                switch[f"{kind}_after_s"] = min(times) - marks[mark]
        rate = {k: median([r["tokens_per_s"] for r in v]) for k, v in phases.items()}
        rel = {k: median([r["relative"] for r in v]) for k, v in phases.items()}
        ctrl = {k: median([r["control_tokens_per_s"] for r in v]) for k, v in phases.items()}
        self.results["seed"] = {
            "phases": phases, "tokens_per_s": rate, "control_tokens_per_s": ctrl, "relative_to_control": rel,
            "marks": marks, "events": events, **switch,
            "promoted_over_healthy": rate["promoted"] / rate["healthy"],
            "promoted_over_healthy_vs_control": rel["promoted"] / rel["healthy"]}
        self.ui.note("seed: " + ", ".join(f"{k} {v:.1f} tokens/s" for k, v in rate.items())
                     + " (control pair: " + ", ".join(f"{v:.1f}" for v in ctrl.values()) + ")")

    # ------------------------------------------------------------------- run

    def run(self) -> dict[str, Any]:
        t0 = time.monotonic()
        self.stage("kernels", self.kernels)
        with self.ui.status(f"lab {self.opts.prefix} up ({self.lab.nodes} nodes)"):
            self.lab.up()
        self.stage("baselines", self.baselines)
        self.stage("collectives", self.collectives)
        if "baselines" not in self.opts.skip and "collectives" not in self.opts.skip:
            self.stage("baselines again", lambda: self.baselines(
                [16 * KiB] if self.opts.quick else None, "after the collectives"))
        self.stage("publish", self.publish)
        self.stage("decode", self.decode)
        self.stage("seed", self.seed)
        self.results["total_s"] = round(time.monotonic() - t0, 1)
        return self.results

    def close(self) -> None:
        self.procs.stop_all()
        self.lab.down()
        if self.control is not None:
            self.control.down()
        if not self.opts.keep_logs:
            for f in self.workdir.glob("*"):
                f.unlink()
            self.workdir.rmdir()


def run(opts: Options) -> tuple[dict[str, Any], Path]:
    """Run everything; returns the results and the run's log directory (kept with --keep-logs)."""
    from boltring_rig.bench import report

    ui = UI()

    def terminated(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, terminated)
    bench = Run(opts, ui)
    try:
        results = bench.run()
    finally:
        with ui.status("cleaning up the lab"):
            bench.close()
        signal.signal(signal.SIGTERM, old)
    results["targets"] = report.targets(results)
    return results, bench.workdir
