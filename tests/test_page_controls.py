"""The status page's controls and layout (#35 point 4), in Debian's headless chromium against a running
gateway with an open incident and an offline camera (trouble): suspend for N minutes or until a time,
resume, and acknowledge with a note, each with who and why through the POST API and the token; every
time with its date in the browser's zone; "what to do next" on each unacknowledged incident; nothing
overflows and every button is on screen and clickable at 1400x900 and at 390x844 (a phone).

The screenshots of docs/operator.md (docs/img/) are rewritten only with ``EDGESEG_UPDATE_SCREENSHOT=1``
(a test run must not leave the checkout modified); otherwise they go to the test's temporary folder."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import chromium
from fakes import DEMO_ALARM
from test_api import call, js
from test_gateway import Collect, wait_for
from test_status_page import ClipCam, _clip  # noqa: F401 - the module fixture renders the clip

ROOT = Path(__file__).resolve().parents[1]
EXE = chromium.find()
pytestmark = pytest.mark.skipif(EXE is None, reason="chromium is not installed (apt-get install chromium; make system-deps)")
ZONE = "Asia/Kolkata"  # not the test machine's zone: the page must show the browser's, with a date

#: every button shown is inside the viewport once scrolled to, and it is what a tap at its centre hits;
#: the page is no wider than the viewport (no sideways scrolling)
PROBE = """(() => {
  const W = innerWidth, H = innerHeight, out = [];
  const sw = document.documentElement.scrollWidth;
  if (sw > W) out.push('page is ' + sw + ' px wide in a ' + W + ' px viewport');
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width && el.offsetParent !== null && r.right + scrollX > W + 0.5) out.push('runs off the right: ' + el.tagName + '.' + el.className);
  }
  let shown = 0;
  for (const b of document.querySelectorAll('button')) {
    if (b.offsetParent === null) continue;  // hidden (a closed form)
    shown++;
    b.scrollIntoView({block: 'center', inline: 'nearest'});
    const r = b.getBoundingClientRect();
    if (r.width < 20 || r.height < 20 || r.left < 0 || r.right > W || r.top < 0 || r.bottom > H) {
      out.push('button "' + b.textContent + '" outside: ' + JSON.stringify([r.left, r.top, r.right, r.bottom])); continue; }
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    if (!(hit === b || b.contains(hit))) out.push('button "' + b.textContent + '" is covered by ' + (hit && hit.tagName));
  }
  window.scrollTo(0, 0);
  return JSON.stringify({problems: out, buttons: shown});
})()"""

#: every clock time on the page comes with its date: 2026-12-07 15:04:05
TIMES = r"""JSON.stringify(document.body.innerText.match(/(\S+ )?\d{1,2}:\d{2}:\d{2}/g) || [])"""


class DeadCam:
    """A camera that never delivers a picture: offline, a trouble with its fix."""

    def isOpened(self):
        return False

    def read(self):
        return False, None

    def get(self, prop):
        return 0.0

    def release(self):
        pass


def start(tiny_onnx, tmp_path, col, token_path: Path):
    from edgeseg import Gateway

    cfg = {"model": str(tiny_onnx), "threads": 1, "threshold": 0.2, "guards": {"enabled": False},
           "alarm": {**DEMO_ALARM, "k": 2, "n": 3, "m": 4, "update_every_s": 30},
           "cameras": [{"name": "yard-east", "source": "fake://1"}, {"name": "compressor-2", "source": "fake://2"},
                       {"name": "gate-north", "source": "fake://9"}],
           "metrics": {"port": 0}, "state_dir": str(tmp_path / "state"), "api": {"token_file": str(token_path)},
           "health": {"silent_after_s": 3}, "reconnect": {"max_backoff_s": 1},
           "sinks": {"snapshots": {"dir": str(tmp_path / "snaps")}}}
    return Gateway(cfg, sinks=[col], capture_factory=lambda spec: DeadCam() if spec.endswith("9") else ClipCam(spec),
                   reconnect_unit_s=0.2).start()


def shot(browser: chromium.Browser, tmp_path: Path, name: str) -> Path:
    update = os.environ.get("EDGESEG_UPDATE_SCREENSHOT") == "1"
    path = (ROOT / "docs" / "img" if update else tmp_path) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(browser.screenshot())
    assert path.stat().st_size > 10000, path
    return path


def layout_ok(browser: chromium.Browser, least_buttons: int) -> None:
    got = json.loads(browser.js(PROBE))
    assert not got["problems"], got["problems"]
    assert got["buttons"] >= least_buttons, got


def test_controls_dates_next_steps_and_layout_at_desktop_and_phone_width(tiny_onnx, tmp_path):
    tok = secrets.token_urlsafe(24)
    (tmp_path / "token").write_text(tok)
    col = Collect()
    gw = start(tiny_onnx, tmp_path, col, tmp_path / "token")
    browser = chromium.Browser(EXE, str(tmp_path / "profile"))
    try:
        assert wait_for(lambda: col.of("start", "yard-east") and col.of("start", "compressor-2"), 30)
        assert wait_for(lambda: js(call(gw, "GET", "/api/cameras/gate-north"))["state"] == "offline", 20)
        browser.send("Emulation.setTimezoneOverride", session=True, timezoneId=ZONE)
        browser.viewport(1400, 900)
        browser.goto(gw.server.url + "/")
        browser.wait_js("document.querySelectorAll('.cam').length === 3 && !!document.querySelector('#alarms tr[data-alarm]')")
        # the token is kept for this tab only: sessionStorage, never localStorage (no expiry there)
        browser.js(f"document.querySelector('#token').value = '{tok}'; document.querySelector('#tokenform').requestSubmit()")
        assert browser.js("sessionStorage.getItem('edgeseg-token')") == tok
        assert browser.js("localStorage.getItem('edgeseg-token')") is None
        browser.wait_js("[...document.querySelectorAll('.cam')].filter(c => c.querySelector('img').naturalWidth > 0).length === 2"
                        " && !!document.querySelector('.cam[data-camera=\"gate-north\"] .trouble-offline')")

        # every time with its date, in the browser's zone (not the gateway's, not UTC)
        times = json.loads(browser.js(TIMES))
        assert times and all(re.match(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$", t) for t in times), times
        inc = js(call(gw, "GET", "/api/incidents"))[-1]
        row = browser.js(f"document.querySelector('#alarms tr[data-alarm=\"{inc['id']}\"]').cells[3].textContent")
        local = dt.datetime.fromtimestamp(inc["opened_wall_time"], ZoneInfo(ZONE)).strftime("%Y-%m-%d %H:%M:%S")
        assert row.startswith(local), (row, local)
        # what to do next, on every incident nobody has acknowledged yet
        nexts = json.loads(browser.js("""JSON.stringify([...document.querySelectorAll('#alarms tr[data-alarm]')].map(r =>
            [r.cells[2].textContent, (r.querySelector('.next') || {}).textContent || '']))"""))
        assert nexts and all(("What to do next" in n and "acknowledge" in n and "check the site" in n) == (s != "acknowledged")
                             for s, n in nexts), nexts
        assert "fix:" in browser.js("document.querySelector('.cam[data-camera=\"gate-north\"] .trouble').textContent")

        layout_ok(browser, 5)  # 3 suspend, acknowledge(s), the token's "use"
        shot(browser, tmp_path, "page-1400x900.png")

        browser.viewport(390, 844, mobile=True)
        browser.wait_js("innerWidth === 390")
        time.sleep(2.5)  # a refresh at this width
        layout_ok(browser, 5)
        shot(browser, tmp_path, "page-390x844.png")
        browser.js("document.querySelector('#alarms').closest('section').scrollIntoView()")
        shot(browser, tmp_path, "page-390x844-incidents.png")

        # suspend for 30 minutes, from the phone, with who and why
        browser.js("document.querySelector('#who').value = 'ann'; document.querySelector('#who').dispatchEvent(new Event('change'))")
        card = "document.querySelector('.cam[data-camera=\"compressor-2\"]')"
        browser.js(f"{card}.querySelector('button.suspend').click()")
        layout_ok(browser, 7)  # the form's two buttons too
        browser.js(f"""(() => {{ const f = {card}.querySelector('form.suspend-form');
            f.elements.minutes.value = '30'; f.elements.why.value = 'welding'; f.querySelector('button.confirm-suspend').click(); }})()""")
        assert wait_for(lambda: col.of("suspended", "compressor-2"), 10)
        ev = col.of("suspended", "compressor-2")[-1]
        assert (ev["who"], ev["why"], ev["minutes"]) == ("ann", "welding", 30)
        cam = js(call(gw, "GET", "/api/cameras/compressor-2"))
        assert cam["suspended"] and abs(cam["suspended_until"] - (time.time() + 1800)) < 60, cam
        until = dt.datetime.fromtimestamp(cam["suspended_until"], ZoneInfo(ZONE)).strftime("%Y-%m-%d %H:%M:%S")
        assert until in browser.wait_js(f"{card}.querySelector('.suspended-until') && {card}.querySelector('.suspended-until').textContent")
        layout_ok(browser, 5)
        browser.js(f"{card}.scrollIntoView()")
        shot(browser, tmp_path, "page-390x844-suspended.png")

        # resume, with why
        browser.wait_js(f"{card}.querySelector('button.resume').offsetParent !== null")
        browser.js(f"""(() => {{ const f = {card}.querySelector('form.resume-form');
            f.elements.why.value = 'welding done'; f.querySelector('button.resume').click(); }})()""")
        assert wait_for(lambda: col.of("resumed", "compressor-2"), 10)
        ev = col.of("resumed", "compressor-2")[-1]
        assert (ev["who"], ev["why"]) == ("ann", "welding done")
        assert not js(call(gw, "GET", "/api/cameras/compressor-2"))["suspended"]

        # suspend until a time (the browser's local date and time, two hours from now)
        browser.wait_js(f"{card}.querySelector('button.suspend').offsetParent !== null")
        browser.js(f"""(() => {{ const d = new Date(Date.now() + 7200e3), p = (n) => String(n).padStart(2, '0');
            {card}.querySelector('button.suspend').click();
            const f = {card}.querySelector('form.suspend-form');
            f.elements.until.value = `${{d.getFullYear()}}-${{p(d.getMonth() + 1)}}-${{p(d.getDate())}}T${{p(d.getHours())}}:${{p(d.getMinutes())}}`;
            f.querySelector('button.confirm-suspend').click(); }})()""")
        assert wait_for(lambda: len(col.of("suspended", "compressor-2")) == 2, 10)
        cam = js(call(gw, "GET", "/api/cameras/compressor-2"))
        assert cam["suspended"] and -70 < cam["suspended_until"] - (time.time() + 7200) < 5, cam

        # acknowledge with a note, by the name typed in the header
        alarm = browser.wait_js("(document.querySelector('#alarms tr.incident-open') || document.querySelector("
                                "'#alarms tr.incident-cleared_unacknowledged') || {}).dataset.alarm")
        browser.js("document.querySelector('#ack-note').value = 'valve 3 closed'")
        browser.js(f"document.querySelector('#alarms tr[data-alarm=\"{alarm}\"] button.ack').click()")
        assert wait_for(lambda: [e for e in col.of("acknowledged") if e["alarm_id"] == alarm], 10)
        ev = [e for e in col.of("acknowledged") if e["alarm_id"] == alarm][0]
        assert (ev["who"], ev["note"]) == ("ann", "valve 3 closed")
        assert (ev["user"], ev["role"]) == ("token", "admin")  # the audit trail: who signed in, not who was typed
        cell = browser.wait_js(f"""(() => {{ const r = document.querySelector('#alarms tr[data-alarm="{alarm}"]');
            return r && r.cells[2].textContent === 'acknowledged' && r.cells[5].textContent; }})()""")
        # the signed-in user first (the token of api.token_file is the admin "token"), then the name typed (#35 point 6)
        assert cell.startswith("token / ann, ") and cell.endswith(": valve 3 closed"), cell
        assert not browser.js(f"document.querySelector('#alarms tr[data-alarm=\"{alarm}\"] .next')")

        # a notification's link (sinks.notify page_url + #incident=<id>) lands on its row
        other = js(call(gw, "GET", "/api/incidents"))[0]["id"]
        browser.goto(gw.server.url + f"/#incident={other}")
        assert browser.wait_js(f"!!document.querySelector('#alarms tr.linked[data-alarm=\"{other}\"]')")
        assert browser.js("document.querySelectorAll('#alarms tr.linked').length") == 1

        # its evidence, full width on the phone
        browser.js(f"document.querySelector('#alarms tr[data-alarm=\"{alarm}\"] button.evidence').click()")
        browser.wait_js("[...document.querySelectorAll('#viewer img')].some(i => i.naturalWidth > 0)")
        layout_ok(browser, 5)
        browser.js("document.querySelector('#viewer').scrollIntoView()")
        shot(browser, tmp_path, "page-390x844-evidence.png")
    finally:
        browser.close()
        gw.stop()


def test_actions_without_the_token_say_so_on_the_page(tiny_onnx, tmp_path):
    """A gateway with a token refuses the page's POST without it: the card says why, nothing changes."""
    (tmp_path / "token").write_text(secrets.token_urlsafe(24))
    col = Collect()
    gw = start(tiny_onnx, tmp_path, col, tmp_path / "token")
    browser = chromium.Browser(EXE, str(tmp_path / "profile"))
    try:
        browser.goto(gw.server.url + "/")
        card = "document.querySelector('.cam[data-camera=\"yard-east\"]')"
        browser.wait_js('!!' + card)
        browser.js(f"""(() => {{ {card}.querySelector('button.suspend').click();
            {card}.querySelector('button.confirm-suspend').click(); }})()""")
        msg = browser.wait_js(f"{card}.querySelector('.msg').textContent")
        assert msg.startswith("not suspended") and "token" in msg, msg
        assert not js(call(gw, "GET", "/api/cameras/yard-east"))["suspended"] and not col.of("suspended")
    finally:
        browser.close()
        gw.stop()
