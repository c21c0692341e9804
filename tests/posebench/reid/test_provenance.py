"""What reid-augment records and prints about its generator, its seeds and its departures from docs/reid.md (no
training: the functions the runner calls, on small inputs)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from posebench.errors import PosebenchError
from posebench.reid.provenance import (
    UNKNOWN,
    MarketCounts,
    check_dataset,
    describe_generator,
    protocol_deviations,
    reposedm_training,
)
from posebench.reid.summary import aggregate, cell, plot, plot_note, print_summary

FULL = MarketCounts(12_936, 751, 3_368, 15_913)
CANONICAL = {"epochs": 60, "pretrained": True, "image_size": (256, 128), "max_images": None}


# ---------------------------------------------------------------------------------------------- generator data


def test_generator_kinds() -> None:
    none = describe_generator("none")
    assert (none.train_set, none.dataset, none.caveat) == ("none", None, None)
    copy = describe_generator("copy-source")
    assert copy.train_set == "none" and copy.caveat is None and "copies of D_tr images" in copy.description
    for kind in ("folder", "shell", "reposedm"):  # reposedm without its config: nothing known
        g = describe_generator(kind)
        assert g.train_set == "unknown" and g.dataset is None
        assert g.description == "unknown: posebench cannot tell what the generator was trained on"
        assert "may leak identities beyond it" in g.caveat


def test_reposedm_market_config(tmp_path: Path) -> None:
    cfg = tmp_path / "run" / "checkpoints" / "checkpoint-000100" / "run_config.json"
    g = reposedm_training(tmp_path / "run", cfg, "market-128-full", (128, 64))
    assert g.dataset == "market" and g.train_set == "unknown"  # the run does not record its split
    assert g.evidence == f"{cfg}: config 'market-128-full' at 128x64 (protocol market-128x64's size)"
    assert g.description == (f"Market-1501 (run {tmp_path / 'run'}, {g.evidence}); the run does not record which "
                             "Market-1501 images it was trained on")
    assert "whole Market-1501 training set" in g.caveat and "may leak identities beyond the subset" in g.caveat
    assert check_dataset(g, "reposedm:run", allow_other_dataset=False) is None


def test_reposedm_recorded_training_data_wins_over_the_config(tmp_path: Path) -> None:
    """A run that records its data (training_data.json) is described by that record, whatever its config's name."""
    cfg = tmp_path / "run" / "checkpoints" / "checkpoint-000100" / "run_config.json"
    record_path = tmp_path / "run" / "training_data.json"
    market = {"sources": [{"dataset": "market", "split": "train", "root": "/data/market", "pairs": 263_631}]}
    g = reposedm_training(tmp_path / "run", cfg, "tiny-full", (32, 22), market, record_path)
    assert (g.train_set, g.dataset) == ("recorded", "market")
    assert g.evidence == f"{record_path}: trained on Market-1501 split 'train' of /data/market (263631 pairs)"
    assert "whole Market-1501 training set" in g.caveat
    assert check_dataset(g, "reposedm:run", allow_other_dataset=False) is None
    deepfashion = {"sources": [{"dataset": "deepfashion", "split": "train", "root": "/d", "pairs": 9}]}
    g = reposedm_training(tmp_path / "run", cfg, "market-128-full", (128, 64), deepfashion, record_path)
    assert (g.train_set, g.dataset) == ("other-dataset", "deepfashion")
    with pytest.raises(PosebenchError, match="trained on DeepFashion, not Market-1501"):
        check_dataset(g, "reposedm:run", allow_other_dataset=False)
    # an empty record (or none) falls back to the config
    assert reposedm_training("run", cfg, "market-128-full", (128, 64), {}, record_path).train_set == "unknown"


