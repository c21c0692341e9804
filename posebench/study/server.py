"""`posebench study serve`: the study's web server (Starlette on uvicorn).

Routes:
    GET  /                 the page (public/index.html)
    GET  /{file}           a file of public/ that the manifest lists; anything else is 404, so nothing outside
                           the web root (key.json, the answers, `..` paths) can be fetched
    POST /api/session      a new participant: {token, next, total}
    GET  /api/progress     X-Study-Token header -> {next, total, done[, code]}
    POST /api/answer       {token, seq, item, answer, ms} -> {next, total, done[, code]}

A submission is refused, with a 4xx status and a JSON {error}, when it is not a small JSON object of exactly
those fields (400, 413, 415), names an item that is not in the study (404) or an answer the item does not
offer (400), comes with an unknown token (403), or repeats or skips a sequence number, or names another item
than the one at its position (409, with the participant's next position, so the page can resynchronise).
Every refusal is logged in the answers database; every accepted answer is committed before the reply.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from posebench.study import StudyError
from posebench.study.folder import Study, load_study
from posebench.study.store import AnswerStore, Refused

MAX_BODY = 4096  # bytes: an answer is ~150; anything much larger is not one
_FIELDS = {"token", "seq", "item", "answer"}
_OPTIONAL = {"ms"}
_MEDIA = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".json": "application/json", ".png": "image/png"}
_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
                                 b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def completion_code(token: str, study: Study) -> str:
    """A code the page shows at the end (for paying participants): derived from the token, checkable later."""
    return hashlib.sha256(f"{study.manifest_sha256}:{token}".encode()).hexdigest()[:10].upper()


def parse_answer(raw: bytes, study: Study) -> dict[str, Any]:
    """The fields of an answer submission, checked; raises Refused (400 or 404) naming what is wrong."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise Refused(400, "the body must be a JSON object")
    keys = set(data)
    if not _FIELDS <= keys or keys - _FIELDS - _OPTIONAL:
        raise Refused(400, f"an answer has exactly the fields {sorted(_FIELDS)} (and optionally ms), got "
                      f"{sorted(keys)[:10]}")
    token, seq, item, answer, ms = (data["token"], data["seq"], data["item"], data["answer"], data.get("ms"))
    if not isinstance(token, str) or not 0 < len(token) <= 100:
        raise Refused(400, "token must be the session's token (a string)")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < len(study.sequence):
        raise Refused(400, f"seq must be an integer from 0 to {len(study.sequence) - 1}")
    if not isinstance(item, str) or item not in study.items:
        raise Refused(404, f"item {str(item)[:40]!r} is not in this study")
    if not isinstance(answer, str) or answer not in study.allowed_answers(item):
        raise Refused(400, f"answer {str(answer)[:40]!r} is not one of {list(study.allowed_answers(item))} for item "
                      f"{item}")
    if ms is not None and (isinstance(ms, bool) or not isinstance(ms, int) or not 0 <= ms < 10**9):
        raise Refused(400, "ms must be the milliseconds the item was shown (a non-negative integer) or null")
    return {"token": token, "seq": seq, "item": item, "answer": answer, "ms": ms}


class _SecurityHeaders:
    """ASGI middleware: the same safe headers on every response (the page loads nothing from elsewhere)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(study: Study, store: AnswerStore) -> Any:
    """The ASGI application serving `study` and recording into `store`."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    total = len(study.sequence)
    no_store = {"cache-control": "no-store"}

    async def refuse(exc: Refused, token: str | None) -> JSONResponse:
        await run_in_threadpool(store.record_refusal, exc.status, exc.reason, token)
        body: dict[str, Any] = {"error": exc.reason}
        if exc.next_seq is not None:  # set only once the token is known: the participant's own position
            body["next"] = exc.next_seq
            if exc.next_seq >= total and token:  # the reply to the last answer was lost: the retry gets the code
                body["code"] = completion_code(token, study)
        return JSONResponse(body, status_code=exc.status, headers=no_store)

    async def read_body(request: Request) -> bytes:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise Refused(415, "send the answer as application/json")
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
            raise Refused(413, f"a submission is at most {MAX_BODY} bytes")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                raise Refused(413, f"a submission is at most {MAX_BODY} bytes")
        return body

    async def new_session(request: Request) -> Response:
        try:
            await read_body(request)
        except Refused as exc:
            return await refuse(exc, None)
        token = await run_in_threadpool(store.new_participant, request.headers.get("user-agent"))
        return JSONResponse({"token": token, "next": 0, "total": total}, headers=no_store)

    async def progress(request: Request) -> Response:
        token = request.headers.get("x-study-token", "")
        try:
            nxt = await run_in_threadpool(store.progress, token)
        except Refused as exc:
            return await refuse(exc, None)
        reply: dict[str, Any] = {"next": nxt, "total": total, "done": nxt >= total}
        if nxt >= total:  # a reload after the last answer still shows the completion code
            reply["code"] = completion_code(token, study)
        return JSONResponse(reply, headers=no_store)

    async def answer(request: Request) -> Response:
        token = None
        try:
            fields = parse_answer(await read_body(request), study)
            token = fields["token"]
            nxt = await run_in_threadpool(store.append_answer, token, fields["seq"], fields["item"],
                                          fields["answer"], fields["ms"], study.sequence)
        except Refused as exc:
            return await refuse(exc, token)
        reply: dict[str, Any] = {"next": nxt, "total": total, "done": nxt >= total}
        if nxt >= total:
            reply["code"] = completion_code(token, study)
        return JSONResponse(reply, headers=no_store)

    def file_response(rel: str) -> Response:
        path = study.public_files.get(rel)
        if path is None:  # only the manifest's files: a request path never reaches the file system
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(path, media_type=_MEDIA.get(Path(rel).suffix, "application/octet-stream"),
                            headers={"cache-control": "no-cache"})

    async def index(request: Request) -> Response:
        return file_response("index.html")

    async def static(request: Request) -> Response:
        return file_response(request.path_params["path"])

    routes = [
        Route("/api/session", new_session, methods=["POST"]),
        Route("/api/progress", progress, methods=["GET"]),
        Route("/api/answer", answer, methods=["POST"]),
        Route("/", index, methods=["GET", "HEAD"]),
        Route("/{path:path}", static, methods=["GET", "HEAD"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(_SecurityHeaders)])


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, so a port in use is a clear error before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart may reuse the port at once
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StudyError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pass another --port or "
                         "--host") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(folder: str | Path, host: str = "127.0.0.1", port: int = 8000,
          on_ready: Callable[[str, Study], None] | None = None) -> None:
    """Check the study folder, open its answers database and serve it until interrupted (Ctrl+C)."""
    import uvicorn

    study = load_study(folder)
    sock = bind(host, port)  # before the database: a port in use leaves nothing behind
    try:
        store = AnswerStore(study.db_path, study.manifest_sha256)
    except BaseException:
        sock.close()
        raise
    app = create_app(study, store)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}/"
    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False,
                            timeout_graceful_shutdown=5)
    if on_ready is not None:
        on_ready(url, study)
    uvicorn.Server(config).run(sockets=[sock])
