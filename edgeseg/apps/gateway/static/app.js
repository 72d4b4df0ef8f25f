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

async function image(img, path) {
  try {
    const blob = await (await api(path)).blob();
    const old = img.src;
    img.src = URL.createObjectURL(blob);
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  } catch (e) { img.alt = e.message; }
}

// a snapshot never changes: fetched once per event (the page stays well inside api.rate)
const snaps = new Map();
async function snapshot(img, id) {
  if (!snaps.has(id)) {
    try {
      snaps.set(id, URL.createObjectURL(await (await api(`/api/events/${id}/snapshot.jpg`)).blob()));
    } catch (e) { img.alt = e.message; return; }
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
