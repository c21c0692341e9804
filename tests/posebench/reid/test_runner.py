"""End to end: `posebench reid-augment` on a tiny synthetic Market-1501 (CPU, seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from posebench.cli import app
from posebench.datasets.synth import synthesize

runner = CliRunner()

TINY = ["--fractions", "0.5", "--seeds", "0", "--epochs", "1", "--image-size", "64x32", "--no-pretrained",
        "--max-images", "12"]


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("market") / "market"
    synthesize("market", root, identities=6, poses=3, seed=0, progress=False)
    return root


def _invoke(*args: str):
    return runner.invoke(app, ["reid-augment", *args])


def _flat(text: str) -> str:
    return " ".join(text.split())


# What the tiny smoke root departs from (docs/reid.md): its few images, --max-images, 1 epoch, 64x32, random init.
def _smoke_reasons(market: Path) -> list[str]:
    from posebench.reid.runner import _labelled, _list_images

    train = _labelled(market / "bounding_box_train", _list_images(market / "bounding_box_train"),
                      keep_distractors=False)
    n_train, n_ids = len(train), len({pid for _, pid, _ in train})
    n_query = len(_labelled(market / "query", _list_images(market / "query"), keep_distractors=False))
    n_gallery = len(_labelled(market / "bounding_box_test", _list_images(market / "bounding_box_test"),
                              keep_distractors=True))
    return [f"Market-1501 root {market} holds {n_train} training images of {n_ids} identities, not the full "
            "12,936 of 751",
            f"Market-1501 root {market} holds {n_query} query and {n_gallery} gallery images, not 3,368 and 15,913",
            "--max-images 12: only the first 12 training, query and gallery images", "1 epoch, not 60",
            "random initialisation (--no-pretrained), not ImageNet weights", "input 64x32, not 256x128"]


def test_copy_source_end_to_end_and_resume(market: Path, tmp_path: Path) -> None:
    from PIL import Image

    from posebench import __version__
    from posebench.env import versions

    out = tmp_path / "out"
    res = _invoke("--market-root", str(market), "--generator", "copy-source", "--out", str(out), *TINY)
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "results.json").read_text())
    methods = {r["method"] for r in doc["rows"]}
    assert methods == {"Standard", "copy-source"}
    for r in doc["rows"]:
        assert r["fraction"] == 0.5 and r["n_seeds"] == 1 and r["seeds"] == [0]
        assert 0.0 <= r["mAP_mean"] <= 1.0 and 0.0 <= r["rank1_mean"] <= 1.0
        assert r["mAP_std"] is None and r["rank10_std"] is None  # one seed: no spread
        assert f"{100 * r['mAP_mean']:.1f} (1 seed)" in res.output
    assert "±" not in "".join(line for line in res.output.splitlines() if line.startswith("│"))
    assert "Note: one seed: no spread shown; several seeds (e.g. --seeds 0,1,2) give mean ± std." in res.output
    assert doc["settings"]["pretrained"] is False and doc["settings"]["init"] == "random"
    # eval's schema family, another kind
    assert (doc["schema_version"], doc["kind"], doc["posebench"]) == (1, "reid-augment", __version__)
    assert doc["created"].endswith("+00:00") and doc["created"][:2] == "20"
    assert doc["canonical"] is False and doc["non_canonical_reasons"] == _smoke_reasons(market)
    assert doc["env"]["device"] == "cpu" and doc["env"]["processes"] == 1
    assert doc["env"]["torchreid"] == versions()["torchreid"] and doc["env"]["posebench"] == __version__
    assert doc["format"] == "posebench-reid-augment" and doc["versions"]["posebench"] == __version__  # kept
    # copy-source has no generator: no leakage caveat
    assert doc["generator_train_set"] == "none" and doc["leakage_caveat"] is None
    assert doc["generator_training"]["caveat"] is None
    assert ("Generator: no generator: copy-source adds copies of D_tr images, so nothing outside the subset is "
            "seen; no leakage caveat.") in res.output
    assert "whole Market-1501 training set" not in res.output
    assert _flat("Non-canonical (6 departures from docs/reid.md): " + "; ".join(_smoke_reasons(market))) in \
        _flat(res.output)
    with Image.open(out / "map_vs_fraction.png") as im:
        assert im.text["Description"] == ("non-canonical run (6 departures from docs/reid.md): 4 ids, 1 epoch, "
                                          "64x32\nnot comparable with the published curves (left out)\n"
                                          "series: Standard; copy-source")
    assert doc["published_for_reference"]["plotted"] is False
    published = doc["published_for_reference"]["rows"]
    assert {p["method"] for p in published} >= {"PIDM", "RePoseDM"}  # drawn on the plot for reference
    assert dict(next(p for p in published if p["method"] == "PIDM")["points"])[0.2] == 61.5
    run_files = sorted((out / "runs").glob("*.json"))
    assert [p.name for p in run_files] == ["f0.5_s0_copy-source_joint.json", "f0.5_s0_standard.json"]
    assert (out / "plans" / "f0.5_s0_plan.csv").is_file()
    mtimes = {p: p.stat().st_mtime_ns for p in run_files}

    again = _invoke("--market-root", str(market), "--generator", "copy-source", "--out", str(out), *TINY)
    assert again.exit_code == 0, again.output
    assert again.output.count("skip f0.5_s0") == 2
    assert {p: p.stat().st_mtime_ns for p in run_files} == mtimes
    assert json.loads((out / "results.json").read_text())["rows"] == doc["rows"]


def test_folder_generator_missing_image(market: Path, tmp_path: Path) -> None:
    from PIL import Image

    from posebench.reid import make_plan, make_subset

    gen = tmp_path / "gen"
    gen.mkdir()
    train = sorted(p.name for p in (market / "bounding_box_train").iterdir())[:12]
    rows = make_plan(make_subset(train, 0.5, 0), k=1, seed=0)
    for r in rows[1:]:
        Image.new("RGB", (64, 128)).save(gen / r.filename)
    res = _invoke("--market-root", str(market), "--generator", f"folder:{gen}", "--out", str(tmp_path / "out"), *TINY)
    assert res.exit_code == 2, res.output
    assert "missing (1)" in res.output and rows[0].filename in res.output
    assert not (tmp_path / "out" / "runs").exists()


@pytest.mark.parametrize(("args", "needle"), [
    (["--generator", "reposedm:x"], "needs a reference-model run"),
    (["--generator", "shell:echo"], "must contain {plan}"),
    (["--generator", "gan:x"], "unknown generator"),
    (["--fractions", "0.5,abc"], "--fractions"),
    (["--fractions", "1.5"], "fraction must be in (0, 1]"),
    (["--mode", "both"], "mode must be one of"),
])
def test_bad_input_exits_2(market: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    res = _invoke("--market-root", str(market), "--out", str(tmp_path / "out"), *TINY, *args)
    assert res.exit_code == 2, res.output
    assert needle in res.output
    assert not (tmp_path / "out" / "runs").exists()


def test_missing_market_folder(tmp_path: Path) -> None:
    res = _invoke("--market-root", str(tmp_path / "nope"), "--out", str(tmp_path / "out"), *TINY)
    assert res.exit_code == 2
    assert "does not exist" in res.output


def test_finetune_mode_and_resume_from_checkpoint(market: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ("--market-root", str(market), "--generator", "copy-source", "--mode", "finetune", "--out", str(out))
    res = _invoke(*args, *TINY)
    assert res.exit_code == 0, res.output
    assert (out / "runs" / "f0.5_s0_standard.pt").is_file()
    (out / "runs" / "f0.5_s0_copy-source_finetune.json").unlink()
    again = _invoke(*args, *TINY)
    assert again.exit_code == 0, again.output
    assert "skip f0.5_s0 Standard" in again.output and "run f0.5_s0 copy-source" in again.output
    doc = json.loads((out / "results.json").read_text())
    assert doc["settings"]["mode"] == "finetune" and doc["settings"]["finetune_epochs"] == 1
    assert {r["method"] for r in doc["rows"]} == {"Standard", "copy-source"}


_COPY_SCRIPT = """
import csv, shutil, sys
from pathlib import Path
plan, out, train = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
for row in csv.DictReader(plan.open()):
    shutil.copyfile(next(train.glob(row["source"] + ".*")), out / row["filename"])
