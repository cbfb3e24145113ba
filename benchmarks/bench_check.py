"""Time `ckpttool check` on a GPT-SoVITS run folder of 20 full-size checkpoints (10 G/D pairs, v2 sizes).

Why: `check` is the gate run before every resume. It predicts what the trainer will load (its pick rule over
every file name), reads each candidate's metadata to find the newest complete state, and inspects the chosen
pair; it must stay interactive on a folder of many ~600 MB files, and it never imports torch without --verify.
The contenders are what users otherwise do: a script that `torch.load`s every file (mmap, weights_only) to find
the newest epoch, and the trainer's own load of one G/D pair (GPT-SoVITS: `torch.load(map_location="cpu")`,
utils.py load_checkpoint). The 10 saves are hard links of one built pair (the page cache is warm for all
contenders alike); each file's metadata is still read in full. Printed, never asserted.

Run: ``python benchmarks/bench_check.py [--pairs 10]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_inspect import drop_page_cache_hint, measure
from bench_verify import BUILD

SCAN = """
import sys, torch
from pathlib import Path
best = None
for p in sorted(Path(sys.argv[1]).glob("*.pth")):
    ckpt = torch.load(p, map_location="cpu", mmap=True, weights_only=True)
    best = max(best or (0, p), (ckpt["iteration"], p))
print(best)
"""

PAIR = """
import sys, torch
for p in sys.argv[1:]:
    torch.load(p, map_location="cpu", weights_only=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs", type=int, default=10, help="G/D pairs in the folder (default 10: 20 files)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender; the median is shown")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ckpttool-bench-check-") as tmp:
        run = Path(tmp) / "logs" / "exp"
        folder = run / "logs_s2_v2"
        folder.mkdir(parents=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", BUILD, str(folder)], check=True)
        for role in "GD":
            built = folder / f"{role}_233333333333.pth"
            for k in range(1, args.pairs + 1):
                os.link(built, folder / f"{role}_{k * 1000}.pth")
            built.unlink()
            drop_page_cache_hint(folder / f"{role}_1000.pth")
        files = sorted(folder.glob("*.pth"))
        size = (folder / "G_1000.pth").stat().st_size + (folder / "D_1000.pth").stat().st_size
        print(f"built {len(files)} checkpoints ({args.pairs} G/D pairs of {size / 2**20:.0f} MB) in "
              f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
        last = [str(folder / f"G_{args.pairs * 1000}.pth"), str(folder / f"D_{args.pairs * 1000}.pth")]
        contenders = {
            "ckpttool check RUN": [sys.executable, "-m", "ckpttool", "check", str(run), "--json"],
            "torch.load(mmap) of every file": [sys.executable, "-c", SCAN, str(folder)],
            "torch.load of the last G/D pair": [sys.executable, "-c", PAIR, *last],
        }
        results = {}
        for name, argv in contenders.items():
            runs = sorted(measure(argv) for _ in range(args.repeat))
            results[name] = runs[len(runs) // 2]
    base_wall, base_rss = results["ckpttool check RUN"]
    print(f"\n{'contender':<34} {'wall s':>8} {'peak MB':>9} {'x check':>8}")
    for name, (wall, rss) in results.items():
        print(f"{name:<34} {wall:>8.2f} {rss:>9.0f} {wall / base_wall:>8.1f}")
    print(f"\ncheck on {2 * args.pairs} checkpoints: {base_wall:.2f} s wall, {base_rss:.0f} MB peak RSS "
          f"(budget 2 s: {'ok' if base_wall < 2 else 'OVER'})")  # fmt: skip


if __name__ == "__main__":
    main()
