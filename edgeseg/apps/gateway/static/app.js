// The status page: polls the gateway's own API (no build step, no CDN). The credential, when the
// gateway has users or a token, is kept for this tab only (sessionStorage: gone when the tab closes,
// never in localStorage without expiry, #35 point 6) and sent with every request: a token as
// "Bearer", a user name with its password as "Basic".
"use strict";
const $ = (s) => document.querySelector(s);
const token = () => sessionStorage.getItem("edgeseg-token") || "";
const basic = () => sessionStorage.getItem("edgeseg-basic") || "";
const headers = () => (token() ? { Authorization: "Bearer " + token() } : basic() ? { Authorization: "Basic " + basic() } : {});
// the name typed in the header (a note beside the signed-in user, which the audit records; not a secret:
// kept in this browser), else "status page"
const who = () => $("#who").value.trim() || "status page";
// who acted: the signed-in user (the audit trail), with the name typed beside it when that differs
const by = (r) => [r.user, r.who && r.who !== r.user ? r.who : ""].filter(Boolean).join(" / ");
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { ...headers(), ...(opts.headers || {}) } });
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
  return r;
}

// a camera's latest frame: only while the page and the camera's card are visible, and sent with the
// ETag of the frame shown (304: unchanged, no body), so many cameras in a few tabs stay well inside
// api.image_rate (#37 point 12)
const offscreen = new WeakSet();
const watcher = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
  for (const e of entries) { if (e.isIntersecting) offscreen.delete(e.target); else offscreen.add(e.target); }
}) : null;
async function image(img, path) {
  if (document.hidden || offscreen.has(img)) return;
  try {
    const r = await fetch(path, { headers: { ...headers(), ...(img.dataset.etag ? { "If-None-Match": img.dataset.etag } : {}) } });
    if (r.status === 304) return;
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
    const blob = await r.blob();
    img.dataset.etag = r.headers.get("ETag") || "";
    const old = img.src;
    img.src = URL.createObjectURL(blob);
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  } catch (e) { img.alt = e.message; }
}

// a snapshot never changes: fetched once per event, at most 10 new ones a refresh (api.image_rate)
const snaps = new Map();
let fetching = 0;
async function snapshot(img, id) {
  if (!snaps.has(id)) {
    if (fetching >= 10) return;  // the next refresh fetches it
    fetching++;
    try {
      let got;  // the clean snapshot, else the annotated one (a camera without clips has only that)
      try { got = await api(`/api/events/${id}/snapshot.jpg`); } catch (e) { got = await api(`/api/events/${id}/snapshot.jpg?annotated=1`); }
      snaps.set(id, URL.createObjectURL(await got.blob()));
    } catch (e) { img.alt = e.message; return; } finally { fetching--; }
    if (snaps.size > 100) {
      const [oldest, url] = snaps.entries().next().value;
      URL.revokeObjectURL(url);
      snaps.delete(oldest);
    }
  }
  img.src = snaps.get(id);
}

const post = (path, body) => api(path, {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
});

// an incident is acknowledged with the note typed above the table (the table is redrawn when it
// changes, a field inside it would lose what was typed), by the name typed in the header
async function ack(id) {
  const note = $("#ack-note").value.trim();
  await post("/api/incidents/" + encodeURIComponent(id) + "/ack", { who: who(), ...(note ? { note } : {}) })
    .then(() => { $("#ack-note").value = ""; $("#ack-msg").textContent = `incident ${id} acknowledged`; })
    .catch((e) => { $("#ack-msg").textContent = "not acknowledged: " + e.message; });
  refresh();
}

// -- suspend / resume a camera (maintenance, hot work): the same POST API as curl, with who and why.
// The form is made once per card and never redrawn, so what is typed stays while the page refreshes.
const CONTROLS = `<div class="controls">
  <button type="button" class="suspend">suspend...</button>
  <form class="resume-form" hidden><input name="why" maxlength="200" placeholder="why resume (optional)" aria-label="why resume">
    <button type="submit" class="resume">resume</button></form>
  <form class="suspend-form" hidden>
    <label>for <input name="minutes" type="number" min="1" max="525600" step="any" placeholder="minutes"></label>
    <label>or until <input name="until" type="datetime-local"></label>
    <label class="wide">why <input name="why" maxlength="200" placeholder="e.g. welding at the compressor"></label>
    <p class="hint">Empty both: suspended until someone resumes it. A suspended camera raises no alarm.</p>
    <button type="submit" class="confirm-suspend">suspend camera</button> <button type="button" class="cancel">cancel</button>
  </form><p class="msg" role="status"></p></div>`;

