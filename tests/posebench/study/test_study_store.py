"""The answers database: WAL mode, append-only, one answer per sequence number, timestamps, one study build."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest

from posebench.study import StudyError
from posebench.study.folder import load_study
from posebench.study.store import AnswerStore, Refused


@pytest.fixture
def opened(fresh_study):
    study = load_study(fresh_study)
    return study, AnswerStore(study.db_path, study.manifest_sha256)


def test_wal_mode_timestamps_and_sequence(opened):
    study, store = opened
    token = store.new_participant("test-agent")
    seq = study.sequence
    assert store.append_answer(token, 0, seq[0], "real", 812, seq) == 1
    assert store.append_answer(token, 1, seq[1], "generated", None, seq) == 2
    assert store.progress(token) == 2
    with sqlite3.connect(study.db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = store.answers()
    assert [(r.seq, r.item_id, r.answer, r.client_ms) for r in rows] == [(0, seq[0], "real", 812),
                                                                          (1, seq[1], "generated", None)]
    for r in rows:
        stamp = dt.datetime.fromisoformat(r.received_at)
        assert stamp.tzinfo is not None and abs(dt.datetime.now(dt.timezone.utc) - stamp) < dt.timedelta(minutes=5)


def test_replays_skips_and_swapped_items_are_refused(opened):
    study, store = opened
    token = store.new_participant(None)
    seq = study.sequence
    store.append_answer(token, 0, seq[0], "real", 1, seq)
    with pytest.raises(Refused, match="already recorded") as exc:
        store.append_answer(token, 0, seq[0], "generated", 1, seq)
    assert exc.value.status == 409 and exc.value.next_seq == 1
    with pytest.raises(Refused, match="ahead"):
        store.append_answer(token, 2, seq[2], "real", 1, seq)
    with pytest.raises(Refused, match="is not the item at position 1"):
        store.append_answer(token, 1, seq[2], "real", 1, seq)
    with pytest.raises(Refused) as exc:
        store.append_answer("not-a-token", 0, seq[0], "real", 1, seq)
    assert exc.value.status == 403
    assert [(r.seq, r.answer) for r in store.answers()] == [(0, "real")]  # the first answer stands


def test_answers_are_append_only(opened):
    study, store = opened
    token = store.new_participant(None)
    store.append_answer(token, 0, study.sequence[0], "real", 1, study.sequence)
    with sqlite3.connect(study.db_path) as conn:
        for sql in ("UPDATE answers SET answer = 'generated'", "DELETE FROM answers",
                    "UPDATE participants SET token = 'x'", "DELETE FROM participants"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(sql)
    assert [r.answer for r in store.answers()] == ["real"]


def test_a_database_of_another_build_is_refused(opened, tmp_path):
    study, _ = opened
    with pytest.raises(StudyError, match="another build of this study"):
        AnswerStore(study.db_path, "0" * 64)
    with pytest.raises(StudyError, match="no answers yet"):
        AnswerStore(tmp_path / "none.sqlite", study.manifest_sha256, create=False)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StudyError, match="not a readable answers database"):
        AnswerStore(tmp_path / "junk.sqlite", study.manifest_sha256)
    assert (tmp_path / "junk.sqlite").read_bytes().startswith(b"not a database")  # kept as it was