"""


def test_shell_template_generator(market: Path, tmp_path: Path) -> None:
    import sys

    script = tmp_path / "gen.py"
    script.write_text(_COPY_SCRIPT)
    train = market / "bounding_box_train"
    # The script copies each source image's bytes under the plan's name: validation decodes by content.
    spec = f"shell:{sys.executable} {script} {{plan}} {{out}} {train}"
    out = tmp_path / "out"
    res = _invoke("--market-root", str(market), "--generator", spec, "--out", str(out), *TINY)
    assert res.exit_code == 0, res.output
    generated = sorted((out / "generated" / "f0.5_s0").glob("*.png"))
    assert generated and len(generated) == len((out / "plans" / "f0.5_s0_plan.csv").read_text().splitlines()) - 1
    doc = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in doc["rows"]} == {"Standard", "shell"}
    assert doc["generator_train_set"] == "unknown"
    assert doc["generator_training"]["description"] == "unknown: posebench cannot tell what the generator was " \
        "trained on"
    assert "Generator trained on: unknown: posebench cannot tell what the generator was trained on." in res.output
    assert doc["leakage_caveat"] == ("if it saw Market-1501 training images outside the subset, generated images may "
                                     "leak identities beyond it")

    res = _invoke("--market-root", str(market), "--generator", f"shell:{sys.executable} -c 'raise SystemExit(3)' "
                  "{plan} {out}", "--out", str(tmp_path / "bad"), *TINY)
    assert res.exit_code == 2 and "exited 3" in res.output
    res = _invoke("--market-root", str(market), "--generator", "shell:echo {plan}", "--out", str(tmp_path / "b2"),
                  *TINY)
    assert res.exit_code == 2 and "{out}" in res.output


def test_torchreid_imagenet_file_uses_torchvision_key_names() -> None:
    """The registry's resnet50-torchreid-imagenet is torchvision's resnet50-19c8e357.pth, which torchreid loads by
    key name; the runner loads it into torchreid's ResNet-50 the same way, offline: every torchvision backbone
    tensor must exist in torchreid's model under the same name and shape (only fc -> classifier differs)."""
    import torch
    import torchreid
    import torchvision

    ours = torchvision.models.resnet50(weights=None).state_dict()
    theirs = torchreid.models.build_model("resnet50", num_classes=10, pretrained=False).state_dict()
    backbone = {k: v.shape for k, v in ours.items() if not k.startswith("fc.")}
    shared = {k: v.shape for k, v in theirs.items() if k in backbone}
    assert shared == backbone  # all 318 torchvision backbone tensors exist in torchreid's model, same shapes
    assert not [k for k in theirs if k.startswith(("layer", "conv1", "bn1")) and k not in backbone]
    assert all(isinstance(v, torch.Size) for v in shared.values())


