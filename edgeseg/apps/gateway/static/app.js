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

async function ack(id) {
  await api("/api/alarms/" + encodeURIComponent(id) + "/ack", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ who: "status page" }),
  }).catch((e) => alert(e.message));
  refresh();
}

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
    const open = cams.flatMap((c) => c.open_alarms.map((a) => ({ camera: c.name, ...a })));
    $("#alarms tbody").innerHTML = open.map((a) => `<tr data-alarm="${esc(a.alarm_id)}">
      <td>${esc(a.camera)}${a.zone ? " / " + esc(a.zone) : ""}</td>
      <td>${esc(a.alarm_id)}</td><td>${a.acknowledged ? "acknowledged" : "open"}</td>
      <td>${a.acknowledged ? "" : `<button class="ack" data-id="${esc(a.alarm_id)}">acknowledge</button>`}</td></tr>`).join("")
      || '<tr><td colspan="4">none</td></tr>';
    document.querySelectorAll("button.ack").forEach((b) => { b.onclick = () => ack(b.dataset.id); });
    const events = (await (await api("/api/events?limit=30")).json()).reverse();
    $("#events tbody").innerHTML = events.map((e) => `<tr><td>${e.id}</td>
      <td>${esc(new Date((e.wall_time || 0) * 1000).toLocaleTimeString())}</td><td>${esc(e.camera)}</td>
      <td>${esc(e.event)}</td><td>${esc(e.trouble || e.reason || e.alarm_id || "")}</td>
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
