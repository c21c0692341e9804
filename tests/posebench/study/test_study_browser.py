"""The study in a real browser: headless Debian Chromium (through Debian's chromedriver, .ci/install-chromium.sh)
runs keyboard-only scripted participants against the real `posebench study serve` process.

Covered: both schemes end to end with the answers landing in SQLite and the score equal to the known answer of
the scripted choices, with 20 HTTP participants answering at the same time; a server killed (SIGKILL) halfway
and restarted, the page retrying and a reload resuming, no answer lost or doubled; a participant who leaves
halfway scored as partial; screenshots of both schemes (POSEBENCH_UPDATE_DOC_IMAGES=1 copies them to docs/images).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from studykit import (
    BrowserParticipant,
    HttpParticipant,
    ServeProcess,
    choice_for,
    chrome,
    chromium_available,
    expected_scores,
    free_port,
    key_of,
)
from typer.testing import CliRunner

from posebench.cli import app
from posebench.study.folder import load_study

pytestmark = pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium and chromium-driver "
                                "(.ci/install-chromium.sh)")
DOC_IMAGES = Path(__file__).resolve().parents[3] / "docs" / "images"


def credulous(item):
    return "real" if item["scheme"] == 1 else "mirror"


def truthful(item):
    return item["kind"] if item["scheme"] == 1 else "oracle"


def http_policy(n: int):
    """Participant n's consistent answers: a function of what is shown, so the repeats agree."""
    def policy(item):
        h = sum(map(ord, item["target"])) + n
        if item["scheme"] == 1:
            return ("real", "generated")[h % 2]
        return ("oracle", "copy-source", "mirror")[h % 3]
    return policy


def _rows(folder: Path) -> dict[int, list[tuple[int, str, str]]]:
    with sqlite3.connect(folder / "answers.sqlite") as conn:
        rows = conn.execute("SELECT participant_id, seq, item_id, answer FROM answers ORDER BY participant_id, seq")
        out: dict[int, list[tuple[int, str, str]]] = {}
        for pid, seq, item, ans in rows:
            out.setdefault(pid, []).append((seq, item, ans))
    return out


