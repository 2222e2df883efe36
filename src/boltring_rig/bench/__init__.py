"""``boltring bench``: boltring against MLX's ring and the raw network ceiling, in one run.

Needs root and Linux network namespaces (it builds its own lab), mlx-lm for the
decode stage, and optionally iperf3 and sockperf for the link's ceiling (missing
tools are reported and their baseline skipped; nothing is installed).  Writes a
JSON file with every sample and the machine facts, and a PNG plot.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from pathlib import Path
from typing import Any

STAGES = ("kernels", "baselines", "collectives", "publish", "decode", "seed")


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bench", help="measure boltring against MLX's ring and the raw link (root)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a fast subset: bfloat16 only, fewer sizes and samples (about 2 minutes)")
    p.add_argument("--ranks", type=int, choices=(2, 3, 4), default=2,
                   help="ranks for the collectives (default %(default)s; decode and the link "
                        "baselines always use 2)")
    p.add_argument("--out", type=Path, default=Path("bench-results"),
                   help="directory for the JSON file and plot (default %(default)s)")
    p.add_argument("--plot", type=Path, help="also write the plot here (e.g. docs/bench.png)")
    p.add_argument("--summary", type=Path,
                   help="also write the run without its samples here (e.g. docs/bench-summary.json)")
    p.add_argument("--sizes", type=lambda s: [_size(x) for x in s.split(",")],
                   help="comma-separated sizes per rank, e.g. 64,16K,1M,64M")
    p.add_argument("--dtypes", type=lambda s: s.split(","), help="comma-separated, e.g. bfloat16,float32")
    p.add_argument("--skip", type=lambda s: s.split(","), default=[],
                   help=f"comma-separated stages to skip: {', '.join(STAGES)}")
    p.add_argument("--prefix", default="", help="lab prefix (default: unique per run)")
    p.add_argument("--keep-logs", action="store_true", help="keep the ranks' logs (path printed)")
    p.add_argument("--malloc-cache", action="store_true",
                   help="run every rank (both systems) with glibc malloc keeping large blocks: MLX's "
                        "CPU allocator on Linux then reuses memory instead of page-faulting each large "
                        "new array (macOS's MLX caches buffers anyway)")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    from boltring_rig.bench import harness, report

    bad = [s for s in args.skip if s not in STAGES]
    if bad:
        print(f"boltring bench: unknown stage(s) {', '.join(bad)}; stages: {', '.join(STAGES)}", file=sys.stderr)
        return 2
    command = "boltring " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["bench"] \
        else "boltring bench"
    opts = harness.Options(quick=args.quick, ranks=args.ranks, out=args.out, plot=args.plot,
                           sizes=args.sizes or [], dtypes=args.dtypes or [], skip=args.skip,
                           prefix=args.prefix, keep_logs=args.keep_logs,
                           malloc_cache=args.malloc_cache, command=command)
    try:
        results, logs = harness.run(opts)
    except KeyboardInterrupt:
        print("boltring bench: interrupted; the lab and every process it started are gone", file=sys.stderr)
        return 130
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = opts.out / f"bench-{stamp}.json"
    png_path = opts.out / f"bench-{stamp}.png"
    report.write_json(results, json_path)
    if args.summary:
        report.write_json(report.summary(results), args.summary)
    from boltring_rig.bench.ui import UI

    ui = UI()
    report.show(results, ui)
    try:
        report.plot(results, png_path)
        if opts.plot:
            report.plot(results, opts.plot)
    except ImportError as exc:
        ui.warn(f"no plot: {exc} (pip install 'boltring[bench]')")
        png_path = None
    ui.note(f"results: {json_path}" + (f", plot: {png_path}" if png_path else "")
            + (f", {opts.plot}" if opts.plot else "") + f"; {results['total_s']:.0f} s")
    if opts.keep_logs:
        ui.note(f"rank logs: {logs}")
    return 1 if results["errors"] else 0
