"""What a `boltring bench` run found: medians, the targets (met or not), tables,
the JSON file and the plot.

Latency is the median time of one operation on rank 0 (send/recv: half the
ping-pong round trip, as sockperf reports).  Bandwidth is bytes per second of the
operation's payload: for all_sum the bytes reduced (one rank's input), for
send/recv the message, for all_gather the bytes each rank receives.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

KiB, MiB = 1 << 10, 1 << 20
LABELS = {"boltring": "boltring", "mlx": "MLX ring", "single": "one process",
          "nocomm": "no communication (bound)"}
OP_TITLES = {"all_sum": "all_sum", "all_sum_tmp": "all_sum of a donated temporary", "all_gather": "all_gather", "sendrecv": "send/recv (one way)"}


def size_label(n: int) -> str:
    if n >= MiB:
        return f"{n // MiB} MiB"
    if n >= KiB:
        return f"{n // KiB} KiB"
    return f"{n} B"


def points(results: dict[str, Any]) -> dict[tuple[str, str, str, int], dict[str, Any]]:
    """(system, op, dtype, bytes) -> latency_s, Bps, n, ok: rank 0's samples of every
    pass of that case, together."""
    merged: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for line in results.get("collectives", []):
        if line["rank"] != 0 or not line["samples_ns"]:
            continue
        key = (line["system"], line["op"], line["dtype"], line["bytes"])
        m = merged.setdefault(key, {"samples": [], "ok": True, "size": line["size"], "cpu_s": 0.0})
        m["samples"] += line["samples_ns"]
        m["cpu_s"] += line.get("cpu_s", 0.0)
        m["ok"] = m["ok"] and line["ok"]
    out = {}
    for (system, op, dtype, size), m in merged.items():
        half = 2 if op == "sendrecv" else 1
        lat = statistics.median(m["samples"]) / half / 1e9
        moved = size * (m["size"] - 1) if op == "all_gather" else size
        out[(system, op, dtype, size)] = {"latency_s": lat, "Bps": moved / lat, "n": len(m["samples"]),
                                          "ok": m["ok"], "cpu_s_per_1000": m["cpu_s"] / len(m["samples"]) * 1000}
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def _sockperf_us(results: dict[str, Any], size: int) -> float | None:
    for row in results.get("baselines", {}).get("sockperf", []):
        if row["bytes"] == size:
            return float(row["p50_us"])
    return None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of the benchmark issue: its measured value, the goal, met or not
    (None: not measured in this run)."""
    p = points(results)
    bf = "bfloat16"

    def get(system: str, op: str, size: int, key: str, dtype: str = bf) -> float | None:
        v = p.get((system, op, dtype, size))
        return v[key] if v else None

    rows = []

    def add(name: str, value: float | None, goal: str, ok: bool | None, detail: str) -> None:
        rows.append({"target": name, "value": value, "goal": goal, "met": ok, "detail": detail})

    b16, m16 = get("boltring", "all_sum", 16 * KiB, "latency_s"), get("mlx", "all_sum", 16 * KiB, "latency_s")
    r = _ratio(b16, m16)
    add("16 KiB bf16 all_sum latency vs MLX ring", r, "<= 0.5x", None if r is None else r <= 0.5,
        f"boltring {_us(b16)}, MLX ring {_us(m16)}")
    sp = _sockperf_us(results, 16 * KiB)
    r = _ratio(b16, sp / 1e6 if sp else None)
    add("16 KiB bf16 all_sum latency vs sockperf one-way", r, "<= 1.5x", None if r is None else r <= 1.5,
        f"boltring {_us(b16)}, sockperf ping-pong p50 {sp if sp is None else f'{sp:.1f} us'}")
    bc, mc = (get(s, "all_sum", 16 * KiB, "cpu_s_per_1000") for s in ("boltring", "mlx"))
    r = _ratio(bc, mc)
    add("CPU time per 1000 16 KiB bf16 all_sums vs MLX ring", r, "<= 0.5x", None if r is None else r <= 0.5,
        f"boltring {bc if bc is None else f'{bc:.3f} s'}, MLX ring {mc if mc is None else f'{mc:.3f} s'} "
        "(rank 0's process, every thread)")
    ip = results.get("baselines", {}).get("iperf3", {}).get("per_direction_Bps")
    for size in (MiB, 64 * MiB):
        for op, what in (("all_sum", "an input the program holds"), ("all_sum_tmp", "a donated temporary")):
            b = get("boltring", op, size, "Bps")
            r = _ratio(b, ip)
            add(f"{size_label(size)} bf16 all_sum ({what}) vs iperf3 --bidir per direction", r, ">= 0.8x",
                None if r is None else r >= 0.8,
                f"boltring {_gb(b)}, MLX ring {_gb(get('mlx', op, size, 'Bps'))}, iperf3 {_gb(ip)}")
    dec = results.get("decode", {})
    bd, md, nd = (dec.get(s, {}).get("tokens_per_s") for s in ("boltring", "mlx", "nocomm"))
    r = _ratio(bd, md)
    add("decode tokens/s vs MLX ring (2 ranks, mlx-lm generate_step)", r, ">= 1.5x",
        None if r is None else r >= 1.5,
        f"boltring {_tps(bd)}, MLX ring {_tps(md)}; one process "
        f"{_tps(dec.get('single', {}).get('tokens_per_s'))}")
    r = _ratio(bd, nd)
    add("decode tokens/s vs the no-communication bound (2 ranks)", r, ">= 0.85x",
        None if r is None else r >= 0.85, f"boltring {_tps(bd)}, two ranks without communication {_tps(nd)}")
    seed = results.get("seed", {})
    r = seed.get("promoted_over_healthy_vs_control")
    rate, ctrl = seed.get("tokens_per_s", {}), seed.get("control_tokens_per_s", {})
    raw = seed.get("promoted_over_healthy")
    add("decode after re-promotion vs healthy (each relative to the control pair)", r, ">= 0.9x",
        None if r is None else r >= 0.9,
        f"healthy {_tps(rate.get('healthy'))}, fallback {_tps(rate.get('fallback'))}, re-promoted "
        f"{_tps(rate.get('promoted'))} (raw ratio {_x(raw)}); control pair meanwhile "
        f"{_tps(ctrl.get('healthy'))}, {_tps(ctrl.get('fallback'))}, {_tps(ctrl.get('promoted'))}")
    for row in results.get("kernels", []):
        if "ratio" in row:
            add(f"reduce {row['dtype']} {size_label(row['bytes'])} vs numpy", row["ratio"], ">= 1x",
                row["ratio"] >= 1.0, f"boltring {row['boltring_GBps']:.2f} GB/s, numpy {row['numpy_GBps']:.2f} GB/s")
    by = {(row["dtype"], row["bytes"]): row for row in results.get("kernels", [])}
    for (dtype, size), row in sorted(by.items()):
        if dtype == "bfloat16" and ("float32", size) in by:
            f32 = by[("float32", size)]["boltring_GBps"]
            r = row["boltring_GBps"] / f32
            add(f"reduce bf16 vs f32 bytes/s, {size_label(size)}", r, ">= 1x", r >= 1.0,
                f"bf16 {row['boltring_GBps']:.2f} GB/s, f32 {f32:.2f} GB/s")
    return rows


