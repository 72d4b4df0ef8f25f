// The status page: polls the gateway's own API (no build step, no CDN). The token, when the
// gateway has one, is kept in this browser's localStorage and sent as a Bearer header.
"use strict";
const $ = (s) => document.querySelector(s);
const token = () => localStorage.getItem("edgeseg-token") || "";
const headers = () => (token() ? { Authorization: "Bearer " + token() } : {});
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
      snaps.set(id, URL.createObjectURL(await (await api(`/api/events/${id}/snapshot.jpg`)).blob()));
    } catch (e) { img.alt = e.message; return; } finally { fetching--; }
    if (snaps.size > 100) {
      const [oldest, url] = snaps.entries().next().value;
      URL.revokeObjectURL(url);
      snaps.delete(oldest);
    }
  }
  img.src = snaps.get(id);
}

// an incident is acknowledged with the note typed above the table (the table is redrawn every refresh)
async function ack(id) {
  const note = $("#ack-note").value.trim();
  await api("/api/incidents/" + encodeURIComponent(id) + "/ack", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ who: "status page", ...(note ? { note } : {}) }),
  }).then(() => { $("#ack-note").value = ""; }).catch((e) => alert(e.message));
  refresh();
}

// a date and time a person reads without guessing the day: the browser's locale, the date included
const when = (wall) => (wall ? new Date(wall * 1000).toLocaleString() : "");
const STATE_TEXT = { open: "open", cleared_unacknowledged: "cleared, unacknowledged", acknowledged: "acknowledged" };

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
        card.innerHTML = '<img alt="latest frame"><div class="info"></div>';
        grid.appendChild(card);
        if (watcher) watcher.observe(card.querySelector("img"));
      }
      card.querySelector(".info").innerHTML = `<b>${esc(c.name)}</b> <span class="state state-${esc(c.state)}">${esc(c.state)}</span>
        ${c.fps} fps, ${c.drops} dropped${c.troubles.length ? ", trouble: " + esc(c.troubles.join(", ")) : ""}`;
      if (c.processed) image(card.querySelector("img"), "/api/cameras/" + encodeURIComponent(c.name) + "/latest.jpg");
    }
    // incidents latch: unresolved ones first, each until someone acknowledges it (#35)
    const incidents = await (await api("/api/incidents?limit=50")).json();
    $("#alarms tbody").innerHTML = incidents.map((i) => `<tr data-alarm="${esc(i.id)}" class="incident-${esc(i.state)}">
      <td>${esc(i.camera)}${i.zone ? " / " + esc(i.zone) : ""}</td>
      <td>${esc(i.id)}</td><td>${esc(i.state)}</td>
      <td>${esc(when(i.opened_wall_time))}${i.episodes > 1 ? ` (${i.episodes} episodes)` : ""}</td>
      <td>${i.active ? "leak on" : esc(when(i.cleared_wall_time))}</td>
      <td>${i.acknowledged ? esc(`${i.acknowledged.who || "?"}, ${when(i.acknowledged.wall_time)}`
        + (i.acknowledged.note ? `: ${i.acknowledged.note}` : "")) : ""}</td>
      <td>${i.acknowledged ? "" : `<button class="ack" data-id="${esc(i.id)}">acknowledge</button>`}</td></tr>`).join("")
      || '<tr><td colspan="7">none</td></tr>';
    document.querySelectorAll("button.ack").forEach((b) => { b.onclick = () => ack(b.dataset.id); });
    // without the alarms' update events: a long leak's updates never push a start, an end or a trouble off
    const events = (await (await api("/api/events?limit=30&updates=0")).json()).reverse();
    $("#events tbody").innerHTML = events.map((e) => `<tr><td>${e.id}</td>
      <td>${esc(when(e.wall_time))}</td><td>${esc(e.camera)}</td>
      <td>${esc(e.event)}${e.rejoined ? " (rejoined)" : ""}</td><td>${esc(e.trouble || e.reason || e.alarm_id || "")}</td>
      <td>${e.snapshot ? `<img data-event="${e.id}" alt="snapshot">` : ""}</td></tr>`).join("");
    document.querySelectorAll("img[data-event]").forEach((i) => snapshot(i, i.dataset.event));
    $("#status").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    $("#status").textContent = "error: " + e.message;
  }
}

$("#tokenform").onsubmit = (ev) => {
  ev.preventDefault();
  localStorage.setItem("edgeseg-token", $("#token").value);
  refresh();
};
refresh();
setInterval(refresh, 2000);
