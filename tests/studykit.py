"""Shared pieces of the human-study tests: a synthetic world with three scored methods, small studies, an HTTP
participant, servers (in a thread and as the real `posebench study serve` process), headless Chromium, and
the expected score of known answers, computed here independently of posebench.study.score."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps
from typer.testing import CliRunner

METHODS = ("oracle", "copy-source", "mirror")  # the target itself, the source image, the target mirrored
SMALL = {"real": 2, "generated": 2, "sets": 3, "checks": 1, "seed": 0}  # 13 + 4 items with three methods


def synth_world(base: Path) -> dict[str, Any]:
    """Synthetic DeepFashion (3 test people x 4 poses: 12 targets, 36 pairs) and three methods' samples, each
    scored by `posebench eval` (PSNR only: no weight files)."""
    from posebench.cli import app
    from posebench.datasets.synth import synthesize

    root = base / "df"
    synthesize("deepfashion", root, identities=6, poses=4, size=(256, 176), seed=5, test_fraction=0.5,
               progress=False)
    pairs = [ln.split(",") for ln in (root / "fasion-resize-pairs-test.csv").read_text().split()[1:]]
    results = []
    for name in METHODS:
        pred = base / name
        pred.mkdir()
        for src, tgt in pairs:
            img = Image.open(root / "test" / (src if name == "copy-source" else tgt)).convert("RGB")
            if name == "mirror":
                img = ImageOps.mirror(img)
            img.save(pred / f"{Path(src).stem}__{Path(tgt).stem}.png")
        out = base / f"{name}.json"
        res = CliRunner().invoke(app, ["eval", "--protocol", "deepfashion-256x176", "--root", str(root), "--pred",
                                       str(pred), "--out", str(out), "--metrics", "psnr", "--quiet"])
        assert res.exit_code == 0, res.output
        results.append(out)
    return {"base": base, "root": root, "results": results, "pairs": pairs}


def make_small(world: dict[str, Any], out: Path, **overrides: Any) -> Path:
    from posebench.study.build import make_study

    make_study(world["results"], world["root"], out, **{**SMALL, **overrides})
    return out


def key_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "key.json").read_text())


# ---------------------------------------------------------------------------------------------------- HTTP


def request(url: str, body: Any = None, *, raw: bytes | None = None, content_type: str = "application/json",
            headers: dict[str, str] | None = None, method: str | None = None) -> tuple[int, Any]:
    """(status, parsed JSON or text) of one request; never raises for an HTTP error status."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers={**({"Content-Type": content_type} if data is not None else {}),
                                          **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, text = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


class HttpParticipant:
    """A scripted participant speaking the page's protocol."""

    def __init__(self, base_url: str):
        self.base = base_url
        status, data = request(base_url + "api/session", {})
        assert status == 200, data
        self.token = data["token"]

    def answer(self, seq: int, item: str, answer: str, ms: int | None = 100) -> tuple[int, Any]:
        return request(self.base + "api/answer", {"token": self.token, "seq": seq, "item": item, "answer": answer,
                                                  "ms": ms})


def choice_for(key: dict[str, Any], item_id: str, policy: Any) -> str:
    """The answer a scripted policy gives: `policy(item)` returns "real"/"generated" for scheme 1 and a method
    for scheme 2; the method is turned into the slot it has in this item."""
    item = next(i for i in key["items"] if i["id"] == item_id)
    choice = policy(item)
    if item["scheme"] == 1:
        return choice
    return next(o["slot"] for o in item["options"] if o["method"] == choice)


