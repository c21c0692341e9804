"""The human-study tests share one synthetic world: three methods scored by `posebench eval` (tests/studykit.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def study_world(tmp_path_factory):
    from studykit import synth_world

    base = tmp_path_factory.mktemp("study-world")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POSEBENCH_HOME", str(base / "home"))
        return synth_world(base)


@pytest.fixture(scope="session")
def small_study(study_world, tmp_path_factory):
    """A small study built once (13 + 4 items); tests that write answers copy it (`fresh_study`)."""
    from studykit import make_small

    return make_small(study_world, tmp_path_factory.mktemp("small") / "study")


@pytest.fixture
def fresh_study(small_study, tmp_path):
    """A copy of the small study of this test's own (a copy keeps every file, so its manifest still matches)."""
    import shutil

    return shutil.copytree(small_study, tmp_path / "study")
