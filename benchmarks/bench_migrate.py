"""Peak memory of `ckpttool migrate` on a ~600 MB GPT-SoVITS v2 G training file (51 M params + AdamW state).

Why: migration must stream its input (one source tensor at a time) and hold the output once, so the peak should
be near the output size plus the torch runtime, not input + output (DESIGN.md). The G file is built from
ckpttool's own gpt-sovits-s2-g spec at the real v2 widths, in a child process (Linux carries a parent's peak
RSS into its later children's ru_maxrss). Printed, never asserted.

Run: ``make bench`` or ``python benchmarks/bench_migrate.py``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_inspect import measure

BUILD = """
import sys, torch
from ckpttool.specs import get_spec
spec = get_spec("gpt-sovits-s2-g")
tensors = spec.expand(spec.defaults("v2"))
gen = torch.Generator().manual_seed(0)
model = {t.name: torch.empty(t.shape).normal_(0, 0.02, generator=gen) for t in tensors}
params = [t.name for t in tensors if not t.buffer]
state = {i: {"step": torch.tensor(100.0), "exp_avg": torch.zeros_like(model[n]),
             "exp_avg_sq": torch.zeros_like(model[n])} for i, n in enumerate(params)}
group = {"lr": 1e-4, "betas": [0.8, 0.99], "eps": 1e-9, "weight_decay": 0.01, "amsgrad": False,
         "maximize": False, "foreach": None, "capturable": False, "differentiable": False, "fused": None,
         "params": list(range(len(params)))}
torch.save({"model": model, "iteration": 10, "optimizer": {"state": state, "param_groups": [group]},
            "learning_rate": 1e-4}, sys.argv[1])
"""

LOAD_ONLY = "import sys, torch; torch.load(sys.argv[1], weights_only=True)"


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    with tempfile.TemporaryDirectory(prefix="ckpttool-bench-migrate-") as tmp:
        src, out = Path(tmp) / "G_10.pth", Path(tmp) / "G_10_migrated.pth"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", BUILD, str(src)], check=True)
        size_mb = src.stat().st_size / 2**20
        print(f"built {src.name}: {size_mb:.0f} MB in {time.perf_counter() - t0:.1f} s")
        cmd = [sys.executable, "-m", "ckpttool", "migrate", str(src), "-o", str(out), "--json",
               "--set", "model.inter_channels=256", "--set", "model.gin_channels=768"]  # fmt: skip
        ours = measure(cmd)
        out_mb = out.stat().st_size / 2**20
        load = measure([sys.executable, "-c", LOAD_ONLY, str(src)])
        floor = measure([sys.executable, "-c", "import torch"])
    print(f"\n{'process':<34}{'wall s':>9}{'peak RSS MB':>13}")
    for name, (wall, rss) in (("ckpttool migrate", ours), ("torch.load of the input alone", load),
                              ("import torch", floor)):  # fmt: skip
        print(f"{name:<34}{wall:>9.2f}{rss:>13.1f}")
    print(
        f"\ninput {size_mb:.0f} MB, output {out_mb:.0f} MB; migrate peak {ours[1]:.0f} MB = "
        f"{ours[1] - floor[1]:.0f} MB above `import torch` ({(ours[1] - floor[1]) / out_mb:.2f} x the output)"
    )


if __name__ == "__main__":
    main()
