"""Whole-process cost of `ckpttool inspect` against its floor and against `torch.load(mmap=True)`.

Why whole processes: a user pays interpreter start-up, imports and page faults, not just the parse. Each
contender runs in its own child; wall time comes from a monotonic clock around the child, CPU time and peak RSS
from ``os.wait4`` (the kernel's figures for that child alone). The checkpoint is built once in a temporary
directory (about 1 GB by default: ~750 tensors plus AdamW exp_avg/exp_avg_sq), so nothing large is committed.

The budget is stated against a floor measured on the same machine, so it means the same on a fast laptop and
a loaded CI runner: the floor is Python plus ckpttool's restricted unpickler running the file's ``data.pkl``
(the least any reader that never trusts the pickle must do). ``python -c pass`` is shown too.

Before measuring, ckpttool's modules are compiled to bytecode (as ``pip install`` does; a checkout run with
``PYTHONDONTWRITEBYTECODE`` would otherwise recompile every module on every run) and each contender runs once
unmeasured (page cache, and ckpttool's parsed-spec cache, see ckpttool/datacache.py); the measured runs go
round-robin over the contenders, so drift in the machine's speed hits them all alike.

Run: ``make bench`` or ``python benchmarks/bench_inspect.py [--gb 1.0] [--repeat 5] [--keep DIR]``.
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

# Budgets for the 1 GB file (issue 16): wall time at most 3x the floor (0.15 s where the floor is 0.05 s), peak
# RSS at most 40 MB, and at least 5x faster than torch.load(mmap=True).
BUDGET_FLOOR_RATIO = 3.0
BUDGET_MB = 40.0
BUDGET_SPEEDUP = 5.0

FLOOR = """
import sys, zipfile
from ckpttool.formats.pickle_vm import run_pickle
with zipfile.ZipFile(sys.argv[1]) as zf:
    data = zf.read(next(n for n in zf.namelist() if n.endswith("/data.pkl")))
run_pickle(data, 0, lambda pid: pid)
"""


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
    "python -c pass": [sys.executable, "-c", "pass"],
    "floor: unpickle data.pkl": [sys.executable, "-c", FLOOR, "{path}"],
    "ckpttool inspect": [sys.executable, "-m", "ckpttool", "inspect", "{path}"],
    "ckpttool inspect --json": [sys.executable, "-m", "ckpttool", "inspect", "{path}", "--json"],
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


def measure_child(argv: list[str]) -> tuple[float, float, float]:
    """Run one child; return (wall seconds, CPU seconds user+system, peak RSS in MB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{argv[:4]} failed with exit {proc.returncode}: {err.strip()}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0


def measure(argv: list[str]) -> tuple[float, float]:
    """Run one child; return (wall seconds, peak RSS in MB)."""
    wall, _, rss = measure_child(argv)
    return wall, rss


def drop_page_cache_hint(path: Path) -> None:
    """Read the file once so every contender starts from the same (warm) page cache. Through one small buffer:
    a child's ru_maxrss starts from this process's peak (it is recorded when the child execs), so this process
    must never grow."""
    buf = bytearray(1 << 20)
    with open(path, "rb", buffering=0) as fh:
        while fh.readinto(buf):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="checkpoint size in GB (default 1.0)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per contender; the median is shown")
    parser.add_argument("--keep", type=Path, help="build the checkpoint in this directory and keep it")
    parser.add_argument("--no-torch", action="store_true", help="leave out the two torch.load contenders")
    args = parser.parse_args()

    # In a child, like everything else here: this process must stay small (see the note on ru_maxrss below).
    compile_code = (
        "import ckpttool, compileall, pathlib; "
        "compileall.compile_dir(pathlib.Path(ckpttool.__file__).parent, quiet=1)"
    )
    subprocess.run([sys.executable, "-c", compile_code], check=True)
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
        argvs = {
            name: [a.replace("{path}", str(path)) for a in template]
            for name, template in CONTENDERS.items()
            if not (args.no_torch and name.startswith("torch"))
        }
        for argv in argvs.values():
            measure_child(argv)  # unmeasured: warm caches
        # Round-robin: each repeat runs every contender once, so a machine that speeds up or slows down during
        # the run (other jobs, frequency scaling) moves the floor and ckpttool alike instead of skewing the ratio.
        runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in argvs}
        for _ in range(args.repeat):
            for name, argv in argvs.items():
                runs[name].append(measure_child(argv))
        results: dict[str, tuple[float, float, float]] = {
            name: tuple(statistics.median(r[i] for r in rs) for i in range(3))  # type: ignore[misc]
            for name, rs in runs.items()
        }

    floor_t, floor_c, _ = results["floor: unpickle data.pkl"]
    ours_t, ours_c, ours_m = results["ckpttool inspect"]
    print(
        f"\n{'process':<26}{'wall s':>8}{'cpu s':>8}{'peak RSS MB':>13}{'wall x floor':>14}{'wall x ours':>13}"
    )
    for name, (wall, cpu, rss) in results.items():
        print(f"{name:<26}{wall:>8.3f}{cpu:>8.3f}{rss:>13.1f}{wall / floor_t:>14.2f}{wall / ours_t:>13.2f}")
    ratio = ours_t / floor_t
    line = (
        f"\nbudgets for inspect: wall {ours_t:.3f} s = {ratio:.2f}x the floor ({floor_t:.3f} s; cpu "
        f"{ours_c / floor_c:.2f}x) (<= {BUDGET_FLOOR_RATIO:.1f}x) {'ok' if ratio <= BUDGET_FLOOR_RATIO else 'OVER'}; "
        f"peak RSS {ours_m:.1f} MB (<= {BUDGET_MB:.0f}) {'ok' if ours_m <= BUDGET_MB else 'OVER'}"
    )
    if "torch.load(mmap=True)" in results:
        mmap_t = results["torch.load(mmap=True)"][0]
        speedup = mmap_t / ours_t
        line += (
            f"; {speedup:.1f}x faster than torch.load(mmap=True) (>= {BUDGET_SPEEDUP:.0f}x) "
            f"{'ok' if speedup >= BUDGET_SPEEDUP else 'UNDER'}"
        )
    print(line)


if __name__ == "__main__":
    main()