def _us(s: float | None) -> str:
    return "n/a" if s is None else f"{s * 1e6:.1f} us"


def _gb(bps: float | None) -> str:
    return "n/a" if bps is None else f"{bps / 1e9:.3f} GB/s"


def _tps(t: float | None) -> str:
    return "n/a" if t is None else f"{t:.1f} tok/s"


def _x(r: float | None) -> str:
    return "" if r is None else f"{r:.2f}x"


# ------------------------------------------------------------------ tables

TableData = tuple[str, list[str], list[list[str]]]  # (title, header, rows)


def tables(results: dict[str, Any]) -> list[TableData]:
    """(title, header, rows) for the terminal."""
    out = _collective_tables(results)
    for table in (_ceiling_table, _publish_table, _decode_table, _kernel_table, _target_table):
        made = table(results)
        if made is not None:
            out.append(made)
    return out


def _collective_tables(results: dict[str, Any]) -> list[TableData]:
    """One table per collective: boltring's and MLX ring's medians side by side."""
    p = points(results)
    out = []
    ip = results.get("baselines", {}).get("iperf3", {}).get("per_direction_Bps")
    sizes = sorted({k[3] for k in p})
    dtypes = sorted({k[2] for k in p}, key=["bfloat16", "float16", "float32"].index)
    for op in ("all_sum", "all_sum_tmp", "all_gather", "sendrecv"):
        rows = []
        for dtype in dtypes:
            for size in sizes:
                b, m = p.get(("boltring", op, dtype, size)), p.get(("mlx", op, dtype, size))
                if b or m:
                    rows.append(_collective_row(results, dtype, size, b, m, ip))
        if rows:
            out.append((f"{OP_TITLES[op]}: medians on rank 0", [
                "dtype", "size", "boltring", "MLX ring", "lat b/m", "sockperf", "boltring", "MLX ring",
                "bw b/m", "b/iperf3", "check"], rows))
    return out