@pytest.mark.parametrize(("name", "size", "dataset", "train_set", "needle"), [
    ("deepfashion-256-b1", (256, 176), "deepfashion", "other-dataset", "DeepFashion, not Market-1501"),
    ("deepfashion-512-full", (512, 352), "deepfashion", "other-dataset", "DeepFashion, not Market-1501"),
    ("my-experiment", (256, 176), "deepfashion", "other-dataset", "(protocol deepfashion-256x176's size)"),
    ("my-experiment", (128, 64), "market", "unknown", "(protocol market-128x64's size)"),
    ("tiny-b1", (32, 22), None, "unknown", f"{UNKNOWN} (config 'tiny-b1' at 32x22 names no dataset)"),
    ("market-128-b1", (256, 176), None, "unknown",
     f"{UNKNOWN} (the name of config 'market-128-b1' is Market-1501's, its 256x176 resolution DeepFashion's)"),
])
def test_reposedm_dataset_from_config(tmp_path: Path, name: str, size: tuple[int, int], dataset: str | None,
                                      train_set: str, needle: str) -> None:
    g = reposedm_training("run", tmp_path / "run_config.json", name, size)
    assert (g.dataset, g.train_set) == (dataset, train_set)
    assert needle in g.description or needle in (g.evidence or "")


def test_other_dataset_refused_unless_allowed(tmp_path: Path) -> None:
    cfg = tmp_path / "r" / "run_config.json"
    g = reposedm_training(tmp_path / "r", cfg, "deepfashion-256-full", (256, 176))
    with pytest.raises(PosebenchError) as exc:
        check_dataset(g, f"reposedm:{tmp_path / 'r'}", allow_other_dataset=False)
    msg = str(exc.value)
    assert msg.startswith(f"generator reposedm:{tmp_path / 'r'}: the run was trained on DeepFashion, not Market-1501 "
                          f"({cfg}: config 'deepfashion-256-full' at 256x176")
    assert "--allow-other-dataset" in msg
    assert check_dataset(g, "reposedm:r", allow_other_dataset=True) == (
        "generator trained on DeepFashion, not Market-1501 (--allow-other-dataset)")


# ---------------------------------------------------------------------------------------------- canonical


def test_canonical_run_has_no_reasons() -> None:
    assert protocol_deviations("m", FULL, **CANONICAL) == []


def test_every_departure_is_named() -> None:
    reasons = protocol_deviations("/d/m", MarketCounts(24, 6, 12, 30), epochs=1, pretrained=False,
                                  image_size=(64, 32), max_images=12)
    assert reasons == [
        "Market-1501 root /d/m holds 24 training images of 6 identities, not the full 12,936 of 751",
        "Market-1501 root /d/m holds 12 query and 30 gallery images, not 3,368 and 15,913",
        "--max-images 12: only the first 12 training, query and gallery images",
        "1 epoch, not 60",
        "random initialisation (--no-pretrained), not ImageNet weights",
        "input 64x32, not 256x128",
    ]
    # a full training set with a cut query set is still named
    assert protocol_deviations("m", MarketCounts(12_936, 751, 3_000, 15_913), **CANONICAL) == [
        "Market-1501 root m holds 3,000 query and 15,913 gallery images, not 3,368 and 15,913"]


# ---------------------------------------------------------------------------------------------- seeds


def _run(method: str, seed: int, m: float) -> dict:
    return {"method": method, "fraction": 0.2, "seed": seed,
            "metrics": {"mAP": m, "rank1": m + 0.1, "rank5": m + 0.15, "rank10": m + 0.2}}


def test_one_seed_has_no_spread() -> None:
    (row,) = aggregate([_run("Standard", 0, 0.783)], ["Standard"], [0.2])
    assert row["n_seeds"] == 1 and row["seeds"] == [0]
    assert row["mAP_mean"] == 0.783 and all(row[f"{m}_std"] is None for m in ("mAP", "rank1", "rank5", "rank10"))
    assert cell(row, "mAP") == "78.3 (1 seed)" and cell(row, "rank1") == "88.3"


