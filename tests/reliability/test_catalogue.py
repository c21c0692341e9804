"""The reliability catalogue: every bad input or fault that once was not handled as promised, each a case that
must now give a clear error naming the file (exit 2) or keep working, and lose nothing. Grows with every bug.

Promises: bad input gets an error naming the file (and line) and what to do, exit code 2; writes are atomic and
readable as a plain `open()` would make them; nothing half-written; a long job checks its outputs first.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from posebench.cli import app

runner = CliRunner()


@pytest.fixture
def folders(tmp_path):
    """Two tiny plain folders to score (`eval --pred --gt`, SSIM/PSNR only: no network)."""
    rng = np.random.default_rng(0)
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    for folder in (pred, gt):
        folder.mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (32, 24, 3)).astype(np.uint8)).save(folder / f"{i}.png")
    return pred, gt


def _eval(folders, out: Path, *extra: str):
    pred, gt = folders
    return runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--metrics", "ssim,psnr", "--out",
                               str(out), *extra])


# ---------------------------------------------------------------------------------------------- outputs


def test_eval_out_is_a_folder(folders, tmp_path):
    res = _eval(folders, tmp_path)
    assert res.exit_code == 2 and f"--out {tmp_path} is a folder" in res.output
    assert not list(tmp_path.glob("*.per_image.csv"))  # refused before scoring: no orphan CSV


def test_eval_out_below_a_file(folders, tmp_path):
    (tmp_path / "plain").write_text("x")
    res = _eval(folders, tmp_path / "plain" / "r.json")
    assert res.exit_code == 2 and "is a file, not a folder" in res.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_eval_out_in_a_read_only_folder(folders, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        res = _eval(folders, ro / "r.json")
        assert res.exit_code == 2 and "cannot write in" in res.output
    finally:
        ro.chmod(stat.S_IRWXU)


def test_disk_full_keeps_the_previous_results(folders, tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    assert _eval(folders, out).exit_code == 0
    before = out.read_text(), out.with_suffix(".per_image.csv").read_text()
    real_replace = os.replace

    def full(src, dst):  # the disk fills up when the results are renamed into place
        if str(dst).endswith(".json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full)
    res = _eval(folders, out)
    assert res.exit_code == 2 and f"cannot write {out}: No space left on device" in res.output
    assert (out.read_text(), out.with_suffix(".per_image.csv").read_text()) == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_outputs_have_the_permissions_open_gives(folders, tmp_path):
    """Atomic writes used mkstemp's 0600: a CI artifact server could not read the results."""
    old = os.umask(0o022)
    try:
        out = tmp_path / "r.json"
        assert _eval(folders, out).exit_code == 0
    finally:
        os.umask(old)
    for path in (out, out.with_suffix(".per_image.csv")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_eval_says_it_replaced_the_previous_results(folders, tmp_path):
    out = tmp_path / "r.json"
    assert "(replaced the previous file)" not in _eval(folders, out).output
    res = _eval(folders, out)
    assert res.exit_code == 0 and "(replaced the previous file)" in res.output


# ---------------------------------------------------------------------------------------------- YAML


def test_yaml_with_invalid_utf8_names_file_and_line(tmp_path):
    bad = tmp_path / "cfg.yaml"
    bad.write_bytes(b"base: tiny-b1\ntrain:\n  lr: \xff\n")
    res = runner.invoke(app, ["profiles", "show", str(bad)])
    assert res.exit_code == 2 and f"{bad}:3: not UTF-8 text" in res.output


def test_billion_laughs_is_refused_with_a_short_message(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    bomb.write_text("\n".join(lines) + "\n")
    res = runner.invoke(app, ["profiles", "show", str(bomb)])
    assert res.exit_code == 2 and "take no anchors or aliases" in res.output and len(res.output) < 2000


# ---------------------------------------------------------------------------------------------- results files


def test_results_file_values_are_checked_everywhere(tmp_path):
    """NaN / null / out of range / a negative n / a metrics list: refused by every reader with the file named
    (leaderboard add and regress have their own cases in tests/posebench/results)."""
    from posebench.results.schema import ResultsError, read_results

    good = {"schema_version": 1, "posebench": "x", "canonical": True, "warnings": [], "env": {},
            "protocol": {"name": "deepfashion-256x176"}, "profile": {"name": "clean"}, "dataset": {},
            "predictions": {}, "metrics": {"ssim": {"value": 0.5, "n": 3}}}
    cases = {"list": ({"metrics": [0.5]}, "metrics must be a mapping"),
             "ssim 7": ({"metrics": {"ssim": {"value": 7.0, "n": 3}}}, "outside what ssim can be"),
             "n -5": ({"metrics": {"ssim": {"value": 0.5, "n": -5}}}, "metrics.ssim.n"),
             "null": ({"metrics": {"ssim": {"value": None, "n": 3}}}, "None is not a number"),
             "no name": ({"protocol": {"version": 1}}, "protocol.name must be a non-empty string"),
             "escape": ({"per_image_file": "/etc/passwd"}, "per_image_file must be a bare file name")}
    for label, (change, message) in cases.items():
        path = tmp_path / f"{label}.json"
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(ResultsError, match=message) as info:
            read_results(path)
        assert str(path) in str(info.value), label


# ---------------------------------------------------------------------------------------------- dataset roots


def test_eval_refuses_a_ground_truth_link_outside_the_root(tmp_path):
    """`data verify` refused a ground-truth image that is a link to a file outside the root; eval followed it."""
    from posebench.datasets.synth import synthesize

    root = tmp_path / "df"
    synthesize("deepfashion", root, identities=4, poses=2, seed=1, test_fraction=0.5, progress=False)
    pairs = [r.split(",") for r in (root / "fasion-resize-pairs-test.csv").read_text().split()[1:]]
    pred = tmp_path / "pred"
    pred.mkdir()
    for s, t in pairs:
        Image.open(root / "test" / t).save(pred / f"{s[:-4]}__{t[:-4]}.png")
    victim = root / "test" / pairs[0][1]
    outside = tmp_path / "elsewhere.jpg"
    victim.rename(outside)
    victim.symlink_to(outside)
    res = runner.invoke(app, ["eval", "--protocol", "deepfashion-256x176", "--root", str(root), "--pred", str(pred),
                              "--metrics", "ssim", "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 2 and "resolve outside the dataset root" in res.output and str(victim) in res.output
    assert not (tmp_path / "r.json").exists()


def test_a_huge_image_is_refused_from_its_header(folders, tmp_path):
    """A 12000x12000 PNG of a few hundred KB was decoded in full (1.9 GiB) before its size was refused."""
    import tracemalloc

    pred, gt = folders
    Image.new("RGB", (12000, 12000)).save(pred / "1.png", compress_level=9)
    tracemalloc.start()
    res = _eval(folders, tmp_path / "r.json")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert res.exit_code == 2 and str(pred / "1.png") in res.output and "not decoded" in res.output
    assert peak < 200 * 2**20  # never decoded


# ---------------------------------------------------------------------------------------------- boards


def test_board_markdown_escapes_html_from_method_names(tmp_path):
    """`leaderboard render` wrote a raw <script> from a --method name into the boards' README.md."""
    import shutil

    from posebench.protocols import get_profile
    from posebench.results.leaderboard import add_measured, load_board, render_markdown
    from posebench.results.schema import write_results

    board = tmp_path / "deepfashion-256x176.yaml"
    shutil.copy(Path(__file__).parents[2] / "posebench" / "leaderboards" / "deepfashion-256x176.yaml", board)
    results = {"schema_version": 1, "posebench": "x", "canonical": True, "warnings": [], "env": {},
               "protocol": {"name": "deepfashion-256x176", "version": 1, "sha256": "b" * 64},
               "profile": {"name": "clean", "version": get_profile("clean").version, "sha256": "p" * 64},
               "dataset": {"pairs_sha256": "a" * 64}, "predictions": {"images_sha256": "c" * 64},
               "metrics": {"fid": {"value": 6.0, "n": 8570, "stderr": None, "higher_is_better": False}}}
    write_results(tmp_path / "r.json", results)
    add_measured(board, tmp_path / "r.json", "<script>alert(1)</script> | x")
    text = render_markdown([load_board(board)])
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt; \\| x" in text


# ---------------------------------------------------------------------------------------------- weights


class Payload:
    """An object a pickle would rebuild (and, with a __reduce__, could run code while doing so)."""


def test_a_pickle_is_refused_without_torchs_unsafe_hint(tmp_path):
    """torch's "setting weights_only=False will likely succeed" was passed on: that is the unsafe thing."""
    import torch

    from posebench import weights
    from posebench.errors import WeightsError

    torch.save({"x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(WeightsError) as info:
        weights.load_state_dict(tmp_path / "evil.pt")
    text = str(info.value)
    assert "evil.pt was refused" in text and "Payload" in text and "weights_only" not in text
    assert "would run code" in text


def test_unpublished_digest_needs_explicit_trust(tmp_path, monkeypatch):
    """`weights add` accepted any file for an entry without a published digest, silently."""
    from posebench import weights
    from posebench.weight_file import WeightFile

    spec = WeightFile(name="test-unpinned", filename="unpinned.bin", url="https://example.org/unpinned.bin",
                      sha256=None, licence="test", description="test")
    monkeypatch.setitem(weights.REGISTRY._entries, spec.name, spec)
    (tmp_path / "file.bin").write_bytes(b"some weights")
    res = runner.invoke(app, ["weights", "add", spec.name, str(tmp_path / "file.bin")])
    assert res.exit_code == 2 and "--trust-unpublished" in res.output and "cannot be checked" in res.output
    assert not weights.cache_path(spec).exists()
    res = runner.invoke(app, ["weights", "add", spec.name, str(tmp_path / "file.bin"), "--trust-unpublished"])
    digest = hashlib.sha256(b"some weights").hexdigest()
    assert res.exit_code == 0 and f"sha256 {digest}" in res.output
    assert weights.status(spec) == weights.Status.VERIFIED  # checked against the recorded digest from now on


def test_a_prefix_pin_becomes_the_full_digest_after_the_first_verified_file():
    from posebench.weight_file import WeightFile

    spec = WeightFile(name="p", filename="p.bin", url="https://example.org/p", sha256="abcdef12", licence="",
                      description="")
    full = "abcdef12" + "0" * 56
    assert spec.matches("abcdef12" + "f" * 56)  # nothing recorded yet: the published prefix decides
    assert spec.matches(full, recorded=full)
    assert not spec.matches("abcdef12" + "f" * 56, recorded=full)  # same prefix, another file: refused


# ---------------------------------------------------------------------------------------------- report


def test_report_out_folder_and_escaping_per_image_file(folders, tmp_path):
    """`report --out DIR` crashed; a results file whose per_image_file pointed at /etc/passwd was read."""
    out = tmp_path / "r.json"
    assert _eval(folders, out).exit_code == 0
    res = runner.invoke(app, ["report", str(out), "--out", str(tmp_path), "--samples", "0"])
    assert res.exit_code == 2 and f"--out {tmp_path} is a folder" in res.output
    data = json.loads(out.read_text())
    data["per_image_file"] = "/etc/passwd"
    (tmp_path / "evil.json").write_text(json.dumps(data))
    res = runner.invoke(app, ["report", str(tmp_path / "evil.json"), "--out", str(tmp_path / "x.html"),
                              "--samples", "0"])
    assert res.exit_code == 2 and "per_image_file must be a bare file name" in res.output
    assert not (tmp_path / "x.html").exists()