def _collective_row(results: dict[str, Any], dtype: str, size: int, b: dict[str, Any] | None,
                    m: dict[str, Any] | None, ip: float | None) -> list[str]:
    sp = _sockperf_us(results, size)
    return [dtype, size_label(size),
            _us(b and b["latency_s"]), _us(m and m["latency_s"]),
            _x(_ratio(b and b["latency_s"], m and m["latency_s"])),
            "" if sp is None else f"{sp:.1f} us",
            _gb(b and b["Bps"]), _gb(m and m["Bps"]),
            _x(_ratio(b and b["Bps"], m and m["Bps"])),
            _x(_ratio(b and b["Bps"], ip)),
            "" if (b is None or b["ok"]) and (m is None or m["ok"]) else "WRONG"]


def _ceiling_table(results: dict[str, Any]) -> TableData | None:
    """What the link itself does: iperf3 and sockperf."""
    base = results.get("baselines", {})
    if not base:
        return None
    rows = []
    if "iperf3" in base:
        i = base["iperf3"]
        lo, hi = i["spread_Bps"]
        detail = (f"forward {_gb(i['forward_Bps'])}, reverse {_gb(i['reverse_Bps'])}; "
                  f"mean of {i['runs']} runs ({_gb(lo)} .. {_gb(hi)})")
        rows.append(["iperf3 --bidir", "per direction", _gb(i["per_direction_Bps"]), detail])
    for row in base.get("sockperf", []):
        runs = ", ".join(f"{x:.1f}" for x in row["p50_runs_us"])
        rows.append(["sockperf ping-pong", size_label(row["bytes"]), f"{row['p50_us']:.1f} us",
                     f"one way (half RTT), p50 of runs: {runs} us; {row['observations']} samples"])
    return ("link ceiling (node 0 <-> node 1, thunderbolt0)", ["tool", "size", "median", "detail"], rows)


def _publish_table(results: dict[str, Any]) -> TableData | None:
    """A small all_sum with the group's state published, and not."""
    pub = results.get("publish", {})
    if "published" not in pub or "not published" not in pub:
        return None
    on, off = pub["published"], pub["not published"]
    rows = [[name, _us(d["median_us"] / 1e6), _us(d["mean_us"] / 1e6), _us(d["p99_us"] / 1e6), str(d["samples"]),
             " ".join(f"{x:.1f}" for x in d["pass_medians_us"])] for name, d in (("published", on),
                                                                            ("not published", off))]
    rows.append(["published / not", *(_x(_ratio(on[k], off[k])) for k in ("median_us", "mean_us", "p99_us")),
                 "", f"pass by pass (ABBA neighbours), median ratio {_x(pub.get('paired_ratio'))}"])
    return ("16 KiB bf16 all_sum with the group's state published or not (rank 0)",
            ["", "median of the passes", "mean", "p99", "samples", "median of each pass (us)"], rows)


