"""`posebench study score`: known answers give known R2G, G2R and JAB; attention-check exclusions and partial
participants are reported; the two-way bootstrap behaves as documented; the results file is taken by
`leaderboard add human-study` and `report`, and refused by `regress`."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from studykit import choice_for, expected_scores, key_of
from typer.testing import CliRunner

from posebench.cli import app
from posebench.results.schema import read_results
from posebench.study.folder import load_study
from posebench.study.score import score_study, two_way_bootstrap
from posebench.study.store import AnswerStore

runner = CliRunner()


def credulous(item):  # every image is real; always picks the mirrored image
    return "real" if item["scheme"] == 1 else "mirror"


def truthful(item):  # knows real from generated; always picks the oracle
    return item["kind"] if item["scheme"] == 1 else "oracle"


def _answer(study, store, policy, *, limit=None, flip_repeat=False) -> dict[str, str]:
    """One participant through the store (what the server does for each request); returns item -> answer."""
    key = study.key
    token = store.new_participant("scripted")
    given = {}
    for seq, item_id in enumerate(study.sequence[:limit]):
        ans = choice_for(key, item_id, policy)
        item = study.items[item_id]
        if flip_repeat and item["repeat_of"] and item["scheme"] == 1:
            ans = "generated" if ans == "real" else "real"
        store.append_answer(token, seq, item_id, ans, 500, study.sequence)
        given[item_id] = ans
    return given


@pytest.fixture
def answered(fresh_study):
    """Five participants: credulous, truthful, one failing an attention check, one leaving after 5 items, one who
    opened a session and answered nothing."""
    study = load_study(fresh_study)
    store = AnswerStore(study.db_path, study.manifest_sha256)
    given = {
        "credulous": _answer(study, store, credulous),
        "truthful": _answer(study, store, truthful),
        "inconsistent": _answer(study, store, truthful, flip_repeat=True),
        "partial": _answer(study, store, truthful, limit=5),
    }
    store.new_participant("left at once")
    return fresh_study, given


def test_known_answers_give_known_scores(answered):
    folder, given = answered
    doc, table = score_study(folder, resamples=500)
    key = key_of(folder)
    want = expected_scores(key, [given["credulous"], given["truthful"], given["partial"]])
    got = {k: m["value"] for k, m in doc["metrics"].items()}
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-6), k
    # spelled out: the credulous participant never says generated and the truthful one always is right, so R2G is
    # 0; of each method's 2 generated images the credulous one calls both real, the truthful one neither, and the
    # partial participant's truthful judgements only add to the denominator
    items = {i["id"]: i for i in key["items"]}
    for m in key["methods"]:
        partial = sum(1 for i in given["partial"] if items[i]["scheme"] == 1 and items[i]["kind"] == "generated"
                      and items[i]["method"] == m and not items[i]["repeat_of"])
        assert got[f"r2g/{m}"] == 0.0
        assert got[f"g2r/{m}"] == pytest.approx(100 * 2 / (2 + 2 + partial))
    assert got["jab/mirror"] == got["jab/oracle"] == 50.0 and got["jab/copy-source"] == 0.0
    for k, m in doc["metrics"].items():
        lo, hi = m["details"]["ci95"]
        assert lo <= m["value"] <= hi, k
    people = doc["participants"]
    assert (people["complete"], people["partial"], people["excluded"], people["without answers"]) == (2, 1, 1, 1)
    rows = {r["id"]: r for r in people["rows"]}
    assert rows[3]["status"] == "excluded" and rows[3]["checks_failed"] == 1
    assert rows[4]["status"] == "partial" and rows[4]["answered"] == 5 and rows[4]["checks_not_reached"] == 2
    assert doc["exclusions"] == [{"participant": 3, "reason": "failed 1 of 2 attention checks reached (allowed: 0)"}]
    lines = table.splitlines()
    assert len(lines) == 1 + sum(len(g) for g in given.values())
    assert sum(line.endswith(",1") for line in lines[1:]) == 2 * (13 + 4 - 2) + 5  # counted: no repeats, no excluded


def test_options_change_who_counts(answered):
    folder, _ = answered
    doc, _ = score_study(folder, resamples=200, complete_only=True)
    assert doc["participants"]["partial"] == 0 and doc["participants"]["excluded"] == 2
    assert any("partial: answered 5 of 17" in x["reason"] for x in doc["exclusions"])
    doc, _ = score_study(folder, resamples=200, max_failed_checks=1)
    assert doc["participants"]["excluded"] == 0
    reasons = doc["non_canonical_reasons"]
    assert reasons[0] == "participants failing up to 1 attention checks are kept"
    # the study inherits what its inputs' evaluations said of themselves (here: a synthetic root, not the split)
    assert len(reasons) == 1 + 3 and doc["canonical"] is False
    assert all(r.startswith("built from a non-canonical evaluation of '") and "the protocol pins 8,570" in r
               for r in reasons[1:])


def test_identical_participants_give_a_zero_width_interval(fresh_study):
    study = load_study(fresh_study)
    store = AnswerStore(study.db_path, study.manifest_sha256)
    for _ in range(3):
        _answer(study, store, credulous)
    doc, _ = score_study(fresh_study, resamples=300)
    assert doc["metrics"]["g2r/oracle"]["value"] == 100.0
    assert doc["metrics"]["g2r/oracle"]["details"]["ci95"] == [100.0, 100.0]
    assert doc["metrics"]["jab/mirror"]["details"]["ci95"] == [100.0, 100.0]


def test_the_bootstrap_resamples_participants_and_items():
    rng = np.random.default_rng(3)
    items = rng.integers(0, 2, size=40).astype(float)
    same_rows = np.tile(items, (12, 1))  # all participants agree: only item resampling can move the statistic
    mask = np.ones_like(same_rows)
    stats = two_way_bootstrap(same_rows, mask, resamples=4000, seed=0)
    assert np.array_equal(stats, two_way_bootstrap(same_rows, mask, resamples=4000, seed=0))  # seeded
    item_only = [100 * items[rng.integers(0, 40, 40)].mean() for _ in range(4000)]  # independent, plain loop
    assert np.quantile(stats, [0.025, 0.975]) == pytest.approx(np.quantile(item_only, [0.025, 0.975]), abs=4)
    people = rng.integers(0, 2, size=30).astype(float)
    same_cols = np.tile(people[:, None], (1, 10))  # every item alike: only participant resampling matters
    stats = two_way_bootstrap(same_cols, np.ones_like(same_cols), resamples=4000, seed=1)
    people_only = [100 * people[rng.integers(0, 30, 30)].mean() for _ in range(4000)]
    assert np.quantile(stats, [0.025, 0.975]) == pytest.approx(np.quantile(people_only, [0.025, 0.975]), abs=4)
    # missing judgements are left out, never counted as 0
    y = np.array([[1.0, 0.0], [1.0, 0.0]])
    m = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert np.all(two_way_bootstrap(y, m, resamples=200, seed=0)[~np.isnan(
        two_way_bootstrap(y, m, resamples=200, seed=0))] == 100.0)


def test_the_results_file_goes_to_the_board_and_the_report_not_to_regress(answered, study_world, tmp_path):
    folder, _ = answered
    out = tmp_path / "study.json"
    res = runner.invoke(app, ["study", "score", str(folder), "--out", str(out), "--resamples", "300"])
    assert res.exit_code == 0, res.output
    assert "1 excluded" in res.output and "1 partial" in res.output and "excluded participant 3" in res.output
    data = read_results(out)
    assert data["kind"] == "human-study" and data["protocol"]["name"] == "human-study"
    assert (tmp_path / "study.judgements.csv").is_file()
    res = runner.invoke(app, ["study", "score", str(folder), "--out", str(tmp_path / "again.json"), "--resamples",
                              "300", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["metrics"] == data["metrics"]  # seeded: the same numbers

    boards = tmp_path / "boards"
    assert runner.invoke(app, ["leaderboard", "init", str(boards)]).exit_code == 0
    add = ["leaderboard", "add", "human-study", str(out), "--dir", str(boards)]
    res = runner.invoke(app, [*add, "--method", "mirror (ours)", "--study-method", "mirror"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["leaderboard", "show", "human-study", "--json", "--dir", str(boards)])
    rows = {r["method"]: r for r in json.loads(res.output)["entries"]}
    values = rows["mirror (ours)"]["values"]
    assert values["jab"] == data["metrics"]["jab/mirror"]["value"]
    assert values["g2r"] == data["metrics"]["g2r/mirror"]["value"]
    assert rows["RePoseDM"]["values"] == {"g2r": 62, "jab": 82}  # the published row is untouched
    res = runner.invoke(app, [*add, "--method", "nobody"])
    assert res.exit_code == 2 and "oracle, copy-source, mirror" in res.output
    res = runner.invoke(app, ["leaderboard", "add", "deepfashion-256x176", str(out), "--method", "mirror",
                              "--dir", str(boards)])
    assert res.exit_code == 2 and "protocol 'human-study'" in res.output
    res = runner.invoke(app, [*add[:3], str(study_world["results"][0]), "--dir", str(boards), "--method", "oracle"])
    assert res.exit_code == 2 and "takes 'human-study' results" in res.output  # eval results: not a study

    page = tmp_path / "report.html"
    res = runner.invoke(app, ["report", str(out), "--out", str(page)])
    assert res.exit_code == 0, res.output
    html = page.read_text()
    assert 'class="study-table"' in html and "mirror" in html and "G2R: generated judged real" in html
    assert f"{data['metrics']['jab/mirror']['value']:.1f}" in html and "participant 3" in html

    res = runner.invoke(app, ["report", str(out), str(study_world["results"][0]), "--out", str(tmp_path / "x.html")])
    assert res.exit_code == 2 and "report them in two pages" in res.output
    res = runner.invoke(app, ["report", str(out), "--out", str(tmp_path / "y.html"), "--csv", str(tmp_path / "y.csv")])
    assert res.exit_code == 2 and "--csv exports" in res.output and not (tmp_path / "y.html").exists()

    res = runner.invoke(app, ["regress", "--results", str(out), "--baseline", str(out)])
    assert res.exit_code == 2 and "human-study results file" in res.output


def test_a_database_written_by_something_else_is_refused(answered):
    folder, _ = answered
    with sqlite3.connect(folder / "answers.sqlite") as conn:
        conn.execute("INSERT INTO answers(participant_id, seq, item_id, answer, received_at) VALUES (5, 0, 'b001', "
                     "'real', 'now')")
    res = runner.invoke(app, ["study", "score", str(folder)])
    assert res.exit_code == 2 and "participant 5, answer 0" in res.output
    assert not (folder / "score.json").exists()


def test_a_study_without_answers_cannot_be_scored(fresh_study):
    res = runner.invoke(app, ["study", "score", str(fresh_study)])
    assert res.exit_code == 2 and "no answers yet" in res.output


def test_repeats_are_never_counted_even_when_a_kept_participant_contradicts_them(fresh_study):
    """A participant who answers every repeat the opposite way (and is kept with --max-failed-checks) scores
    exactly as their first showings say: the repeat's answer is in no numerator and no denominator."""
    study = load_study(fresh_study)
    store = AnswerStore(study.db_path, study.manifest_sha256)
    token = store.new_participant("contrarian")
    given = {}
    for seq, item_id in enumerate(study.sequence):
        item = study.items[item_id]
        if item["scheme"] == 1:
            ans = ("real", "generated")[seq % 2]
            if item["repeat_of"]:  # the opposite of the original's answer
                ans = "generated" if given[item["repeat_of"]] == "real" else "real"
        else:
            slots = [o["slot"] for o in item["options"]]
            ans = slots[seq % len(slots)]
            if item["repeat_of"]:  # a slot that names another method than the original's choice
                chosen = next(o["method"] for o in study.items[item["repeat_of"]]["options"]
                              if o["slot"] == given[item["repeat_of"]])
                ans = next(o["slot"] for o in item["options"] if o["method"] != chosen)
        store.append_answer(token, seq, item_id, ans, 100, study.sequence)
        given[item_id] = ans
    doc, _ = score_study(fresh_study, resamples=200, max_failed_checks=10)
    assert doc["participants"]["rows"][0]["checks_failed"] == 2 and doc["exclusions"] == []
    want = expected_scores(study.key, [given])
    assert {k: m["value"] for k, m in doc["metrics"].items()} == pytest.approx(want, abs=1e-6)
    firsts = [i for i in study.key["items"] if not i["repeat_of"]]
    assert sum(m["n"] for k, m in doc["metrics"].items() if k.startswith(("g2r/", "r2g/"))) == sum(
        i["scheme"] == 1 for i in firsts)
    assert doc["metrics"]["jab/oracle"]["n"] == sum(i["scheme"] == 2 for i in firsts)


def test_a_participant_starting_while_the_study_is_scored_is_not_taken_for_an_edit(fresh_study, monkeypatch):
    """Scoring a live study: a session that starts and answers between the scorer's reads must not be reported as
    answers without a session (the database was not edited)."""
    study = load_study(fresh_study)
    store = AnswerStore(study.db_path, study.manifest_sha256)
    _answer(study, store, truthful)
    original = AnswerStore.participants

    def participants_then_a_new_one_answers(self):
        got = original(self)
        if not getattr(self, "_raced", False):
            self._raced = True
            late = self.new_participant("late")
            self.append_answer(late, 0, study.sequence[0], "real", 1, study.sequence)
        return got

    monkeypatch.setattr(AnswerStore, "participants", participants_then_a_new_one_answers)
    doc, _ = score_study(fresh_study, resamples=200)
    assert doc["participants"]["complete"] == 1


def test_a_negative_bootstrap_seed_is_a_clear_error(answered):
    folder, _ = answered
    res = runner.invoke(app, ["study", "score", str(folder), "--seed", "-1"])
    assert res.exit_code == 2 and "--seed must be >= 0" in res.output
    assert not (folder / "score.json").exists()