def _score(folder: Path) -> dict:
    res = CliRunner().invoke(app, ["study", "score", str(folder), "--json", "--resamples", "200"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_browsers_and_twenty_http_participants_at_once(fresh_study, tmp_path):
    key = key_of(fresh_study)
    ids = load_study(fresh_study).sequence
    server = ServeProcess(fresh_study, free_port()).start()
    given: dict[str, dict[str, str]] = {}
    errors: list[str] = []

    def browser(name: str, policy) -> None:
        driver = chrome(tmp_path / name)
        try:
            p = BrowserParticipant(driver, server.url)
            p.open()
            given[name] = p.run(key, policy)
            assert p.body("screen") == "done" and len(driver.find_element("id", "code").text) == 10
        except Exception as exc:  # reported with the participant below
            errors.append(f"{name}: {exc!r}")
        finally:
            driver.quit()

    def http(n: int) -> None:
        try:
            p = HttpParticipant(server.url)
            answers = {}
            for seq, item in enumerate(ids):
                answers[item] = choice_for(key, item, http_policy(n))
                status, body = p.answer(seq, item, answers[item])
                assert status == 200, body
            given[f"http{n}"] = answers
        except Exception as exc:
            errors.append(f"http{n}: {exc!r}")

    threads = [threading.Thread(target=browser, args=("credulous", credulous)),
               threading.Thread(target=browser, args=("truthful", truthful))]
    threads += [threading.Thread(target=http, args=(n,)) for n in range(20)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        server.stop()
    assert not errors, errors
    rows = _rows(fresh_study)
    assert len(rows) == 22 and all([seq for seq, _, _ in r] == list(range(len(ids))) for r in rows.values())
    recorded = sorted(tuple(ans for _, _, ans in r) for r in rows.values())
    assert recorded == sorted(tuple(g[i] for i in ids) for g in given.values())  # every answer, none twice
    doc = _score(fresh_study)
    assert doc["participants"]["complete"] == 22 and doc["exclusions"] == []
    want = expected_scores(key, list(given.values()))
    assert {k: m["value"] for k, m in doc["metrics"].items()} == pytest.approx(want, abs=1e-6)
    alone = expected_scores(key, [given["credulous"]])  # what the credulous browser alone says, for the record
    assert alone["r2g/mirror"] == 0.0 and alone["g2r/mirror"] == 100.0 and alone["jab/mirror"] == 100.0


def test_a_crash_restart_and_reload_keep_every_answer_and_a_leaver_is_partial(fresh_study, tmp_path):
    key = key_of(fresh_study)
    ids = load_study(fresh_study).sequence
    server = ServeProcess(fresh_study, free_port()).start()
    stays, leaves = chrome(tmp_path / "stays"), chrome(tmp_path / "leaves")
    try:
        leaver = BrowserParticipant(leaves, server.url)
        leaver.open()
        left = leaver.run(key, truthful, limit=4)
        leaves.quit()  # gone for good

        p = BrowserParticipant(stays, server.url)
        p.open()
        first = p.run(key, truthful, limit=6)
        server.kill()  # a crash: no shutdown, the answers acknowledged so far must all be on disk
        item, seq = p.body("ready"), p.body("seq")
        answer = choice_for(key, item, truthful)
        p.keys("r" if answer == "real" else "g" if answer == "generated" else answer)
        p.wait.until(lambda d: "retrying" in d.find_element("id", "status").text)
        server.start()  # the page's retry lands on the new server, once
        p.wait.until(lambda d: p.body("seq") != seq and p.body("ready") is not None)
        first[item] = answer
        first.update(p.run(key, truthful, limit=3))
        stays.refresh()  # a reload resumes where the server says the participant is
        p.wait.until(lambda d: p.body("screen") == "intro")
        assert stays.find_element("id", "start").text.startswith("Continue")
        p.open()
        assert p.body("seq") == str(len(first))
        first.update(p.run(key, truthful))
        assert p.body("screen") == "done"
    finally:
        stays.quit()
        server.stop()
    rows = _rows(fresh_study)
    assert [len(r) for r in rows.values()] == [4, len(ids)]
    assert [(s, i) for s, i, _ in rows[2]] == list(enumerate(ids))
    assert {i: a for _, i, a in rows[2]} == first and {i: a for _, i, a in rows[1]} == left
    doc = _score(fresh_study)
    people = {r["id"]: r for r in doc["participants"]["rows"]}
    assert people[1]["status"] == "partial" and people[1]["answered"] == 4
    assert people[2]["status"] == "complete" and people[2]["checks_failed"] == 0
    assert {k: m["value"] for k, m in doc["metrics"].items()} == pytest.approx(
        expected_scores(key, [first, left]), abs=1e-6)


def _check_picture(path: Path) -> None:
    pixels = np.asarray(Image.open(path).convert("RGB"))
    assert pixels.shape[:2] == (720, 1000)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200  # photos and buttons, not a blank page


def test_screenshots_of_both_schemes(fresh_study, tmp_path):
    key = key_of(fresh_study)
    server = ServeProcess(fresh_study, free_port()).start()
    driver = chrome(tmp_path / "shots", 1000, 720)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",  # the page's viewport exactly, without window chrome
                           {"width": 1000, "height": 720, "deviceScaleFactor": 1, "mobile": False})
    try:
        p = BrowserParticipant(driver, server.url)
        p.open()
        driver.save_screenshot(str(tmp_path / "study-scheme1.png"))
        n1 = json.loads((fresh_study / "public" / "plan.json").read_text())["counts"]["scheme1"]
        p.run(key, truthful, limit=n1)
        assert p.body("screen") == "intro2"
        from selenium.webdriver.common.keys import Keys

        p.keys(Keys.ENTER)
        p.wait.until(lambda d: p.body("ready") is not None and p.body("screen") == "scheme2")
        driver.save_screenshot(str(tmp_path / "study-scheme2.png"))
    finally:
        driver.quit()
        server.stop()
    for name in ("study-scheme1.png", "study-scheme2.png"):
        _check_picture(tmp_path / name)
        if os.environ.get("POSEBENCH_UPDATE_DOC_IMAGES") == "1":
            shutil.copyfile(tmp_path / name, DOC_IMAGES / name)