def _decode_table(results: dict[str, Any]) -> TableData | None:
    """Decode rates: each system, then each phase of the seed scenario."""
    dec = results.get("decode", {})
    if not dec:
        return None
    rows = [_decode_row(s, d) for s, d in dec.items() if isinstance(d, dict)]
    seed = results.get("seed", {})
    for phase, rate in seed.get("tokens_per_s", {}).items():
        rows.append(_seed_row(seed, phase, rate))
    return ("decode: tiny Llama (bf16, hidden 256, 16 layers), 64 tokens a round",
            ["system", "ranks", "median", "tokens/s of each round"], rows)


def _decode_row(system: str, d: dict[str, Any]) -> list[str]:
    note = " ".join(f"{r['tokens_per_s']:.0f}" for r in d["rounds"] if not r["warmup"])
    if d.get("cpu_cores") is not None:
        note += f"  | {d['cpu_cores']:.2f} cores busy"
    if d.get("collective_ms_per_token") is not None:
        note += f", {d['collective_ms_per_token']:.1f} ms/token in collectives"
    return [LABELS[system], str(d["ranks"]), _tps(d["tokens_per_s"]), note]


def _seed_row(seed: dict[str, Any], phase: str, rate: float) -> list[str]:
    note = " ".join(f"{r['tokens_per_s']:.0f}" for r in seed["phases"][phase])
    note += f"  | control pair {_tps(seed['control_tokens_per_s'][phase])}"
    after = {"fallback": "fallback_after_s", "promoted": "promote_after_s"}.get(phase)
    if after and after in seed:
        note += f"; switched {seed[after]:.2f} s after the link {'broke' if phase == 'fallback' else 'healed'}"
    return [f"boltring, {phase}", "2", _tps(rate), note]


def _kernel_table(results: dict[str, Any]) -> TableData | None:
    kern = results.get("kernels", [])
    if not kern:
        return None
    rows = [[r["dtype"], size_label(r["bytes"]), f"{r['boltring_GBps']:.2f} GB/s",
             f"{r['numpy_GBps']:.2f} GB/s" if "numpy_GBps" in r else "n/a (no bfloat16)",
             _x(r.get("ratio"))] for r in kern]
    return ("reduce kernels (sum, in place)", ["dtype", "size", "boltring", "numpy", "ratio"], rows)


def _target_table(results: dict[str, Any]) -> TableData | None:
    rows = [[t["target"], "n/a" if t["value"] is None else f"{t['value']:.3g}", t["goal"],
             {True: "met", False: "MISSED", None: "not measured"}[t["met"]], t["detail"]]
            for t in results.get("targets", [])]
    if not rows:
        return None
    return ("targets", ["target", "value", "goal", "", "detail"], rows)


