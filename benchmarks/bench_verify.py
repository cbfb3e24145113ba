"""Time `ckpttool verify-resume` on a full-size GPT-SoVITS v2 G/D pair (51 M + 47 M parameters, AdamW state).

Why: the shadow run rebuilds every parameter and optimizer state and runs N straight + N split AdamW steps on
them; on a consumer machine it must stay well within a minute at the default step count (DESIGN.md). The pair
is built from ckpttool's own specs in a child process, laid out like logs/<exp>/logs_s2_v2/. Printed, never
asserted.

Run: ``make bench`` or ``python benchmarks/bench_verify.py [--steps 4]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_inspect import measure

BUILD = """
import sys, torch
from pathlib import Path
from ckpttool.specs import get_spec
folder = Path(sys.argv[1])
gen = torch.Generator().manual_seed(0)
low = ("enc_p.text_embedding", "enc_p.encoder_text", "enc_p.mrte")   # s2_train's groups 1..3
for kind, family in (("G", "gpt-sovits-s2-g"), ("D", "gpt-sovits-s2-d")):
    spec = get_spec(family)
    tensors = spec.expand(spec.defaults("v2"))
    model = {t.name: torch.empty(t.shape).normal_(0, 0.02, generator=gen) for t in tensors}
    params = [t.name for t in tensors if not t.buffer]
    blocks = [[n for n in params if not n.startswith(low)]] if kind == "G" else [params]
    if kind == "G":
        blocks += [[n for n in params if n.startswith(p + ".")] for p in low]
    order = [n for b in blocks for n in b]
    state = {i: {"step": torch.tensor(16.0), "exp_avg": torch.zeros_like(model[n]).normal_(0, 1e-4, generator=gen),
                 "exp_avg_sq": torch.full_like(model[n], 1e-8)} for i, n in enumerate(order)}
    groups, start = [], 0
    for k, b in enumerate(blocks):
        lr = 1e-4 * (0.4 if k else 1.0) * 0.999875 ** 8
        groups.append({"lr": lr, "initial_lr": lr / 0.999875 ** 8, "betas": [0.8, 0.99], "eps": 1e-9,
                       "weight_decay": 0.01, "amsgrad": False, "maximize": False, "foreach": None,
                       "capturable": False, "differentiable": False, "fused": None,
                       "params": list(range(start, start + len(b)))})
        start += len(b)
    torch.save({"model": model, "iteration": 8, "optimizer": {"state": state, "param_groups": groups},
                "learning_rate": 1e-4}, folder / f"{kind}_233333333333.pth")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ckpttool-bench-verify-") as tmp:
        folder = Path(tmp) / "logs" / "exp" / "logs_s2_v2"
        folder.mkdir(parents=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", BUILD, str(folder)], check=True)
        g, d = folder / "G_233333333333.pth", folder / "D_233333333333.pth"
        print(f"built G {g.stat().st_size / 2**20:.0f} MB and D {d.stat().st_size / 2**20:.0f} MB "
              f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        out = Path(tmp) / "report.json"
        cmd = [sys.executable, "-c",
               f"import sys; sys.argv = ['ckpttool', 'verify-resume', {str(g)!r}, {str(d)!r}, '--json', "
               f"'--steps', '{args.steps}', '--device', 'cpu']; "
               f"from ckpttool.cli import main; sys.stdout = open({str(out)!r}, 'w'); main()"]  # fmt: skip
        wall, rss = measure(cmd)
        report = json.loads(out.read_text())
    runs = report["shadow_runs"]
    params = sum(r["parameters"] for r in runs)
    print(f"\nverify-resume (static checks + shadow run, {args.steps} steps, cpu): {wall:.1f} s wall, "
          f"{rss:.0f} MB peak RSS; {params:,} parameters")  # fmt: skip
    for r in runs:
        print(f"  {Path(r['path']).name}: shadow run {r['seconds']:.1f} s, exact reload identical: "
              f"{r['exact_reload']['identical']}, trainer reload identical: "
              f"{r['trainer_reload']['identical'] if r['trainer_reload'] else None}")  # fmt: skip
    print(f"verified: {report['verified']}; budget 60 s: {'ok' if wall < 60 else 'OVER'}")


if __name__ == "__main__":
    main()