def test_several_seeds_give_the_sample_std() -> None:
    (row,) = aggregate([_run("Standard", s, m) for s, m in ((0, 0.70), (1, 0.72), (2, 0.77))], ["Standard"], [0.2])
    assert row["n_seeds"] == 3 and math.isclose(row["mAP_mean"], 0.73)
    # sample std (n - 1): sqrt(((-0.03)^2 + (-0.01)^2 + 0.04^2) / 2) = sqrt(0.0013) = 0.036056
    assert math.isclose(row["mAP_std"], math.sqrt(0.0013), rel_tol=1e-9)
    assert cell(row, "mAP") == "73.0 ± 3.6"


def test_table_and_notes_printed() -> None:
    from rich.console import Console

    rows = aggregate([_run("Standard", 0, 0.783), _run("shell", 0, 0.801)], ["Standard", "shell"], [0.2])
    console = Console(record=True, width=120)
    print_summary(rows, console, describe_generator("shell"), "shell", ["1 epoch, not 60"])
    text = console.export_text()
    body = [line for line in text.splitlines() if line.startswith("│")]
    assert [line.split("│")[4].strip() for line in body] == ["78.3 (1 seed)", "80.1 (1 seed)"]
    assert not any("±" in line for line in body)
    assert "Note: one seed: no spread shown; several seeds (e.g. --seeds 0,1,2) give mean ± std." in text
    assert "Generator trained on: unknown: posebench cannot tell what the generator was trained on." in text
    assert "Caveat: if it saw Market-1501 training images outside the subset" in text
    assert "Non-canonical (1 departure from docs/reid.md): 1 epoch, not 60." in text

    console = Console(record=True, width=120)
    print_summary(rows, console, describe_generator("none"), "none", [])
    text = console.export_text()
    assert "Generator" not in text and "Caveat" not in text and "Non-canonical" not in text


# ---------------------------------------------------------------------------------------------- plot


PUBLISHED = [{"method": "PIDM", "points": [(0.2, 61.5), (0.4, 70.0)]}]


def _plot_text(tmp_path: Path, canonical: bool) -> dict[str, str]:
    rows = aggregate([_run("Standard", 0, 0.5), _run("copy-source", 0, 0.55)], ["Standard", "copy-source"], [0.2])
    path = tmp_path / f"plot_{canonical}.png"
    plot(rows, ["Standard", "copy-source"], path, PUBLISHED, plot_note(0 if canonical else 2, 6, 1, (64, 32)),
         draw_published=canonical)
    with Image.open(path) as im:
        return dict(im.text)


def test_plot_marks_a_non_canonical_run_and_leaves_the_published_curves_out(tmp_path: Path) -> None:
    text = _plot_text(tmp_path, canonical=False)
    assert text["Title"] == "Market-1501 re-ID augmentation"
    assert text["Description"] == ("non-canonical run (2 departures from docs/reid.md): 6 ids, 1 epoch, 64x32\n"
                                   "not comparable with the published curves (left out)\nseries: Standard; copy-source")


def test_plot_labels_the_published_curves_as_another_setup(tmp_path: Path) -> None:
    text = _plot_text(tmp_path, canonical=True)
    assert text["Description"] == ("published curves: another, unknown re-ID setup; compare gains over Standard, "
                                   "not mAP\nseries: Standard; copy-source; PIDM published (other setup)")


# ---------------------------------------------------------------------------------------------- torchreid


def test_torchreid_cython_warning_silenced_only_at_its_import() -> None:
    plain = subprocess.run([sys.executable, "-W", "always", "-c", "import torchreid"], capture_output=True, text=True,
                           timeout=300)
    if "Cython evaluation (very fast so highly recommended) is unavailable" not in plain.stderr:
        pytest.skip("this torchreid does not warn about its ranking extension (a compiled build)")
    code = ("import warnings\n"
            "warnings.simplefilter('always')\n"
            "from posebench.reid.runner import _torchreid\n"
            "_torchreid()\n"
            "warnings.warn('another warning still shows')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Cython" not in proc.stderr
    assert "UserWarning: another warning still shows" in proc.stderr