def show(results: dict[str, Any], ui: Any) -> None:
    from rich.table import Table

    for title, header, rows in tables(results):
        t = Table(title=title, title_justify="left")
        for h in header:
            t.add_column(h, overflow="fold")
        for row in rows:
            style = "red" if "MISSED" in row or "WRONG" in row else None
            t.add_row(*row, style=style)
        ui.print(t)
    cores = results.get("facts", {}).get("cores") or 1
    busy = {k: v for k, v in results.get("load", {}).items() if max(v) > cores}
    if busy:
        ui.warn(f"the machine was busy (1-minute load above {cores} cores during "
                f"{', '.join(busy)}): absolute numbers are noisy; ratios come from interleaved runs")
    for err in results.get("errors", []):
        ui.error(f"{err['stage']}: {err['error'].splitlines()[0]}")
    for what, why in results.get("skipped", {}).items():
        ui.warn(f"skipped {what}: {why}")


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The run without its samples: medians, ceilings, decode, seed, targets, facts
    (small enough to keep in the repository next to the plot)."""
    pts = [{"system": k[0], "op": k[1], "dtype": k[2], "bytes": k[3], "latency_us": round(v["latency_s"] * 1e6, 2),
            "GBps": round(v["Bps"] / 1e9, 4), "samples": v["n"], "ok": v["ok"]} for k, v in sorted(points(results).items())]
    base = {k: v for k, v in results.get("baselines", {}).items() if k != "runs"}
    dec = {s: {k: v for k, v in d.items() if k not in ("rounds", "ids")} if isinstance(d, dict) else d
           for s, d in results.get("decode", {}).items()}
    seed = {k: v for k, v in results.get("seed", {}).items() if k not in ("phases", "events")}
    publish = {k: v for k, v in results.get("publish", {}).items() if k != "cases"}
    kern = [{k: v for k, v in r.items() if not k.endswith("_ns")} for r in results.get("kernels", [])]
    keep = ("schema", "command", "options", "facts", "skipped", "errors", "stages_s", "load", "total_s")
    return {**{k: results.get(k) for k in keep}, "collectives": pts, "baselines": base, "decode": dec,
            "seed": seed, "publish": publish, "kernels": kern, "targets": results.get("targets", [])}


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))


# -------------------------------------------------------------------- plot

STYLE = {"bfloat16": "-", "float16": "--", "float32": ":"}
COLOR = {"boltring": "tab:blue", "mlx": "tab:orange", "ceiling": "tab:gray", "single": "tab:green",
         "nocomm": "tab:olive"}


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = points(results)
    facts = results.get("facts", {})
    ip = results.get("baselines", {}).get("iperf3", {}).get("per_direction_Bps")
    sock = results.get("baselines", {}).get("sockperf", [])
    fig, axes = plt.subplots(4, 2, figsize=(13, 17))
    for row, op in enumerate(("all_sum", "all_gather", "sendrecv")):
        lat_ax, bw_ax = axes[row]
        for system in ("boltring", "mlx"):
            for dtype, style in STYLE.items():
                keys = sorted(k for k in p if k[0] == system and k[1] == op and k[2] == dtype)
                if not keys:
                    continue
                xs = [k[3] for k in keys]
                label = f"{LABELS[system]} {dtype}"
                lat_ax.plot(xs, [p[k]["latency_s"] * 1e6 for k in keys], style, marker="o", ms=3,
                            color=COLOR[system], label=label)
                bw_ax.plot(xs, [p[k]["Bps"] / 1e9 for k in keys], style, marker="o", ms=3,
                           color=COLOR[system], label=label)
        if sock and op != "all_gather":
            lat_ax.plot([r["bytes"] for r in sock], [r["p50_us"] for r in sock], "s", color=COLOR["ceiling"],
                        label="sockperf TCP ping-pong, one way (p50)")
        if ip:
            bw_ax.axhline(ip / 1e9, color=COLOR["ceiling"], ls="-.", label="iperf3 --bidir, per direction")
            sizes = sorted({k[3] for k in p if k[1] == op and k[3] >= 64 * KiB})
            if sizes and op != "all_gather":
                lat_ax.plot(sizes, [s / ip * 1e6 for s in sizes], "-.", color=COLOR["ceiling"], lw=0.8,
                            label="size / iperf3 rate")
        _annotate(lat_ax, bw_ax, p, op, ip, results)
        lat_ax.set(xscale="log", yscale="log", xlabel="bytes per rank", ylabel="latency (us, median)",
                   title=f"{OP_TITLES[op]}: latency")
        bw_ax.set(xscale="log", yscale="log", xlabel="bytes per rank", ylabel="GB/s (median)",
                  title=f"{OP_TITLES[op]}: bandwidth")
        for ax, where in ((lat_ax, "upper left"), (bw_ax, "lower right")):
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7, loc=where)
    _decode_bars(axes[3][0], results)
    _kernel_bars(axes[3][1], results)
    fig.suptitle(f"boltring vs MLX ring vs the raw link — {facts.get('date', '')}\n"
                 f"{facts.get('cpu', '')} x{facts.get('cores', '?')}, {facts.get('platform', '')}; "
                 f"mlx {facts.get('mlx', '')}; lab veth link; ranks as processes in network namespaces",
                 fontsize=10)
    fig.text(0.5, 0.005, f"$ {results.get('command', 'boltring bench')}", ha="center", fontsize=8,
             family="monospace")
    fig.tight_layout(rect=(0, 0.01, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _annotate(lat_ax: Any, bw_ax: Any, p: dict[Any, Any], op: str, ip: float | None,
              results: dict[str, Any]) -> None:
    bf = "bfloat16"
    b, m = p.get(("boltring", op, bf, 16 * KiB)), p.get(("mlx", op, bf, 16 * KiB))
    if b and m:
        r = b["latency_s"] / m["latency_s"]
        lat_ax.annotate(f"{r:.2f}x MLX ring", (16 * KiB, b["latency_s"] * 1e6), textcoords="offset points",
                        xytext=(5, -14), fontsize=8, color=COLOR["boltring"])
    sp = _sockperf_us(results, 16 * KiB)
    if b and sp and op != "all_gather":
        lat_ax.annotate(f"{b['latency_s'] * 1e6 / sp:.1f}x sockperf", (16 * KiB, b["latency_s"] * 1e6),
                        textcoords="offset points", xytext=(5, 6), fontsize=8, color=COLOR["ceiling"])
    for size in (MiB, 64 * MiB):
        b, m = p.get(("boltring", op, bf, size)), p.get(("mlx", op, bf, size))
        if b and m:
            bw_ax.annotate(f"{b['Bps'] / m['Bps']:.1f}x MLX", (size, b["Bps"] / 1e9), textcoords="offset points",
                           xytext=(-30, 8), fontsize=8, color=COLOR["boltring"])
        if b and ip:
            bw_ax.annotate(f"{b['Bps'] / ip:.0%} of iperf3", (size, b["Bps"] / 1e9), textcoords="offset points",
                           xytext=(-30, -14), fontsize=8, color=COLOR["ceiling"])


def _decode_bars(ax: Any, results: dict[str, Any]) -> None:
    dec, seed = results.get("decode", {}), results.get("seed", {}).get("tokens_per_s", {})
    names, vals, colors = [], [], []
    for s in ("single", "nocomm", "boltring", "mlx"):
        if isinstance(dec.get(s), dict):
            names.append(LABELS[s] + (" (1 rank)" if s == "single" else " (2 ranks)"))
            vals.append(dec[s]["tokens_per_s"])
            colors.append(COLOR.get(s, "tab:green"))
    for phase, label in (("healthy", "seed: healthy"), ("fallback", "seed: on tailscale0"),
                         ("promoted", "seed: re-promoted")):
        if phase in seed:
            names.append(f"boltring {label}")
            vals.append(seed[phase])
            colors.append("tab:cyan" if phase != "fallback" else "tab:red")
    if not vals:
        ax.set_axis_off()
        return
    bars = ax.barh(names, vals, color=colors)
    for bar, v in zip(bars, vals):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:.1f}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="tokens/s (median of rounds)",
           title="decode, tiny Llama (bf16, hidden 256, 16 layers)\nseed: thunderbolt0 removed, then restored")


def _kernel_bars(ax: Any, results: dict[str, Any]) -> None:
    rows = results.get("kernels", [])
    if not rows:
        ax.set_axis_off()
        return
    labels = [f"{r['dtype']}\n{size_label(r['bytes'])}" for r in rows]
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r["boltring_GBps"] for r in rows], 0.4, label="boltring reduce",
           color=COLOR["boltring"])
    ax.bar([x + 0.2 for x in xs], [r.get("numpy_GBps", 0) for r in rows], 0.4, label="numpy np.add(out=a)",
           color=COLOR["ceiling"])
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set(ylabel="GB/s of dst", title="reduce kernels, sum in place\n(numpy has no bfloat16)")
    ax.legend(fontsize=7)
