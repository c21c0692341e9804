// The study page: shows plan.json's items in order and sends each answer once, with its sequence number.
// No framework and no external resource: the folder works offline. The participant's token stays in
// localStorage, so a reload (or a server restart) continues where the server says the participant is.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = { plan: null, token: null, seq: 0, busy: false, shownAt: 0, intro2Seen: false };
  let storeKey = "";

  function show(screen) {
    for (const s of document.querySelectorAll(".screen")) s.hidden = s.id !== screen;
    document.body.dataset.screen = screen;
  }

  function status(text) { $("status").textContent = text || ""; }

  async function api(method, path, body) {
    const headers = { "Accept": "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (state.token) headers["X-Study-Token"] = state.token;
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                    cache: "no-store" });
    let data = {};
    try { data = await res.json(); } catch (e) { data = {}; }
    return { status: res.status, data };
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // Retries while the server cannot be reached (a restart): the same answer with the same sequence number, which
  // the server records at most once.
  async function reliable(method, path, body) {
    for (let attempt = 0, wait = 300; ; attempt++, wait = Math.min(wait * 2, 3000)) {
      try {
        const r = await api(method, path, body);
        if (r.status < 500) { status(""); return r; }
      } catch (e) { /* connection refused or reset: retried below */ }
      status("Connection to the study server lost; retrying…");
      await sleep(wait);
    }
  }

  function preload(item) {
    if (!item) return;
    const urls = item.scheme === 1 ? [item.image] : [item.source, item.pose, ...item.options.map((o) => o.image)];
    for (const u of urls) { const im = new Image(); im.src = u; }
  }

  function lock() {
    state.busy = true;
    for (const b of document.querySelectorAll("button")) b.disabled = true;
  }

  function unlock() {
    for (const b of document.querySelectorAll("button")) b.disabled = false;
    state.busy = false;
  }

  // An item can be answered only once its images are decoded: nobody judges an image they have not seen, and
  // the response time (ms) starts when it is on screen.
  function whenShown(images, focus) {
    const seq = state.seq;
    lock();
    Promise.all(images.map((im) => im.decode().catch(() => undefined))).then(() => {
      if (state.seq !== seq) return;
      unlock();
      state.shownAt = performance.now();
      document.body.dataset.ready = state.plan.items[seq].id;
      focus().focus();
    });
  }

  function sized(img, url) {
    img.width = state.plan.size[1];
    img.height = state.plan.size[0];
    img.src = url;
    return img;
  }

  function render() {
    const items = state.plan.items;
    if (state.seq >= items.length) { finish(); return; }
    const item = items[state.seq];
    document.body.dataset.seq = String(state.seq);
    document.body.dataset.item = item.id;
    delete document.body.dataset.ready;
    const n1 = state.plan.counts.scheme1;
    if (item.scheme === 1) {
      $("progress1").textContent = `Part 1 · photo ${state.seq + 1} of ${n1}`;
      show("scheme1");
      whenShown([sized($("s1-image"), item.image)], () => $("answer-real"));
    } else {
      if (!state.intro2Seen && state.seq === n1) {
        state.intro2Seen = true;
        unlock();
        show("intro2");
        $("continue").focus();
        return;
      }
      $("progress2").textContent = `Part 2 · set ${state.seq - n1 + 1} of ${state.plan.counts.scheme2}`;
      const shown = [sized($("s2-source"), item.source), sized($("s2-pose"), item.pose)];
      const box = $("s2-options");
      box.replaceChildren();
      for (const o of item.options) {
        const b = document.createElement("button");
        b.type = "button";
        b.dataset.answer = o.slot;
        b.setAttribute("aria-label", `option ${o.slot}`);
        const im = sized(document.createElement("img"), o.image);
        im.alt = `option ${o.slot}`;
        const k = document.createElement("kbd");
        k.textContent = o.slot;
        b.append(im, k);
        b.addEventListener("click", () => answer(o.slot));
        box.append(b);
        shown.push(im);
      }
      show("scheme2");
      whenShown(shown, () => box.firstChild);
    }
    preload(items[state.seq + 1]);
  }

  function finish() {
    localStorage.removeItem(storeKey);
    delete document.body.dataset.item;
    $("code").textContent = state.code || "";
    unlock();
    show("done");
  }

  async function answer(value) {
    if (state.busy || !state.token) return;
    const item = state.plan.items[state.seq];
    if (!item) return;
    lock();
    const body = { token: state.token, seq: state.seq, item: item.id, answer: value,
                   ms: Math.round(performance.now() - state.shownAt) };
    const r = await reliable("POST", "api/answer", body);
    if (r.status === 200 || (r.status === 409 && Number.isInteger(r.data.next))) {
      state.seq = r.data.next;  // on 409 (already recorded, e.g. the reply was lost) the server says where we are
      if (r.data.code) state.code = r.data.code;
      render();
    } else {
      unlock();
      status(r.data.error || `The server refused the answer (${r.status}).`);
    }
  }

  async function start() {
    if (state.busy) return;
    lock();
    if (!state.token) {
      const r = await reliable("POST", "api/session", {});
      if (r.status !== 200) { unlock(); status(r.data.error || "Could not start a session."); return; }
      state.token = r.data.token;
      state.seq = r.data.next;
      localStorage.setItem(storeKey, state.token);
    }
    render();  // unlocks once the item is on screen
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.repeat || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const screen = document.body.dataset.screen;
    const key = ev.key.toLowerCase();
    if (screen === "intro" && key === "enter") { ev.preventDefault(); start(); }
    else if (screen === "intro2" && key === "enter") { ev.preventDefault(); render(); }
    else if (screen === "scheme1" && (key === "r" || key === "g")) { ev.preventDefault(); answer(key === "r" ? "real" : "generated"); }
    else if (screen === "scheme2" && /^[1-9]$/.test(key)) {
      const item = state.plan.items[state.seq];
      if (item && item.options.some((o) => o.slot === key)) { ev.preventDefault(); answer(key); }
    }
  });

  async function init() {
    const res = await fetch("plan.json", { cache: "no-store" });
    state.plan = await res.json();
    storeKey = `posebench-study-${state.plan.study}`;
    $("n1").textContent = String(state.plan.counts.scheme1);
    $("n2").textContent = String(state.plan.counts.scheme2);
    $("minutes").textContent = String(Math.max(5, Math.round((state.plan.counts.scheme1 * 4 + state.plan.counts.scheme2 * 10) / 60)));
    $("start").addEventListener("click", start);
    $("continue").addEventListener("click", render);
    $("answer-real").addEventListener("click", () => answer("real"));
    $("answer-generated").addEventListener("click", () => answer("generated"));
    state.token = localStorage.getItem(storeKey);
    if (state.token) {
      const r = await reliable("GET", "api/progress");
      if (r.status === 200) {
        state.seq = r.data.next;
        if (r.data.code) state.code = r.data.code;
        state.intro2Seen = state.seq > state.plan.counts.scheme1;
        $("start").firstChild.textContent = "Continue ";
      } else {
        state.token = null;
        localStorage.removeItem(storeKey);
      }
    }
    show("intro");
    $("start").focus();
  }

  init().catch((e) => status(`The study could not be loaded: ${e}`));
})();
