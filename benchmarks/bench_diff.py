"""Peak memory of `ckpttool diff --values` on two ~1 GB checkpoints, against the file size and a torch.load diff.

Why: comparing values must stream one tensor pair at a time, so memory stays near the largest tensor, not the
file (DESIGN.md). Each contender runs in its own child; peak RSS comes from ``os.wait4``. The two checkpoints
(same layout, different seeds) are built by a child too, so this process stays small (Linux carries a parent's
peak RSS into its later children's ru_maxrss).

Run: ``make bench`` or ``python benchmarks/bench_diff.py [--gb 1.0]``. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_inspect import measure

TORCH_DIFF = """
import sys, torch
a = torch.load(sys.argv[1], mmap=True, weights_only=True)["model"]
b = torch.load(sys.argv[2], mmap=True, weights_only=True)["model"]
print(max(float((a[k].double() - b[k].double()).abs().max()) for k in a))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="size of each checkpoint in GB (default 1.0)")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="ckpttool-bench-diff-") as tmp:
        paths = [Path(tmp) / "G_a.pth", Path(tmp) / "G_b.pth"]
        t0 = time.perf_counter()
        for seed, path in enumerate(paths):
            code = (
                f"import sys; sys.path.insert(0, {str(here)!r}); import bench_inspect as b, pathlib; "
                f"b.build_checkpoint(pathlib.Path({str(path)!r}), {args.gb}, seed={seed})"
            )
            subprocess.run([sys.executable, "-c", code], check=True)
        size_mb = paths[0].stat().st_size / 2**20
        print(f"built 2 x {size_mb / 1024:.2f} GB in {time.perf_counter() - t0:.1f} s")
        ours = measure([sys.executable, "-m", "ckpttool", "diff", *map(str, paths), "--values", "--json"])
        theirs = measure([sys.executable, "-c", TORCH_DIFF, *map(str, paths)])
        floor = measure([sys.executable, "-c", "import torch"])
    print(f"\n{'process':<36}{'wall s':>9}{'peak RSS MB':>13}{'RSS / file':>12}")
    rows = (
        ("ckpttool diff --values", ours),
        ("torch.load(mmap) both + max|a-b|", theirs),
        ("import torch", floor),
    )
    for name, (wall, rss) in rows:
        print(f"{name:<36}{wall:>9.2f}{rss:>13.1f}{rss / size_mb:>12.2f}")
    print(f"\npeak RSS of ckpttool diff --values: {ours[1]:.0f} MB for two {size_mb:.0f} MB files "
          f"({ours[1] / size_mb:.0%} of one file; {ours[1] - floor[1]:.0f} MB above a bare `import torch`)")  # fmt: skip


if __name__ == "__main__":
    main()