def test_two_processes_under_torchrun(market: Path, tmp_path: Path, free_port: int) -> None:
    """torchrun, 2 CPU processes (gloo): DDP training with each process on its slice of every batch; one writer."""
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(free_port), "-m", "posebench", "reid-augment", "--market-root", str(market),
           "--generator", "copy-source", "--out", str(out), *TINY]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in doc["rows"]} == {"Standard", "copy-source"}
    assert sorted(p.name for p in (out / "runs").glob("*.json")) == [
        "f0.5_s0_copy-source_joint.json", "f0.5_s0_standard.json"]
    assert proc.stdout.count("done f0.5_s0 Standard") == 1  # only the main process reports and writes
    assert "Cython" not in proc.stderr + proc.stdout  # torchreid's import warning is silenced where it is imported


def test_pretrained_weights_load_by_name_into_torchreid(monkeypatch, tmp_path) -> None:
    """A torchvision-format ResNet-50 file (what the registry holds) loads into torchreid's model; a wrong file
    is refused with the registry name."""
    import torch
    import torchvision

    from posebench import weights
    from posebench.reid import runner as runner_mod

    good = tmp_path / "r50.pth"
    torch.manual_seed(0)
    tv = torchvision.models.resnet50(weights=None)
    torch.save(tv.state_dict(), good)
    monkeypatch.setattr(weights, "ensure", lambda name, **_: good)
    model = runner_mod._build_model(5, pretrained=True, device="cpu")
    assert torch.equal(model.layer4[2].conv3.weight, tv.layer4[2].conv3.weight)
    assert model.classifier.out_features == 5

    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    monkeypatch.setattr(weights, "ensure", lambda name, **_: bad)
    from posebench.errors import PosebenchError

    with pytest.raises(PosebenchError, match="resnet50-torchreid-imagenet does not fit"):
        runner_mod._build_model(5, pretrained=True, device="cpu")


# ---------------------------------------------------------------------------------------------- reposedm:RUN


def _fake_run(folder: Path, config: str) -> Path:
    """A reference-model run folder as reid-augment reads it: the newest checkpoint's run_config.json."""
    from reposedm.config import named_config

    ckpt = folder / "checkpoints" / "checkpoint-000050"
    ckpt.mkdir(parents=True)
    (ckpt / "run_config.json").write_text(named_config(config).to_json() + "\n")
    return folder


