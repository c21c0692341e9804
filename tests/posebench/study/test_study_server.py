"""The study server over real HTTP (uvicorn on 127.0.0.1): it serves the web root only, refuses malformed,
out-of-study, tampered and replayed submissions, keeps every answer across a restart and loses none of 20
concurrent participants'."""

from __future__ import annotations

import random
import sqlite3
import threading

import pytest
from studykit import HttpParticipant, ThreadServer, free_port, key_of, request

from posebench.study.folder import load_study


@pytest.fixture
def served(fresh_study):
    with ThreadServer(fresh_study) as server:
        yield server, load_study(fresh_study)


def test_serves_the_web_root_and_nothing_else(served):
    server, study = served
    status, html = request(server.url)
    assert status == 200 and b"<kbd>R</kbd>" in html
    for name in study.public_files:
        status, _ = request(server.url + name)
        assert status == 200, name
    status, plan = request(server.url + "plan.json")
    assert [i["id"] for i in plan["items"]] == study.sequence
    for path in ("key.json", "build.json", "manifest.json", "answers.sqlite", "public/index.html", "../key.json",
                 "%2e%2e/key.json", "img/../../key.json", "img/%2e%2e/%2e%2e/key.json", "/etc/passwd",
                 "%2fetc%2fpasswd", "img", "img/", "api/../key.json"):
        url = server.url + path
        status, _ = request(url)
        assert status == 404, (path, status)
    # a raw request line with `..` (clients normalise URLs, an attacker's script need not)
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /../key.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b"".join(iter(lambda: s.recv(65536), b""))
    assert reply.split(b"\r\n")[0].endswith(b"404 Not Found") and b"methods" not in reply
    status, _ = request(server.url + "plan.json", {"x": 1})  # POST to a file
    assert status == 405


def test_bad_submissions_are_refused_and_logged(served):
    server, study = served
    url = server.url + "api/answer"
    p = HttpParticipant(server.url)
    first = study.sequence[0]
    good = {"token": p.token, "seq": 0, "item": first, "answer": "real", "ms": 10}
    cases = [
        (request(url, raw=b"{not json"), 400, "not JSON"),
        (request(url, raw=b"[1, 2]"), 400, "JSON object"),
        (request(url, {k: v for k, v in good.items() if k != "answer"}), 400, "exactly the fields"),
        (request(url, {**good, "extra": 1}), 400, "exactly the fields"),
        (request(url, {**good, "seq": True}), 400, "seq must be"),
        (request(url, {**good, "seq": 10_000}), 400, "seq must be"),
        (request(url, {**good, "answer": "maybe"}), 400, "is not one of"),
        (request(url, {**good, "ms": -5}), 400, "ms must be"),
        (request(url, {**good, "item": "z999"}), 404, "not in this study"),
        (request(url, {**good, "token": "forged"}), 403, "unknown participant"),
        (request(url, {**good, "item": study.sequence[1]}), 409, "not the item at position 0"),
        (request(url, {**good, "seq": 1, "item": study.sequence[1]}), 409, "ahead"),
        (request(url, good, content_type="text/plain"), 415, "application/json"),
        (request(url, raw=b'{"token": "' + b"x" * 5000 + b'"}'), 413, "at most"),
    ]
    for (status, body), want, text in cases:
        assert status == want and text in body["error"], (want, text, status, body)
    assert p.answer(0, first, "real") == (200, {"next": 1, "total": len(study.sequence), "done": False})
    status, body = p.answer(0, first, "generated")  # a replay, even with another answer
    assert status == 409 and body["next"] == 1 and "already recorded" in body["error"]
    status, body = request(server.url + "api/progress", headers={"X-Study-Token": p.token})
    assert (status, body["next"]) == (200, 1)
    assert request(server.url + "api/progress", headers={"X-Study-Token": "forged"})[0] == 403
    with sqlite3.connect(study.db_path) as conn:
        assert conn.execute("SELECT seq, item_id, answer FROM answers").fetchall() == [(0, first, "real")]
        refused = conn.execute("SELECT status FROM refusals ORDER BY id").fetchall()
    assert [s for (s,) in refused] == [want for _, want, _ in cases] + [409, 403]


