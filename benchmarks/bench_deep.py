"""What ``ckpttool inspect --deep`` costs per GB, against a plain ``inspect`` and a ``torch.load``.

``--deep`` reads every byte behind the tensors: a torch zip's members are checked against their CRC-32s (which
torch never checks), other formats are read in full. The same ~1 GB G-style bundle as bench_inspect.py is
written as a torch zip and as a safetensors file (built once in children, in a temporary directory); each
contender runs in its own child process with a warm page cache, wall time from a monotonic clock, peak RSS
from ``os.wait4``.

Run: ``python benchmarks/bench_deep.py [--gb 1.0] [--repeat 3] [--keep DIR]``. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inspect import drop_page_cache_hint, measure

BUILD = (
    "import sys, pathlib; sys.path.insert(0, {here!r}); import bench_inspect as b, torch\n"
    "p = pathlib.Path({pth!r})\n"
    "if not p.exists(): b.build_checkpoint(p, {gb})\n"
    "s = pathlib.Path({st!r})\n"
    "if not s.exists():\n"
    "    from safetensors.torch import save_file\n"
    "    sd = torch.load(p, mmap=True, weights_only=True)\n"
    "    flat = dict(sd['model'])\n"
    "    for i, st in sd['optimizer']['state'].items():\n"
    "        flat.update({{f'optimizer.state.{{i}}.{{k}}': v for k, v in st.items()}})\n"
    "    save_file(flat, s)\n"
)


def contenders(path: Path) -> dict[str, list[str]]:
    ck = [sys.executable, "-m", "ckpttool", "inspect", str(path), "--json"]
    return {
        "inspect": ck,
        "inspect --deep": [*ck, "--deep"],
        "torch.load": [
            sys.executable,
            "-c",
            "import sys, torch\n"
            "if sys.argv[1].endswith('.safetensors'):\n"
            "    from safetensors.torch import load_file; load_file(sys.argv[1])\n"
            "else:\n"
            "    torch.load(sys.argv[1], weights_only=True, map_location='cpu')",
            str(path),
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="checkpoint size in GB (default 1.0)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender; the median is shown")
    parser.add_argument("--keep", type=Path, help="build the files in this directory and keep them")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ckpttool-bench-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        pth, st = folder / "G_bench.pth", folder / "G_bench.safetensors"
        t0 = time.perf_counter()
        code = BUILD.format(here=str(Path(__file__).resolve().parent), pth=str(pth), st=str(st), gb=args.gb)
        subprocess.run([sys.executable, "-c", code], check=True)
        print(f"files ready in {time.perf_counter() - t0:.1f} s")
        print(f"\n{'file':<22}{'process':<16}{'wall s':>9}{'peak RSS MB':>13}{'s per GB':>10}")
        for path in (pth, st):
            gb = path.stat().st_size / 1e9
            drop_page_cache_hint(path)
            for name, argv in contenders(path).items():
                runs = [measure(argv) for _ in range(args.repeat)]
                wall, rss = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
                print(f"{path.name:<22}{name:<16}{wall:>9.3f}{rss:>13.1f}{wall / gb:>10.3f}")


if __name__ == "__main__":
    main()
