"""Reading and validating full-size DeepFashion annotation and pair files (issue target: under 2 s).

Builds files of the real size from the real image lists in shared/data (52,712 annotations; pairs drawn
within identities up to the published counts, 101,966 train + 8,570 test), then times
`posebench.datasets.deepfashion.load_index` (which reads, validates and cross-checks everything) and
reports peak Python memory. Images are not needed: reading never touches them.

    .venv/bin/python benchmarks/read_deepfashion.py [--shared ../shared/data/deepfashion]
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

import numpy as np

from posebench.datasets import deepfashion
from posebench.datasets.names import parse_deepfashion
from posebench.datasets.problems import ProblemLog

TARGET_PAIRS = {"train": 101_966, "test": 8_570}


def build(root: Path, shared: Path) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        names = [n.strip() for n in (shared / f"{split}.lst").read_text().splitlines() if n.strip()]
        (root / f"{split}.lst").write_text("\n".join(names) + "\n")
        by_id = defaultdict(list)
        for n in names:
            by_id[parse_deepfashion(n).identity].append(n)
        all_pairs = [p for group in by_id.values() for p in itertools.permutations(group, 2)]
        keep = rng.permutation(len(all_pairs))[: TARGET_PAIRS[split]]
        rows = ["from,to"] + [",".join(all_pairs[i]) for i in sorted(keep)]
        (root / f"fasion-resize-pairs-{split}.csv").write_text("\n".join(rows) + "\n")
        ann = ["name:keypoints_y:keypoints_x"]
        for n in names:
            ys = rng.integers(0, 256, 18)
            xs = rng.integers(0, 176, 18)
            miss = rng.random(18) < 0.15
            ys[miss] = -1
            xs[miss] = -1
            ann.append(f"{n}:{json.dumps(ys.tolist())}:{json.dumps(xs.tolist())}")
        (root / f"fasion-resize-annotation-{split}.csv").write_text("\n".join(ann) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/deepfashion")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build(root, args.shared)
        times = []
        for _ in range(3):  # best of 3: the machine is shared and noisy
            t0 = time.perf_counter()
            log = ProblemLog()
            index = deepfashion.load_index(root, log)
            times.append(time.perf_counter() - t0)
        dt = min(times)
        tracemalloc.start()  # a separate run: tracing slows Python down several times
        deepfashion.load_index(root, ProblemLog())
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        n_pairs = sum(len(s.pairs) for s in index.splits.values())
        n_ann = sum(len(s.keypoints) for s in index.splits.values())
        print(f"read+validate {n_pairs:,} pairs and {n_ann:,} annotations in {dt:.2f} s "
              f"(peak Python memory {peak / 2**20:.0f} MiB; {len(log.errors)} errors)")


if __name__ == "__main__":
    main()
