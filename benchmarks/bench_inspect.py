"""Whole-process cost of `ckpttool inspect` against `torch.load(mmap=True)` and a plain `torch.load`.

Why whole processes: a user pays interpreter start-up, imports and page faults, not just the parse. Each
contender runs in its own child; wall time comes from a monotonic clock around the child, peak RSS from
``os.wait4`` (the kernel's ru_maxrss for that child alone). The checkpoint is built once in a temporary
directory (about 1 GB by default: ~750 tensors plus AdamW exp_avg/exp_avg_sq), so nothing large is committed.

Run: ``make bench`` or ``python benchmarks/bench_inspect.py [--gb 1.0] [--repeat 3] [--keep DIR]``.
Numbers are printed, never asserted: timings vary by machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_SECONDS = 0.3
BUDGET_MB = 80.0
BUDGET_SPEEDUP = 5.0


def build_checkpoint(path: Path, total_gb: float, n_tensors: int = 750, seed: int = 0) -> int:
    """Write a G-style training bundle: model + AdamW state (3x the parameter bytes) + step/epoch."""
    import torch

    param_bytes = total_gb * 1e9 / 3
    per_tensor = int(param_bytes / 4 / (n_tensors * 4 // 5))  # the biases are negligible
    side = max(1, int(per_tensor**0.5))
    gen = torch.Generator().manual_seed(seed)
    model = {}
    for i in range(n_tensors):
        # Mix big matrices with the small biases real networks carry, so the tensor count is realistic.
        if i % 5 == 4:
            model[f"dec.resblocks.{i}.bias"] = torch.zeros(side)
        else:
            model[f"enc_p.encoder.attn_layers.{i}.conv_q.weight"] = torch.empty(side, side).normal_(
                generator=gen
            )
    names = list(model)
    state = {
        i: {"step": torch.tensor(10.0), "exp_avg": torch.zeros_like(t), "exp_avg_sq": torch.zeros_like(t)}
        for i, t in enumerate(model.values())
    }
    groups = [
        {
            "lr": 1e-4,
            "betas": (0.8, 0.99),
            "eps": 1e-9,
            "weight_decay": 0.01,
            "amsgrad": False,
            "foreach": None,
            "maximize": False,
            "capturable": False,
            "differentiable": False,
            "fused": None,
            "params": list(range(len(names))),
        }
    ]
    bundle = {
        "model": model,
        "optimizer": {"state": state, "param_groups": groups},
        "iteration": 10,
        "learning_rate": 1e-4,
    }
    torch.save(bundle, path)
    return len(model) + sum(len(s) for s in state.values())


CONTENDERS = {
    "ckpttool inspect": [sys.executable, "-m", "ckpttool", "inspect", "{path}", "--json"],
    "torch.load(mmap=True)": [
        sys.executable,
        "-c",
        "import sys, torch; torch.load(sys.argv[1], mmap=True, weights_only=True, map_location='cpu')",
        "{path}",
    ],
    "torch.load": [
        sys.executable,
        "-c",
        "import sys, torch; torch.load(sys.argv[1], weights_only=True, map_location='cpu')",
        "{path}",
    ],
}


def measure(argv: list[str]) -> tuple[float, float]:
    """Run one child; return (wall seconds, peak RSS in MB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{argv[:4]} failed with exit {proc.returncode}: {err.strip()}")
    return wall, usage.ru_maxrss / 1024.0


def drop_page_cache_hint(path: Path) -> None:
    """Read the file once so every contender starts from the same (warm) page cache."""
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="checkpoint size in GB (default 1.0)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender; the median is shown")
    parser.add_argument("--keep", type=Path, help="build the checkpoint in this directory and keep it")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ckpttool-bench-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "G_bench.pth"
        if not path.exists():
            # Built in a child: Linux carries a parent's peak RSS into the ru_maxrss of every child it
            # starts later, so this process must never hold the checkpoint in memory itself.
            t0 = time.perf_counter()
            code = (
                f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
                f"import bench_inspect as b, pathlib; print(b.build_checkpoint(pathlib.Path({str(path)!r}), "
                f"{args.gb}))"
            )
            built = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
            n = int(built.stdout)
            print(
                f"built {path.name}: {path.stat().st_size / 1e9:.2f} GB, {n} tensors "
                f"in {time.perf_counter() - t0:.1f} s"
            )
        drop_page_cache_hint(path)
        results: dict[str, tuple[float, float]] = {}
        for name, template in CONTENDERS.items():
            argv = [a.replace("{path}", str(path)) for a in template]
            runs = [measure(argv) for _ in range(args.repeat)]
            results[name] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))

    ours_t, ours_m = results["ckpttool inspect"]
    print(f"\n{'process':<24}{'wall s':>9}{'peak RSS MB':>13}{'time x ours':>13}{'RSS x ours':>12}")
    for name, (wall, rss) in results.items():
        print(f"{name:<24}{wall:>9.3f}{rss:>13.1f}{wall / ours_t:>13.1f}{rss / ours_m:>12.1f}")
    mmap_t = results["torch.load(mmap=True)"][0]
    print(
        f"\nbudgets: wall {ours_t:.3f} s (< {BUDGET_SECONDS}) "
        f"{'ok' if ours_t < BUDGET_SECONDS else 'OVER'}; "
        f"peak RSS {ours_m:.1f} MB (< {BUDGET_MB:.0f}) {'ok' if ours_m < BUDGET_MB else 'OVER'}; "
        f"{mmap_t / ours_t:.1f}x faster than torch.load(mmap=True) (>= {BUDGET_SPEEDUP:.0f}x) "
        f"{'ok' if mmap_t / ours_t >= BUDGET_SPEEDUP else 'UNDER'}"
    )


if __name__ == "__main__":
    main()