// minutes of a suspension from the form: "for N minutes", or "until" a local date and time
function minutesOf(form) {
  const m = form.elements.minutes.value, until = form.elements.until.value;
  if (m !== "") return Number(m);
  if (until === "") return null;
  const left = (new Date(until).getTime() - Date.now()) / 60000;
  if (!(left > 0)) throw new Error("that time has passed (fix: pick a time in the future)");
  return Math.round(left * 100) / 100;
}

function wire(card, name) {
  const base = "/api/cameras/" + encodeURIComponent(name), form = card.querySelector(".suspend-form");
  const msg = card.querySelector(".msg"), rform = card.querySelector(".resume-form");
  const done = (text) => { msg.textContent = text; refresh(); };
  card.querySelector("button.suspend").onclick = () => { form.hidden = false; msg.textContent = ""; };
  card.querySelector("button.cancel").onclick = () => { form.hidden = true; };
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    try {
      const minutes = minutesOf(form), why = form.elements.why.value.trim();
      const cam = await (await post(base + "/suspend", { who: who(), ...(minutes != null ? { minutes } : {}), ...(why ? { why } : {}) })).json();
      form.reset();
      form.hidden = true;
      done(`suspended by ${who()} ${cam.suspended_until ? "until " + when(cam.suspended_until) : "until resumed"}`);
    } catch (e) { msg.textContent = "not suspended: " + e.message; }
  };
  rform.onsubmit = async (ev) => {
    ev.preventDefault();
    const why = rform.elements.why.value.trim();
    try {
      await post(base + "/resume", { who: who(), ...(why ? { why } : {}) });
      rform.reset();
      done(`resumed by ${who()} at ${when(Date.now() / 1000)}`);
    } catch (e) { msg.textContent = "not resumed: " + e.message; }
  };
}

