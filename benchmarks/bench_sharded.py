"""`ckpttool inspect` on multi-GB directory checkpoints: a Hugging Face sharded safetensors folder and a DCP folder.

Why: inspecting a directory must read only headers and metadata (the index, each shard's JSON header, DCP's
.metadata), so it costs the same on 2 GB as on 2 MB. Compared with loading the shards with safetensors and the
DCP folder with torch.distributed.checkpoint. Each contender runs in its own child; peak RSS from os.wait4.
Printed, never asserted.

Run: ``make bench`` or ``python benchmarks/bench_sharded.py [--gb 2]``.
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
import sys, torch, warnings
warnings.simplefilter("ignore")
from pathlib import Path
from huggingface_hub import save_torch_state_dict
from torch.distributed import checkpoint as dcp
out, gb = Path(sys.argv[1]), float(sys.argv[2])
gen = torch.Generator().manual_seed(0)
n = 600
side = int((gb * 1e9 / 4 / n) ** 0.5)
sd = {f"layers.{i}.weight": torch.empty(side, side).normal_(generator=gen) for i in range(n)}
(out / "sharded").mkdir()
save_torch_state_dict(sd, out / "sharded", max_shard_size="500MB")
half = dict(list(sd.items())[: n // 2])
dcp.save({"model": half, "step": 7}, checkpoint_id=str(out / "dcp"), no_dist=True)
"""

LOAD_SHARDS = """
import sys
from pathlib import Path
from safetensors.torch import load_file
for f in sorted(Path(sys.argv[1]).glob("*.safetensors")):
    load_file(str(f))
"""

LOAD_DCP = """
import sys, torch, warnings
warnings.simplefilter("ignore")
from torch.distributed import checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
md = FileSystemReader(sys.argv[1]).read_metadata()
sd = {k: torch.empty(v.size, dtype=v.properties.dtype) for k, v in md.state_dict_metadata.items()
      if hasattr(v, "size")}
dcp.load(sd, checkpoint_id=sys.argv[1], no_dist=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ckpttool-bench-sharded-") as tmp:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", BUILD, tmp, str(args.gb)], check=True)
        sharded, dcp_dir = Path(tmp) / "sharded", Path(tmp) / "dcp"
        size = lambda p: sum(f.stat().st_size for f in p.iterdir()) / 1e9  # noqa: E731
        print(f"built {size(sharded):.2f} GB in {len(list(sharded.glob('*.safetensors')))} shards and a "
              f"{size(dcp_dir):.2f} GB DCP folder in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        rows = [
            ("ckpttool inspect (sharded)", measure([sys.executable, "-m", "ckpttool", "inspect", str(sharded), "--json"])),
            ("safetensors load_file (all shards)", measure([sys.executable, "-c", LOAD_SHARDS, str(sharded)])),
            ("ckpttool inspect (DCP)", measure([sys.executable, "-m", "ckpttool", "inspect", str(dcp_dir), "--json"])),
            ("torch DCP load", measure([sys.executable, "-c", LOAD_DCP, str(dcp_dir)])),
        ]  # fmt: skip
    print(f"\n{'process':<38}{'wall s':>9}{'peak RSS MB':>13}")
    for name, (wall, rss) in rows:
        print(f"{name:<38}{wall:>9.3f}{rss:>13.1f}")


if __name__ == "__main__":
    main()