def expected_scores(key: dict[str, Any], answers: list[dict[str, str]]) -> dict[str, float]:
    """Percent per metric key from each included participant's answers (item id -> answer); repeats ignored."""
    pos: dict[str, int] = {}
    tot: dict[str, int] = {}
    items = {i["id"]: i for i in key["items"] if not i["repeat_of"]}
    for given in answers:
        for item_id, ans in given.items():
            item = items.get(item_id)
            if item is None:
                continue
            if item["scheme"] == 1:
                real = item["kind"] == "real"
                keys = [f"r2g/{item['method']}", "r2g"] if real else [f"g2r/{item['method']}"]
                hit = ans == ("generated" if real else "real")
                for k in keys:
                    tot[k] = tot.get(k, 0) + 1
                    pos[k] = pos.get(k, 0) + hit
            else:
                chosen = next(o["method"] for o in item["options"] if o["slot"] == ans)
                for m in key["methods"]:
                    k = f"jab/{m}"
                    tot[k] = tot.get(k, 0) + 1
                    pos[k] = pos.get(k, 0) + (chosen == m)
    return {k: 100.0 * pos[k] / tot[k] for k in tot}


# ---------------------------------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "plan.json", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"the study server at {url} did not come up within {timeout} s")


class ThreadServer:
    """`create_app` on uvicorn in a thread (fast to start; for the HTTP tests)."""

    def __init__(self, folder: Path, port: int | None = None):
        import uvicorn

        from posebench.study.folder import load_study
        from posebench.study.server import bind, create_app
        from posebench.study.store import AnswerStore

        study = load_study(folder)
        self.store = AnswerStore(study.db_path, study.manifest_sha256)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.sock = bind("127.0.0.1", self.port)
        config = uvicorn.Config(create_app(study, self.store), log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        wait_until_up(self.url)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


class ServeProcess:
    """The real `posebench study serve` in a subprocess; `kill()` ends it with SIGKILL (a crash)."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port = folder, port
        self.url = f"http://127.0.0.1:{port}/"
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServeProcess:
        self.proc = subprocess.Popen([sys.executable, "-m", "posebench", "study", "serve", str(self.folder),
                                      "--port", str(self.port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env={**os.environ, "COLUMNS": "200"})
        try:
            wait_until_up(self.url)
        except AssertionError:
            self.kill()
            raise
        return self

    def kill(self) -> str:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        out, _ = self.proc.communicate(timeout=15)
        return out

    def stop(self) -> str:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=15)
        return out


# ---------------------------------------------------------------------------------------------------- browser


def chromium_available() -> bool:
    return shutil.which("chromium") is not None and shutil.which("chromedriver") is not None


def chrome(profile: Path, width: int = 1200, height: int = 800):
    """Headless Debian Chromium through Debian's chromedriver (explicit paths: Selenium never downloads one)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=opts)


class BrowserParticipant:
    """Drives the study page with the keyboard only, as a participant would."""

    def __init__(self, driver, url: str):
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.url = url
        self.wait = WebDriverWait(driver, 30, poll_frequency=0.02)

    def body(self, name: str) -> str | None:
        return self.driver.execute_script(f"return document.body.dataset.{name} ?? null")

    def keys(self, keys: str) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).send_keys(keys).perform()

    def open(self) -> None:
        from selenium.webdriver.common.keys import Keys

        self.driver.get(self.url)
        self.wait.until(lambda d: self.body("screen") == "intro")
        self.keys(Keys.ENTER)
        self.wait.until(lambda d: self.body("ready") is not None or self.body("screen") in ("intro2", "done"))

    def run(self, key: dict[str, Any], policy: Any, limit: int | None = None) -> dict[str, str]:
        """Answer items until the end (or `limit` answers); returns item id -> answer given."""
        from selenium.webdriver.common.keys import Keys

        given: dict[str, str] = {}
        while limit is None or len(given) < limit:
            screen = self.body("screen")
            if screen == "done":
                break
            if screen == "intro2":
                self.keys(Keys.ENTER)
                self.wait.until(lambda d: self.body("ready") is not None)
                continue
            item, seq = self.body("ready"), self.body("seq")
            answer = choice_for(key, item, policy)
            self.keys("r" if answer == "real" else "g" if answer == "generated" else answer)
            given[item] = answer
            self.wait.until(lambda d, seq=seq: (self.body("seq") != seq and self.body("ready") is not None)
                            or self.body("screen") in ("intro2", "done"))
        return given
