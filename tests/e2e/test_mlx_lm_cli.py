"""mlx-lm's own command-line generation, sharded on boltring in the lab, code untouched.

`mlx_lm.benchmark` (the mlx-lm 0.32 tool that forms its group with
`mx.distributed.init()` and loads with `sharded_load`, tensor parallel) runs as one
rank per lab node under `boltring run`, with MLX's hostfile and rank in the
environment as exo or `mlx.launch` would set them.  The model is a tiny Llama with
random weights written to a directory (`boltring_rig.lab.models.write_model`); nothing
is downloaded.  boltring's log (BOLTRING_LOG, set by `--log info`) must show each
rank's group formed over thunderbolt0 and never a fallback, and thunderbolt0's
byte counters must have carried at least the activations one generation sums.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from boltring_rig.lab import Lab, netns
from boltring_rig.lab.models import LlamaShape, write_model
from ports import free_port
from processes import killed_at_exit

pytestmark = pytest.mark.netns

PORT = free_port()  # any free port: the ranks listen only inside this test's own lab namespaces
SHAPE = LlamaShape()
PROMPT, TOKENS = 32, 16


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    for name in netns.list_netns():  # labs of earlier runs of this module whose process died
        m = re.match(r"^(mc(\d+))-", name)
        if m and not netns.proc_alive(int(m.group(2))):
            Lab(2, m.group(1)).down()
    made = Lab(2, f"mc{os.getpid()}", max_lifetime_s=600)
    try:
        yield made.up()
    finally:
        made.down()


@pytest.mark.timeout(300)
def test_mlx_lm_benchmark_generates_sharded_on_boltring_under_boltring_run(lab: Lab, tmp_path: Path) -> None:
    model = write_model(tmp_path / "model", SHAPE)
    hosts = tmp_path / "hosts.json"
    hosts.write_text(json.dumps(lab.hostfile(PORT)))
    bench = Path(sys.executable).with_name("mlx_lm.benchmark")
    before = [lab.counters(r, "thunderbolt0") for r in range(2)]
    with killed_at_exit() as procs:
        for r in range(2):
            env = {k: v for k, v in os.environ.items() if not k.startswith("BOLTRING_")}
            env.update(MLX_HOSTFILE=str(hosts), MLX_RANK=str(r), HF_HUB_OFFLINE="1",
                       BOLTRING_STATE_DIR=str(tmp_path / f"state{r}"))
            argv = [sys.executable, "-m", "boltring.tools.cli", "run", "--fallback", "never", "--log", "info", "--",
                    str(bench), "--model", str(model), "-p", str(PROMPT), "-g", str(TOKENS), "-n", "1"]
            procs.append(lab.popen(r, argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outs = [proc.communicate(timeout=240) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err[-3000:] for _, err in outs]
    averages = re.search(r"Averages: prompt_tps=([\d.]+), generation_tps=([\d.]+)", outs[0][0])
    assert averages and float(averages.group(2)) > 0, outs[0]
    for r, (_, err) in enumerate(outs):
        assert f"mx.distributed.init -> boltring group: rank {r} of 2" in err, err
        assert re.search(r"initial thunderbolt0 \(thunderbolt, ", err), err
        assert "FALLBACK" not in err and "DOWN" not in err, err
    # each all_sum moves one [tokens, hidden] bfloat16 block each way, 2 per layer per
    # forward pass: the prompt once and every generated token, in the warm-up alone
    summed = (PROMPT + TOKENS) * SHAPE.num_layers * 2 * SHAPE.hidden_size * 2
    for r in range(2):
        rx, tx = lab.counters(r, "thunderbolt0")
        assert rx - before[r][0] >= summed and tx - before[r][1] >= summed, (r, before[r], (rx, tx))
