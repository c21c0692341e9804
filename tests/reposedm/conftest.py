"""Tiny synthetic data shared by the reference-model tests (made here, never committed)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DeepFashion-format root: 4 people x 3 poses at 64x44 (train and test pairs)."""
    from posebench.datasets.synth import synthesize

    root = tmp_path_factory.mktemp("df-synth")
    synthesize("deepfashion", root, identities=4, poses=3, size=(64, 44), seed=0, test_fraction=0.5,
               progress=False)
    return root


@pytest.fixture
def train_source(synth_root: Path):
    from reposedm.data import PairSource

    return PairSource("deepfashion", synth_root, "train")