// a date and time a person reads without guessing the day or the format: 2026-12-07 15:04:05, in
// the browser's local zone (an operator compares it with the clock on the wall)
const pad = (n) => String(n).padStart(2, "0");
const when = (wall) => {
  if (!wall) return "";
  const d = new Date(wall * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
};
// what an operator does next about an incident that nobody has acknowledged yet
const nextStep = (i) => (i.active
  ? `Leak on now: check the site at ${i.camera}${i.zone ? " / " + i.zone : ""} (safely, as your site's procedure says), then acknowledge with a note of what you found and did.`
  : "The leak stopped: check the site and the evidence, then acknowledge with a note of what you found.");
// a table body is redrawn only when its rows changed: a button does not vanish under a finger
const drawn = new WeakMap();
const fill = (el, html) => { if (drawn.get(el) !== html) { el.innerHTML = html; drawn.set(el, html); } };
const STATE_TEXT = { open: "open", cleared_unacknowledged: "cleared, unacknowledged", acknowledged: "acknowledged" };

let focusOnce = null;  // the linked incident is scrolled to once, not on every refresh
async function refresh() {
  try {
    const cams = await (await api("/api/cameras")).json();
    const grid = $("#cameras");
    for (const c of cams) {
      let card = grid.querySelector(`[data-camera="${CSS.escape(c.name)}"]`);
      if (!card) {
        card = document.createElement("div");
        card.className = "cam";
        card.dataset.camera = c.name;
        card.innerHTML = '<img alt="latest frame"><div class="trouble" hidden></div><div class="info"></div>' + CONTROLS;
        grid.appendChild(card);
        wire(card, c.name);
        if (watcher) watcher.observe(card.querySelector("img"));
      }
      card.querySelector(".info").innerHTML = `<b>${esc(c.name)}</b> <span class="state state-${esc(c.state)}">${esc(c.state)}</span>
        ${c.stale ? "no frames" : c.fps + " fps"}, ${c.drops} dropped`
        + (c.suspended ? `<br><span class="suspended-until">suspended ${c.suspended_until ? "until " + esc(when(c.suspended_until)) : "until resumed"}</span>` : "");
      card.querySelector("button.suspend").hidden = !!c.suspended;
      card.querySelector(".resume-form").hidden = !c.suspended;
      if (c.suspended) card.querySelector("form.suspend-form").hidden = true;
      // trouble is shown, never an old frame as if live (#35): offline / stalled hide the last picture
      const box = card.querySelector(".trouble"), img = card.querySelector("img");
      const details = c.trouble_details || [];
      box.hidden = !details.length && !c.stale;
      box.innerHTML = (details.length ? details : [{ trouble: "silent", fix: "no frame for a while: check the camera" }])
        .map((t) => `<p class="trouble-${esc(t.trouble)}"><b>trouble: ${esc(t.trouble)}</b>${t.since_wall_time ? " since " + esc(when(t.since_wall_time)) : ""}
          <br>fix: ${esc(t.fix)}</p>`).join("")
        + `<p class="last-frame">last frame at ${c.last_frame_wall_time ? esc(when(c.last_frame_wall_time)) : "never"}</p>`;
      card.classList.toggle("stale", !!c.stale);
      if (c.stale) {
        img.hidden = true;
        if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
        img.removeAttribute("src");
        img.dataset.etag = "";
      } else {
        img.hidden = false;
        if (c.processed) image(img, "/api/cameras/" + encodeURIComponent(c.name) + "/latest.jpg");
      }
    }
    // incidents latch: unresolved ones first, each until someone acknowledges it (#35)
    const incidents = await (await api("/api/incidents?limit=50")).json();
    // data-label: the column's name, shown beside each value where a narrow screen stacks the cells
    fill($("#alarms tbody"), incidents.map((i) => `<tr data-alarm="${esc(i.id)}" class="incident-${esc(i.state)}">
      <td data-label="camera">${esc(i.camera)}${i.zone ? " / " + esc(i.zone) : ""}</td>
      <td data-label="incident">${esc(i.id)}</td><td data-label="state">${esc(STATE_TEXT[i.state] || i.state)}</td>
      <td data-label="opened">${esc(when(i.opened_wall_time))}${i.episodes > 1 ? ` (${i.episodes} episodes)` : ""}</td>
      <td data-label="cleared">${i.active ? "leak on" : esc(when(i.cleared_wall_time))}</td>
      <td data-label="acknowledged">${i.acknowledged ? esc(`${by(i.acknowledged) || "?"}, ${when(i.acknowledged.wall_time)}`
        + (i.acknowledged.note ? `: ${i.acknowledged.note}` : "")) : ""}</td>
      <td data-label="evidence">${(i.evidence_event_ids || []).length ? `<button class="evidence" data-incident="${esc(i.id)}">evidence</button>` : ""}</td>
      <td class="actions">${i.acknowledged ? "" : `<p class="next"><b>What to do next:</b> ${esc(nextStep(i))}</p>
        <button class="ack" data-id="${esc(i.id)}">acknowledge</button>`}</td></tr>`).join("")
      || '<tr><td colspan="8">none</td></tr>');
    document.querySelectorAll("button.ack").forEach((b) => { b.onclick = () => ack(b.dataset.id); });
    // a notification's link (sinks.notify page_url: .../#incident=<id>) points at its incident's row
    const linked = (location.hash.match(/^#incident=([0-9a-f]{16})$/) || [])[1];
    const row = linked && document.querySelector(`#alarms tr[data-alarm="${linked}"]`);
    if (row && !row.classList.contains("linked")) { row.classList.add("linked"); if (focusOnce !== linked) { focusOnce = linked; row.scrollIntoView({ block: "center" }); } }
    const byId = new Map(incidents.map((i) => [i.id, i]));
    document.querySelectorAll("button[data-incident]").forEach((b) => {
      const i = byId.get(b.dataset.incident);
      b.onclick = () => showEvidence(i.evidence_event_ids, `incident ${i.id} (${i.camera}${i.zone ? " / " + i.zone : ""})`);
    });
    // without the alarms' update events: a long leak's updates never push a start, an end or a trouble off
    const events = (await (await api("/api/events?limit=30&updates=0")).json()).reverse();
    fill($("#events tbody"), events.map((e) => `<tr><td data-label="id">${e.id}</td>
      <td data-label="time">${esc(when(e.wall_time))}</td><td data-label="camera">${esc(e.camera)}</td>
      <td data-label="event">${esc(e.event)}${e.rejoined ? " (rejoined)" : ""}</td>
      <td data-label="detail">${esc([e.trouble || e.reason || e.alarm_id || "", by(e) ? "by " + by(e) : "", e.why || "", e.note ? "note: " + e.note : ""].filter(Boolean).join(", "))}</td>
      <td data-label="snapshot">${e.snapshot ? `<img data-event="${e.id}" alt="snapshot">` : ""}</td>
      <td data-label="evidence">${e.snapshot || e.evidence ? `<button class="evidence" data-event-id="${e.id}" data-alarm="${esc(e.alarm_id || "")}">evidence</button>` : ""}</td></tr>`).join(""));
    document.querySelectorAll("img[data-event]").forEach((i) => { if (!i.getAttribute("src")) snapshot(i, i.dataset.event); });
    document.querySelectorAll("button[data-event-id]").forEach((b) => { b.onclick = () => eventEvidence(b.dataset.eventId, b.dataset.alarm); });
    $("#status").textContent = "updated " + when(Date.now() / 1000);
  } catch (e) {
    $("#status").textContent = "error: " + e.message;
  }
}

// -- the evidence viewer (#35 point 2): the clip in a player (the API answers Range: it seeks), the
// full-size clean and annotated snapshots, each file's download with the sha256 the recorder wrote down.
// Without a token the media load straight from their URLs; with one they are fetched with the header.
const media = [];
async function mediaUrl(url) {
  if (!headers().Authorization) return url;
  const u = URL.createObjectURL(await (await api(url)).blob());
  media.push(u);
  return u;
}
const size = (n) => (n == null ? "" : n > 1048576 ? (n / 1048576).toFixed(1) + " MB" : Math.ceil(n / 1024) + " KB");

async function showEvidence(ids, title) {
  const view = $("#viewer"), body = $("#viewer-body");
  media.splice(0).forEach((u) => URL.revokeObjectURL(u));
  $("#viewer-title").textContent = "Evidence: " + title;
  body.innerHTML = "loading";
  view.hidden = false;
  view.scrollIntoView();
  const seen = new Set(), items = [];
  // newest first: an alarm's end names its final files with their sha256, its start only where they go
  for (const id of [...ids].reverse()) {
    try {
      const ev = await (await api("/api/events/" + encodeURIComponent(id))).json();
      for (const f of ev.files || []) {
        if (seen.has(f.name)) continue;
        seen.add(f.name);
        items.push({ ...f, event: ev });
      }
    } catch (e) { /* an event trimmed from the store: the others still show */ }
  }
  if (!items.length) { body.innerHTML = "<p>no evidence file on disk (clips and snapshots off, not written yet, or deleted by retention)</p>"; return; }
  items.sort((a, b) => (a.kind === b.kind ? (a.part || 0) - (b.part || 0) || a.annotated - b.annotated : a.kind === "clip" ? -1 : 1));
  body.innerHTML = items.map((f, k) => `<figure class="file file-${f.kind}" data-name="${esc(f.name)}">
    ${f.kind === "clip" ? `<video controls preload="metadata" playsinline data-k="${k}"></video>`
      : `<a class="full" data-k="${k}" target="_blank" rel="noopener"><img alt="${esc(f.name)}" data-k="${k}"></a>`}
    <figcaption>${esc(f.kind)}${f.annotated ? " (annotated)" : " (clean)"}${f.part > 1 ? " part " + f.part : ""}
      ${f.duration_s ? esc(f.duration_s) + " s," : ""} ${esc(size(f.bytes))} - ${esc(when(f.event.wall_time))}
      <a class="download" data-k="${k}" download="${esc(f.name)}">download ${esc(f.name)}</a>
      <br><span class="sha256">sha256 ${f.sha256 ? esc(f.sha256) : "(recorded when the alarm's evidence is final)"}</span></figcaption></figure>`).join("");
  for (const [k, f] of items.entries()) {
    const src = await mediaUrl(f.url).catch(() => "");
    body.querySelectorAll(`[data-k="${k}"]`).forEach((el) => {
      if (el.tagName === "A" && el.classList.contains("download")) el.href = headers().Authorization ? src : f.download_url;
      else if (el.tagName === "A") el.href = src;
      else el.src = src;
    });
  }
}

async function eventEvidence(id, alarm) {
  if (alarm) {  // an alarm's event: every file of its incident (the end holds the final clip and sha256)
    try {
      const inc = await (await api("/api/incidents/" + encodeURIComponent(alarm))).json();
      if ((inc.evidence_event_ids || []).length) return showEvidence(inc.evidence_event_ids, `incident ${alarm} (${inc.camera})`);
    } catch (e) { /* not an incident (any more): the event's own files */ }
  }
  return showEvidence([id], "event " + id);
}
$("#viewer-close").onclick = () => {
  $("#viewer").hidden = true;
  $("#viewer-body").innerHTML = "";
  media.splice(0).forEach((u) => URL.revokeObjectURL(u));
};

// sign in: a password with the user name typed beside it, a token without one; whoami says as whom
$("#tokenform").onsubmit = (ev) => {
  ev.preventDefault();
  const user = $("#user").value.trim(), secret = $("#token").value;
  sessionStorage.removeItem("edgeseg-token");
  sessionStorage.removeItem("edgeseg-basic");
  if (user) sessionStorage.setItem("edgeseg-basic", btoa(unescape(encodeURIComponent(user + ":" + secret))));
  else sessionStorage.setItem("edgeseg-token", secret);
  $("#token").value = "";
  whoami();
  refresh();
};
async function whoami() {
  try {
    const me = await (await api("/api/whoami")).json();
    // "anonymous": a gateway without users (loopback only), where everyone may do all: nothing to say
    $("#me").textContent = me.user && me.user !== "anonymous" ? `signed in as ${me.user} (${me.role})` : "";
  } catch (e) { $("#me").textContent = "not signed in: " + e.message; }
}
whoami();
localStorage.removeItem("edgeseg-token");  // where an older page kept it without expiry: gone
$("#who").value = localStorage.getItem("edgeseg-who") || "";  // a name is no secret: remembered
$("#who").onchange = () => localStorage.setItem("edgeseg-who", $("#who").value.trim());
refresh();
setInterval(refresh, 2000);
