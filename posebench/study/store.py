"""The answers of a study in SQLite: WAL mode, append-only, every row timestamped.

Tables:
    meta(key, value)                  the study's manifest sha256: a database answers one study build only
    participants(id, token, created_at, user_agent)
    answers(id, participant_id, seq, item_id, answer, client_ms, received_at), UNIQUE(participant_id, seq)
    refusals(id, received_at, status, reason, participant_id)   every refused submission, for the record

Triggers abort any UPDATE or DELETE of participants and answers: what was recorded stays recorded. A
participant's answers carry consecutive sequence numbers 0, 1, ...; `append_answer` takes the next one only
(inside one IMMEDIATE transaction), so a replayed or reordered submission is refused, and two concurrent
submissions of the same number cannot both land (the UNIQUE constraint is the last guard).
"""

from __future__ import annotations

import datetime as dt
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from posebench.study import StudyError

BUSY_TIMEOUT_S = 30.0  # concurrent writers wait for each other this long before giving up

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS participants(
    id INTEGER PRIMARY KEY, token TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, user_agent TEXT);
CREATE TABLE IF NOT EXISTS answers(
    id INTEGER PRIMARY KEY, participant_id INTEGER NOT NULL REFERENCES participants(id),
    seq INTEGER NOT NULL CHECK(seq >= 0), item_id TEXT NOT NULL, answer TEXT NOT NULL, client_ms INTEGER,
    received_at TEXT NOT NULL, UNIQUE(participant_id, seq));
CREATE TABLE IF NOT EXISTS refusals(
    id INTEGER PRIMARY KEY, received_at TEXT NOT NULL, status INTEGER NOT NULL, reason TEXT NOT NULL,
    participant_id INTEGER);
CREATE TRIGGER IF NOT EXISTS answers_append_only_update BEFORE UPDATE ON answers
    BEGIN SELECT RAISE(ABORT, 'answers are append-only'); END;
CREATE TRIGGER IF NOT EXISTS answers_append_only_delete BEFORE DELETE ON answers
    BEGIN SELECT RAISE(ABORT, 'answers are append-only'); END;
CREATE TRIGGER IF NOT EXISTS participants_append_only_update BEFORE UPDATE ON participants
    BEGIN SELECT RAISE(ABORT, 'participants are append-only'); END;
CREATE TRIGGER IF NOT EXISTS participants_append_only_delete BEFORE DELETE ON participants
    BEGIN SELECT RAISE(ABORT, 'participants are append-only'); END;
"""


def now() -> str:
    """UTC time with milliseconds, ISO 8601: sorts as text."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class Refused(Exception):
    """A submission the store does not record; `status` is the HTTP status the server answers with."""

    def __init__(self, status: int, reason: str, next_seq: int | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.next_seq = next_seq


@dataclass(frozen=True)
class AnswerRow:
    participant: int
    seq: int
    item_id: str
    answer: str
    client_ms: int | None
    received_at: str


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, full fsync on commit."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA synchronous = FULL")  # an answer acknowledged to the page survives a crash
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class AnswerStore:
    """The answers database of one study build (`study_sha256`: its manifest hash)."""

    def __init__(self, path: str | Path, study_sha256: str, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise StudyError(f"{self.path}: no answers yet (the file does not exist); run `posebench study serve "
                             f"{self.path.parent}` and collect answers first")
        try:
            conn = connect(self.path)
        except sqlite3.DatabaseError as exc:
            raise StudyError(f"{self.path}: not a readable answers database ({exc}); it is kept as it is, move it "
                             "away to start a new one") from None
        try:
            if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
                raise StudyError(f"{self.path}: SQLite could not switch to WAL mode (a network file system?); put "
                                 "the study folder on a local disk")
            if create:
                conn.executescript(SCHEMA)
                conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('study_manifest_sha256', ?)",
                             (study_sha256,))
            row = conn.execute("SELECT value FROM meta WHERE key = 'study_manifest_sha256'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StudyError(f"{self.path}: not a readable answers database ({exc}); it is kept as it is, move it "
                             "away to start a new one") from None
        finally:
            conn.close()
        if row is None or row[0] != study_sha256:
            raise StudyError(f"{self.path} holds answers to another build of this study (manifest sha256 "
                             f"{row[0] if row else None}, this folder's is {study_sha256}); its answers do not fit "
                             "these items. Serve the folder it was made for, or move the database away")

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        conn = connect(self.path)
        try:
            yield conn
        finally:
            conn.close()

    def new_participant(self, user_agent: str | None) -> str:
        token = secrets.token_urlsafe(24)
        with self.connection() as conn:
            conn.execute("INSERT INTO participants(token, created_at, user_agent) VALUES (?, ?, ?)",
                         (token, now(), (user_agent or "")[:300]))
        return token

    def participant(self, conn: sqlite3.Connection, token: str) -> int:
        row = conn.execute("SELECT id FROM participants WHERE token = ?", (token,)).fetchone()
        if row is None:
            raise Refused(403, "unknown participant token; start a new session")
        return int(row[0])

    def progress(self, token: str) -> int:
        """The next sequence number the participant answers (= answers recorded)."""
        with self.connection() as conn:
            pid = self.participant(conn, token)
            return int(conn.execute("SELECT COUNT(*) FROM answers WHERE participant_id = ?", (pid,)).fetchone()[0])

    def append_answer(self, token: str, seq: int, item_id: str, answer: str, client_ms: int | None,
                      sequence: list[str]) -> int:
        """Record one answer; returns the next sequence number.

        Raises:
            Refused: unknown token (403); `seq` already answered (409, a replay) or not the next one (409);
                `item_id` is not the item at `seq` (409).
        """
        with self.connection() as conn, _immediate(conn):
            pid = self.participant(conn, token)
            expected = int(conn.execute("SELECT COUNT(*) FROM answers WHERE participant_id = ?",
                                        (pid,)).fetchone()[0])
            if seq < expected:
                raise Refused(409, f"answer {seq} was already recorded (a replayed submission)", expected)
            if seq > expected:
                raise Refused(409, f"answer {seq} is ahead of the participant's next answer, {expected}", expected)
            if sequence[seq] != item_id:
                raise Refused(409, f"item {item_id!r} is not the item at position {seq}", expected)
            conn.execute("INSERT INTO answers(participant_id, seq, item_id, answer, client_ms, received_at) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (pid, seq, item_id, answer, client_ms, now()))
        return expected + 1

    def record_refusal(self, status: int, reason: str, token: str | None) -> None:
        with self.connection() as conn:
            pid = None
            if token:
                row = conn.execute("SELECT id FROM participants WHERE token = ?", (token,)).fetchone()
                pid = row[0] if row else None
            conn.execute("INSERT INTO refusals(received_at, status, reason, participant_id) VALUES (?, ?, ?, ?)",
                         (now(), status, reason[:300], pid))

    def answers(self) -> list[AnswerRow]:
        with self.connection() as conn:
            rows = conn.execute("SELECT participant_id, seq, item_id, answer, client_ms, received_at FROM answers "
                                "ORDER BY participant_id, seq").fetchall()
        return [AnswerRow(*r) for r in rows]

    def participants(self) -> list[tuple[int, str]]:
        """(id, created_at) of every participant, in the order they started."""
        with self.connection() as conn:
            return [(int(r[0]), r[1]) for r in conn.execute("SELECT id, created_at FROM participants ORDER BY id")]

    def refusals(self) -> list[tuple[int, str]]:
        with self.connection() as conn:
            return [(int(r[0]), r[1]) for r in conn.execute("SELECT status, reason FROM refusals ORDER BY id")]
