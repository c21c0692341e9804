"""Re-ID augmentation protocol (docs/reid.md): real-data subsets, generation plans, Market-1501 ranking."""

from __future__ import annotations

from posebench.reid.plan import PlanRow, make_plan, read_plan, validate_generated, write_plan
from posebench.reid.rank import RankResult, evaluate_rank, rank_details
from posebench.reid.subsets import (
    SubsetManifest,
    make_subset,
    names_sha256,
    read_subset_manifest,
    subset_size,
    write_subset_manifest,
)

__all__ = [
    "PlanRow",
    "RankResult",
    "SubsetManifest",
    "evaluate_rank",
    "make_plan",
    "make_subset",
    "names_sha256",
    "rank_details",
    "read_plan",
    "read_subset_manifest",
    "subset_size",
    "validate_generated",
    "write_plan",
    "write_subset_manifest",
]