def test_restart_keeps_every_answer(fresh_study):
    key = key_of(fresh_study)
    port = free_port()
    with ThreadServer(fresh_study, port) as server:
        p = HttpParticipant(server.url)
        ids = load_study(fresh_study).sequence
        half = len(ids) // 2
        for seq in range(half):
            assert p.answer(seq, ids[seq], _truthful(key, ids[seq]))[0] == 200
    with ThreadServer(fresh_study, port) as server:  # a new server process state, the same database
        p.base = server.url
        assert request(server.url + "api/progress", headers={"X-Study-Token": p.token})[1]["next"] == half
        assert p.answer(half - 1, ids[half - 1], "real")[0] == 409  # replayed across the restart: refused
        for seq in range(half, len(ids)):
            status, body = p.answer(seq, ids[seq], _truthful(key, ids[seq]))
            assert status == 200, body
        assert body["done"] and len(body["code"]) == 10
        rows = server.store.answers()
    assert [(r.seq, r.item_id) for r in rows] == list(enumerate(ids))


def _truthful(key, item_id: str) -> str:
    item = next(i for i in key["items"] if i["id"] == item_id)
    return item["kind"] if item["scheme"] == 1 else item["options"][0]["slot"]


def test_twenty_concurrent_participants_lose_no_answer(fresh_study):
    study = load_study(fresh_study)
    ids = study.sequence
    errors: list[str] = []
    given: dict[str, list[str]] = {}
    barrier = threading.Barrier(20)

    def participant(n: int, url: str) -> None:
        try:
            p = HttpParticipant(url)
            rng = random.Random(n)
            answers = [rng.choice(study.allowed_answers(i)) for i in ids]
            given[p.token] = answers
            barrier.wait(timeout=30)
            for seq, (item, ans) in enumerate(zip(ids, answers, strict=True)):
                status, body = p.answer(seq, item, ans)
                if status != 200:
                    errors.append(f"{n}: {seq}: {status} {body}")
                if seq % 5 == 0:  # a replay in the middle of the traffic: refused, and changes nothing
                    status, body = p.answer(seq, item, ans)
                    if status != 409:
                        errors.append(f"{n}: replay {seq}: {status}")
        except Exception as exc:  # reported below, with the participant
            errors.append(f"{n}: {exc!r}")

    with ThreadServer(fresh_study) as server:
        threads = [threading.Thread(target=participant, args=(n, server.url)) for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not errors, errors[:5]
    with sqlite3.connect(study.db_path) as conn:
        rows = conn.execute("SELECT p.token, a.seq, a.item_id, a.answer FROM answers a JOIN participants p "
                            "ON p.id = a.participant_id ORDER BY p.id, a.seq").fetchall()
        replays = conn.execute("SELECT COUNT(*) FROM refusals WHERE status = 409").fetchone()[0]
    assert len(rows) == 20 * len(ids)
    got: dict[str, list[str]] = {}
    for token, seq, item, ans in rows:
        assert item == ids[seq]
        got.setdefault(token, []).append(ans)
    assert got == given
    assert replays == 20 * len(range(0, len(ids), 5))


def test_a_port_in_use_is_a_clear_error(fresh_study):
    import socket

    from typer.testing import CliRunner

    from posebench.cli import app

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res = CliRunner().invoke(app, ["study", "serve", str(fresh_study), "--port", str(port)])
    assert res.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in res.output
    assert not (fresh_study / "answers.sqlite").exists()


def test_the_completion_code_survives_a_lost_reply_and_a_reload(served):
    """The reply to the last answer can be lost (a restart): the retry, refused as a replay, and the progress a
    reload asks for both still give the participant's completion code."""
    from posebench.study.server import completion_code

    server, study = served
    ids = study.sequence
    p = HttpParticipant(server.url)
    for seq, item in enumerate(ids):
        status, body = p.answer(seq, item, study.allowed_answers(item)[0])
        assert status == 200, body
    code = completion_code(p.token, study)
    assert body["code"] == code
    status, body = p.answer(len(ids) - 1, ids[-1], study.allowed_answers(ids[-1])[0])  # the page's retry
    assert status == 409 and body["next"] == len(ids) and body["code"] == code
    status, body = request(server.url + "api/progress", headers={"X-Study-Token": p.token})
    assert status == 200 and body["done"] and body["code"] == code
    other = HttpParticipant(server.url)  # not done: no code, and a replay of another's position gives none
    assert "code" not in request(server.url + "api/progress", headers={"X-Study-Token": other.token})[1]
    status, body = other.answer(len(ids) - 1, ids[-1], study.allowed_answers(ids[-1])[0])
    assert status == 409 and "code" not in body