def test_reposedm_run_of_another_dataset_refused(market: Path, tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "df-run", "deepfashion-256-b1")
    out = tmp_path / "out"
    res = _invoke("--market-root", str(market), "--generator", f"reposedm:{run}", "--out", str(out), *TINY)
    assert res.exit_code == 2, res.output
    cfg = run / "checkpoints" / "checkpoint-000050" / "run_config.json"
    assert (f"generator reposedm:{run}: the run was trained on DeepFashion, not Market-1501 ({cfg}: config "
            "'deepfashion-256-b1' at 256x176 (protocol deepfashion-256x176's size)); its images are not Market-1501 "
            "people") in _flat(res.output)
    assert "--allow-other-dataset" in res.output
    assert not out.exists()  # refused before any plan, generation or training


@pytest.mark.parametrize(("setup", "needle"), [
    ("no-checkpoint", "has no checkpoints"),
    ("bad-config", "cannot read run config"),
])
def test_reposedm_run_without_a_readable_config(market: Path, tmp_path: Path, setup: str, needle: str) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    if setup == "bad-config":
        (run / "checkpoints" / "checkpoint-000001").mkdir()
        (run / "checkpoints" / "checkpoint-000001" / "run_config.json").write_text("{not json")
    res = _invoke("--market-root", str(market), "--generator", f"reposedm:{run}", "--out", str(tmp_path / "out"),
                  *TINY)
    assert res.exit_code == 2, res.output
    assert needle in res.output and str(run) in _flat(res.output)
    assert not (tmp_path / "out").exists()


def test_reposedm_other_dataset_allowed_is_recorded(market: Path, tmp_path: Path, monkeypatch) -> None:
    """--allow-other-dataset runs it (sampling replaced by copies of the sources) and says so everywhere."""
    import shutil

    from posebench.cli import reid as reid_cli

    def fake_filler(run, market_root, device, steps, progress):
        def fill(rows, folder: Path, seed: int) -> None:
            folder.mkdir(parents=True, exist_ok=True)
            for r in rows:
                shutil.copyfile(next((market_root / "bounding_box_train").glob(r.source + ".*")), folder / r.filename)
        return fill

    monkeypatch.setattr(reid_cli, "_reposedm_filler", fake_filler)
    run = _fake_run(tmp_path / "df-run", "deepfashion-256-full")
    out = tmp_path / "out"
    res = _invoke("--market-root", str(market), "--generator", f"reposedm:{run}", "--out", str(out), *TINY,
                  "--allow-other-dataset")
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "results.json").read_text())
    reason = "generator trained on DeepFashion, not Market-1501 (--allow-other-dataset)"
    assert doc["non_canonical_reasons"] == [*_smoke_reasons(market), reason] and doc["canonical"] is False
    assert doc["generator_train_set"] == "other-dataset"
    assert doc["generator_training"]["dataset"] == "deepfashion"
    assert doc["leakage_caveat"] == "its images are not Market-1501 people"
    cfg = run / "checkpoints" / "checkpoint-000050" / "run_config.json"
    assert (f"Generator trained on: DeepFashion, not Market-1501 (run {run}, {cfg}: config 'deepfashion-256-full' "
            "at 256x176 (protocol deepfashion-256x176's size)).") in _flat(res.output)
    assert {r["method"] for r in doc["rows"]} == {"Standard", "reposedm"}


def test_missing_imagenet_weights_write_nothing_and_quiet_keeps_the_results(market, tmp_path, monkeypatch):
    """Offline without the ImageNet file: exit 2 naming it, before any plan is written. --quiet drops the
    per-run lines but keeps what the run found (the results table, the non-canonical note)."""
    monkeypatch.setenv("POSEBENCH_OFFLINE", "1")
    out = tmp_path / "pre"
    res = _invoke("--market-root", str(market), "--generator", "none", "--out", str(out),
                  *[a for a in TINY if a != "--no-pretrained"])
    assert res.exit_code == 2 and "resnet50-torchreid-imagenet" in res.output, res.output
    assert not (out / "plans").exists()
    res = _invoke("--market-root", str(market), "--generator", "none", "--out", str(tmp_path / "q"), *TINY,
                  "--quiet")
    assert res.exit_code == 0, res.output
    assert "Non-canonical" in res.output and "mAP" in res.output and "epoch 1/1" not in res.output
