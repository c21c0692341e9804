"""`posebench study make`: the folder it writes, byte-identical rebuilds, and every bad input refused with exit 2;
`serve` and `score` refuse a folder edited after it was built."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from posebench.cli import app
from posebench.study.folder import load_study

runner = CliRunner()


def _make(world, out: Path, *extra: str):
    results = [str(p) for p in world["results"]]
    return runner.invoke(app, ["study", "make", "--results", *results, "--root", str(world["root"]), "--out",
                               str(out), "--real", "2", "--generated", "2", "--sets", "3", "--checks", "1",
                               "--quiet", *extra])


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_make_writes_a_self_contained_study(study_world, tmp_path):
    out = tmp_path / "study"
    res = _make(study_world, out)
    assert res.exit_code == 0, res.output
    assert "3 methods (oracle, copy-source, mirror)" in res.output and "scheme 1 13 items" in res.output
    study = load_study(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["files"]) == sorted(k for k in _tree(out) if k != "manifest.json")
    assert {"key.json", "build.json", "public/index.html", "public/app.js", "public/style.css",
            "public/plan.json"} <= set(manifest["files"])
    # offline: the page loads only its own files (no CDN, no absolute URL)
    for name in ("index.html", "app.js", "style.css"):
        text = (out / "public" / name).read_text()
        assert "http://" not in text and "https://" not in text and '"//' not in text and "url(" not in text
    html = (out / "public" / "index.html").read_text()
    assert 'src="app.js"' in html and 'href="style.css"' in html and "<kbd>" in html
    # the page is told what to show, never the truth: no kind, method or file name of a source in plan.json
    plan_text = (out / "public" / "plan.json").read_text()
    for secret in ("real", "generated", "oracle", "mirror", "copy-source", "fashion"):
        assert secret not in plan_text
    assert all(f.startswith("img/") or f in ("index.html", "app.js", "style.css", "plan.json")
               for f in study.public_files)
    key = study.key
    assert key["methods"] == ["oracle", "copy-source", "mirror"]
    assert len(study.sequence) == 13 + 4 and sum(1 for i in key["items"] if i["repeat_of"]) == 2
    build = study.build
    assert build["seed"] == 0 and build["parameters"] == {"real": 2, "generated": 2, "sets": 3, "checks": 1}
    assert [i["results_sha256"] for i in build["inputs"]] == [
        __import__("hashlib").sha256(p.read_bytes()).hexdigest() for p in study_world["results"]]
    assert build["rebuild"].startswith("posebench study make --results ")


def test_the_same_inputs_rebuild_a_byte_identical_folder(study_world, tmp_path):
    for name in ("a", "b"):
        assert _make(study_world, tmp_path / name).exit_code == 0
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert _make(study_world, tmp_path / "c", "--seed", "1").exit_code == 0
    assert _tree(tmp_path / "c")["manifest.json"] != _tree(tmp_path / "a")["manifest.json"]
    # the rebuild command in build.json is the command that did it
    build = json.loads((tmp_path / "a" / "build.json").read_text())
    argv = build["rebuild"].split()
    argv[argv.index("NEW_FOLDER")] = str(tmp_path / "d")
    assert runner.invoke(app, [*argv[1:], "--quiet"]).exit_code == 0
    assert _tree(tmp_path / "d") == _tree(tmp_path / "a")


def _copy_results(world, tmp_path: Path, change) -> Path:
    data = json.loads(world["results"][1].read_text())
    change(data)
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(data))
    return path


def test_results_without_samples_are_refused(study_world, tmp_path):
    gone = _copy_results(study_world, tmp_path, lambda d: (d["config"].update(pred=str(tmp_path / "gone")),
                                                           d["predictions"].update(dir=str(tmp_path / "gone"))))
    res = runner.invoke(app, ["study", "make", "--results", str(study_world["results"][0]), str(gone), "--root",
                              str(study_world["root"]), "--out", str(tmp_path / "s")])
    assert res.exit_code == 2 and "changed.json" in res.output and "does not exist" in res.output, res.output
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = _copy_results(study_world, tmp_path, lambda d: (d["config"].update(pred=str(empty))))
    res = runner.invoke(app, ["study", "make", "--results", str(study_world["results"][0]), str(nothing), "--root",
                              str(study_world["root"]), "--out", str(tmp_path / "s")])
    assert res.exit_code == 2 and "holds no generated image" in res.output, res.output
    assert not (tmp_path / "s").exists()
    # a copy of the scored folder with one image replaced: not what was measured
    import shutil

    data = json.loads(study_world["results"][1].read_text())
    copy = tmp_path / "copy"
    shutil.copytree(data["predictions"]["dir"], copy)
    from PIL import Image

    victim = sorted(copy.glob("*.png"))[0]
    with Image.open(victim) as im:
        changed = im.convert("RGB")
    changed.putpixel((0, 0), tuple(255 - v for v in changed.getpixel((0, 0))))
    changed.save(victim)
    swapped = _copy_results(study_world, tmp_path, lambda d: (d["config"].update(pred=str(copy)),
                                                              d["predictions"].update(dir=str(copy))))
    res = runner.invoke(app, ["study", "make", "--results", str(study_world["results"][0]), str(swapped), "--root",
                              str(study_world["root"]), "--out", str(tmp_path / "s")])
    assert res.exit_code == 2 and "are not the ones it scored" in res.output, res.output
    assert not (tmp_path / "s").exists()


def test_fewer_images_than_asked_for_are_refused(study_world, tmp_path):
    res = _make(study_world, tmp_path / "s", "--real", "10")  # 12 targets, 10 + 2 asked: fine
    assert res.exit_code == 0, res.output
    res = _make(study_world, tmp_path / "t", "--real", "11")
    assert res.exit_code == 2 and "fewer images than asked for" in res.output and "share 12" in res.output
    res = _make(study_world, tmp_path / "u", "--sets", "37")
    assert res.exit_code == 2 and "pairs for scheme 2 (--sets): the methods share 36" in res.output
    assert not (tmp_path / "t").exists() and not (tmp_path / "u").exists()
    assert not list(tmp_path.glob(".*building"))  # no half-built folder left behind


def test_other_bad_inputs_are_refused(study_world, tmp_path, small_study):
    one = runner.invoke(app, ["study", "make", "--results", str(study_world["results"][0]), "--root",
                              str(study_world["root"]), "--out", str(tmp_path / "s")])
    assert one.exit_code == 2 and "at least two results files" in one.output
    same = runner.invoke(app, ["study", "make", "--results", str(study_world["results"][0]),
                               str(study_world["results"][0]), "--root", str(study_world["root"]), "--out",
                               str(tmp_path / "s")])
    assert same.exit_code == 2 and "two methods are labelled 'oracle'" in same.output
    # a study is never written over anything, least of all another study with its answers
    res = _make(study_world, small_study)
    assert res.exit_code == 2 and "already exists" in res.output
    load_study(small_study)  # untouched
    (tmp_path / "score.json").write_text(json.dumps({"schema_version": 1, "kind": "human-study"}))
    bad = runner.invoke(app, ["study", "make", "--results", str(study_world["results"][0]),
                              str(tmp_path / "score.json"), "--root", str(study_world["root"]), "--out",
                              str(tmp_path / "s")])
    assert bad.exit_code == 2 and "score.json" in bad.output


@pytest.mark.parametrize("edit", ["change", "remove", "add", "manifest"])
def test_serve_and_score_refuse_a_folder_edited_after_it_was_built(small_study, tmp_path, edit):
    study = shutil.copytree(small_study, tmp_path / "study")
    image = sorted((study / "public" / "img").iterdir())[0]
    named = {"change": "public/plan.json", "remove": image.relative_to(study).as_posix(),
             "add": "public/extra.html", "manifest": "manifest.json"}[edit]
    if edit == "change":
        (study / named).write_text((study / named).read_text().replace('"a001"', '"a000"'))
    elif edit == "remove":
        image.unlink()
    elif edit == "add":
        (study / named).write_text("<p>not part of the study</p>")
    else:
        (study / named).write_text("{broken")
    for argv in (["study", "serve", str(study), "--port", "0"], ["study", "score", str(study)]):
        res = runner.invoke(app, argv)
        assert res.exit_code == 2, res.output
        assert str(study / named) in res.output.replace("\n", ""), res.output
    assert not (study / "answers.sqlite").exists() and not (study / "score.json").exists()


def test_the_commands_explain_themselves():
    for command in (["study", "make"], ["study", "serve"], ["study", "score"]):
        res = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
        assert res.exit_code == 0 and "…" not in res.output, res.output
    res = runner.invoke(app, ["study", "make", "--help"], env={"COLUMNS": "200"})
    assert "--progress" in res.output and "--quiet" in res.output and "--results" in res.output


def test_a_study_folder_is_readable_like_any_new_folder(study_world, tmp_path):
    from posebench.utils.io import _umask

    assert _make(study_world, tmp_path / "s").exit_code == 0
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o777 & ~_umask()  # not mkdtemp's 0700


def test_an_output_that_cannot_be_written_is_exit_2_and_leaves_nothing(study_world, tmp_path, monkeypatch):
    import errno

    from posebench.study import images

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(images.ImageWriter, "add", full)
    res = _make(study_world, tmp_path / "s")
    assert res.exit_code == 2, res.output
    assert "No space left on device" in res.output and "could not be written" in res.output
    assert "cannot be read as an image" not in res.output  # the inputs are fine: the output is not
    assert not (tmp_path / "s").exists() and not list(tmp_path.glob(".*building"))


def test_an_unreadable_first_image_is_named_with_exit_2(study_world, tmp_path):
    from posebench.study.sources import load_sources

    sources = load_sources(study_world["results"], study_world["root"])
    first = sources.common[0]
    pred = tmp_path / "broken"
    shutil.copytree(sources.methods[1].pred, pred)
    (pred / sources.methods[1].files[first].name).write_bytes(b"not a png")
    # an older results file without predictions.images_sha256, so that the image itself is what is refused
    broken = _copy_results(study_world, tmp_path, lambda d: (d["config"].update(pred=str(pred)),
                                                             d["predictions"].update(dir=str(pred)),
                                                             d["predictions"].pop("images_sha256")))
    res = runner.invoke(app, ["study", "make", "--results", str(study_world["results"][0]), str(broken), "--root",
                              str(study_world["root"]), "--out", str(tmp_path / "s"), "--real", "2", "--generated",
                              "2", "--sets", "3", "--quiet"])
    assert res.exit_code == 2 and "cannot be read as an image" in res.output, res.output
    assert not (tmp_path / "s").exists()
