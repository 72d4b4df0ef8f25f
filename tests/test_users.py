"""Users, roles and the audit trail of the gateway's HTTP API (issue #35 point 6), by real HTTP requests
to a running gateway bound beyond loopback (real ONNX Runtime, in-memory cameras): hashes only in the
users file, a plain secret refused, viewer / operator / admin, 401 and 403, every control action
recorded with the authenticated user, and no token or password in events, incidents or logs."""
from __future__ import annotations

import base64
import json
import logging
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeseg.apps.gateway.config import ConfigError, parse_config
from edgeseg.apps.gateway.users import (User, UserStore, hash_password, new_token, parse_users, read_users,
                                        token_sha256, verify_password, write_users)
from edgeseg.cli import app
from test_api import call, gateway, js, one_line_error
from test_gateway import Collect, cams, wait_for

PASSWORD = "correct horse battery staple"


def basic(name: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def users_file(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A users file with a token viewer, operator and admin, and a password operator (``pat``)."""
    tokens = {role: new_token() for role in ("viewer", "operator", "admin")}
    users = [User(f"{role[:3]}-user", role, token_sha256(tok)) for role, tok in tokens.items()]
    users.append(User("pat", "operator", password=hash_password(PASSWORD)))
    path = tmp_path / "users.yaml"
    write_users(path, users)
    return path, tokens


# -- the store ----------------------------------------------------------------------------------
def test_hashes_round_trip_and_wrong_secrets_fail():
    stored = hash_password(PASSWORD)
    assert stored.startswith("scrypt$16384$8$1$") and PASSWORD not in stored
    assert verify_password(PASSWORD, stored) and not verify_password(PASSWORD + "!", stored)
    assert hash_password(PASSWORD) != stored  # a fresh salt each time
    assert not verify_password(PASSWORD, "scrypt$garbage")
    tok = new_token()
    assert len(tok) >= 43
    store = UserStore([User("ann", "viewer", token_sha256(tok)), User("pat", "operator", password=stored)])
    assert store.by_token(tok).name == "ann" and store.by_token(tok + "x") is None
    assert store.by_password("pat", PASSWORD, 0.0).role == "operator"
    assert store.by_password("pat", "wrong", 1.0) is None and store.by_password("ann", PASSWORD, 2.0) is None
    assert store.by_password("pat", PASSWORD, 3.0).name == "pat"  # remembered: no second scrypt
    legacy = UserStore([], legacy_token="t" * 32)
    assert legacy.by_token("t" * 32) == User("token", "admin", token_sha256("t" * 32))


@pytest.mark.parametrize("entry, says", [
    ({"name": "ann", "role": "viewer", "token": "abc"}, "holds a plain secret"),
    ({"name": "ann", "role": "viewer", "password": "hunter2hunter2"}, "a plain password is refused"),
    ({"name": "ann", "role": "viewer", "token_sha256": "my-token-in-clear"}, "a plain token is refused"),
    ({"name": "ann", "role": "root", "token_sha256": "0" * 64}, "role must be one of viewer, operator, admin"),
    ({"name": "ann", "role": "viewer"}, "needs exactly one of token_sha256 or password"),
    ({"name": "a b", "role": "viewer", "token_sha256": "0" * 64}, "name must be"),
])
def test_plain_secrets_and_bad_entries_are_refused_in_one_line(entry, says, tmp_path):
    with pytest.raises(ConfigError) as got:
        parse_users({"users": [entry]})
    msg = str(got.value)
    assert says in msg and "\n" not in msg and "(fix: " in msg, msg
    path = tmp_path / "users.yaml"  # and through the config: the gateway does not start on it
    path.write_text(json.dumps({"users": [entry]}))
    with pytest.raises(ConfigError, match=r"^api.users_file: "):
        parse_config({"cameras": cams(1), "api": {"users_file": str(path)}})


def test_a_refusal_never_quotes_the_plain_secret():
    for entry in ({"name": "ann", "role": "viewer", "password": "hunter2hunter2"},
                  {"name": "ann", "role": "viewer", "token_sha256": "my-token-in-clear"},
                  {"name": "ann", "role": "viewer", "token": "s3cret-value"}):
        with pytest.raises(ConfigError) as got:
            parse_users({"users": [entry]})
        assert not any(v in str(got.value) for v in ("hunter2", "my-token-in-clear", "s3cret")), got.value


def test_settings_refuse_a_network_bind_without_users_or_token_and_half_a_tls_pair(tmp_path):
    raw = {"cameras": cams(1), "metrics": {"host": "0.0.0.0", "port": 0}}
    with pytest.raises(ConfigError, match=r"neither api.token_file nor api.users_file is set .*\(fix: set api.token_file"):
        parse_config(raw)
    path, _ = users_file(tmp_path)
    parse_config({**raw, "api": {"users_file": str(path)}})  # users alone are enough
    with pytest.raises(ConfigError, match=r"^api.tls_key: is not set while api.tls_cert is \(fix: set both"):
        parse_config({**raw, "api": {"users_file": str(path), "tls_cert": str(path)}})
    with pytest.raises(ConfigError, match=r"^api.trusted_proxies: is set .* neither api.token_file nor api.users_file"):
        parse_config({"cameras": cams(1), "api": {"trusted_proxies": ["127.0.0.1"]}})


@pytest.mark.parametrize("public_metrics", [False, True])
def test_behind_a_proxy_reads_need_a_viewer_also_on_loopback(tiny_onnx, tmp_path, public_metrics):
    path, tok = users_file(tmp_path)
    gw = gateway(tiny_onnx, tmp_path, n=1, api={"users_file": str(path), "trusted_proxies": ["127.0.0.1"],
                                                 "rate": 1000, "public_metrics": public_metrics}).start()
    try:
        fwd = {"X-Forwarded-For": "203.0.113.9"}
        one_line_error(call(gw, "GET", "/api/cameras", headers=fwd), 401)
        if public_metrics:  # a Prometheus without credentials, by choice
            assert call(gw, "GET", "/metrics", headers=fwd)[0] == 200
        else:
            one_line_error(call(gw, "GET", "/metrics", headers=fwd), 401)
        assert call(gw, "GET", "/api/cameras", headers={**fwd, "Authorization": f"Bearer {tok['viewer']}"})[0] == 200
        assert call(gw, "GET", "/", headers=fwd)[0] == 200 and call(gw, "GET", "/healthz", headers=fwd)[0] in (200, 503)
    finally:
        gw.stop()


# -- the command line ---------------------------------------------------------------------------
def test_users_add_prints_the_token_once_and_writes_only_hashes(tmp_path):
    runner, path = CliRunner(), tmp_path / "etc" / "users.yaml"
    got = runner.invoke(app, ["users", "add", str(path), "ann", "--role", "operator"])
    assert got.exit_code == 0, got.output
    token = got.output.strip().splitlines()[-1]
    assert len(token) >= 43 and got.output.count(token) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert token not in text and token_sha256(token) in text
    assert read_users(path)[0] == User("ann", "operator", token_sha256(token))
    assert not [p for p in path.parent.iterdir() if p.name != "users.yaml"]  # the atomic write left no temporary

    got = runner.invoke(app, ["users", "add", str(path), "pat", "--role", "viewer", "--password"],
                        input=f"{PASSWORD}\n{PASSWORD}\n")
    assert got.exit_code == 0, got.output
    assert PASSWORD not in path.read_text() and PASSWORD not in got.output
    pat = read_users(path)[1]
    assert pat.role == "viewer" and verify_password(PASSWORD, pat.password)

    got = runner.invoke(app, ["users", "add", str(path), "ann", "--role", "admin"])
    assert got.exit_code == 2 and "already in" in got.output and "--replace" in got.output
    got = runner.invoke(app, ["users", "add", str(path), "bob", "--role", "root"])
    assert got.exit_code == 2 and "one of viewer, operator, admin" in got.output

    got = runner.invoke(app, ["users", "list", str(path)])
    assert got.exit_code == 0 and got.output.split() == ["ann", "operator", "token", "pat", "viewer", "password"]
    assert runner.invoke(app, ["users", "remove", str(path), "ann"]).exit_code == 0
    assert [u.name for u in read_users(path)] == ["pat"] and stat.S_IMODE(path.stat().st_mode) == 0o600
    got = runner.invoke(app, ["users", "remove", str(path), "ann"])
    assert got.exit_code == 2 and "no user ann" in got.output


# -- the running gateway ------------------------------------------------------------------------
def test_role_matrix_audit_and_no_secret_anywhere(tiny_onnx, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="edgeseg")
    path, tok = users_file(tmp_path)
    col, jsonl = Collect(), tmp_path / "events.jsonl"
    gw = gateway(tiny_onnx, tmp_path, n=1, col=col, metrics={"host": "0.0.0.0", "port": 0},
                 api={"users_file": str(path), "rate": 1000},
                 sinks={"snapshots": {"dir": str(tmp_path / "snaps")}, "jsonl": {"path": str(jsonl)}}).start()
    v, o, a = ({"Authorization": f"Bearer {tok[r]}"} for r in ("viewer", "operator", "admin"))
    try:
        assert wait_for(lambda: len(col.of("start", "cam0")) >= 1)
        # reads beyond loopback: a viewer; no one else but the health probe and the page (no data in it)
        for p in ("/api/cameras", "/api/events", "/api/incidents", "/api/cameras/cam0/latest.jpg", "/metrics"):
            one_line_error(call(gw, "GET", p), 401)
            one_line_error(call(gw, "GET", p, headers={"Authorization": "Bearer " + new_token()}), 401)
            assert call(gw, "GET", p, headers=v)[0] == 200, p
        assert call(gw, "GET", "/healthz")[0] in (200, 503) and call(gw, "GET", "/")[0] == 200
        assert js(call(gw, "GET", "/api/whoami", headers=v)) == {"user": "vie-user", "role": "viewer"}
        assert js(call(gw, "GET", "/api/whoami", headers=basic("pat", PASSWORD))) == {"user": "pat", "role": "operator"}
        one_line_error(call(gw, "GET", "/api/cameras", headers=basic("pat", "wrong")), 401)

        # a viewer may not act: 403 naming the role needed; an operator may, and is who the trail records
        alarm = js(call(gw, "GET", "/api/cameras", headers=v))[0]["open_alarm"]
        err = one_line_error(call(gw, "POST", f"/api/incidents/{alarm}/ack", {"who": "vie"}, headers=v), 403)
        assert "needs the role operator or above" in err and "vie-user is a viewer" in err
        one_line_error(call(gw, "POST", "/api/cameras/cam0/suspend", {"minutes": 1}), 401)
        got = js(call(gw, "POST", f"/api/incidents/{alarm}/ack", {"who": "the boss", "note": "valve 3 closed"}, headers=o))
        assert got["acknowledged"]
        ack = col.of("acknowledged")[-1]
        assert (ack["user"], ack["role"], ack["who"]) == ("ope-user", "operator", "the boss")  # who: a note only
        assert got["incident"]["acknowledged"]["user"] == "ope-user"
        assert js(call(gw, "POST", "/api/cameras/cam0/suspend", {"minutes": 1, "why": "welding"},
                       headers=basic("pat", PASSWORD)))["suspended"]
        assert (col.of("suspended")[-1]["user"], col.of("suspended")[-1]["role"]) == ("pat", "operator")
        assert call(gw, "POST", "/api/cameras/cam0/resume", {}, headers=a)[0] == 200
        assert (col.of("resumed")[-1]["user"], col.of("resumed")[-1]["role"]) == ("adm-user", "admin")
        # an action nobody listed needs an admin (default deny); the admin then learns it does not exist
        err = one_line_error(call(gw, "POST", "/api/cameras/cam0/reboot", {}, headers=o), 403)
        assert "needs the role admin or above" in err
        one_line_error(call(gw, "POST", "/api/cameras/cam0/reboot", {}, headers=a), 404)
        # Basic credentials a browser remembers do not pass the cross-site check; a Bearer token does
        one_line_error(call(gw, "POST", "/api/cameras/cam0/resume", {},
                            headers={**basic("pat", PASSWORD), "Origin": "http://evil.example"}), 403)
        assert call(gw, "POST", "/api/cameras/cam0/resume", {}, headers={**o, "Origin": "http://evil.example"})[0] == 200

        # the audit trail: the events the gateway stores carry the user (the API, the JSONL file)
        listed = js(call(gw, "GET", "/api/events?updates=0&limit=1000", headers=v))
        audited = [e for e in listed if e["event"] in ("acknowledged", "suspended", "resumed")]
        assert audited and all(e.get("user") and e.get("role") for e in audited), audited
        assert wait_for(lambda: jsonl.is_file() and any(json.loads(line).get("user") == "adm-user"
                                                        for line in jsonl.read_text().splitlines()), 10)

        # a removed user is refused after a reload (SIGHUP), without a restart
        write_users(path, [u for u in read_users(path) if u.name != "ope-user"])
        gw.reload(_raw(gw, tmp_path, path, jsonl))
        one_line_error(call(gw, "GET", "/api/cameras", headers=o), 401)
        assert call(gw, "GET", "/api/cameras", headers=v)[0] == 200
    finally:
        gw.stop()
    # no secret anywhere the gateway writes or logs: events (SQLite, JSONL), incidents, the log
    secrets_ = [*tok.values(), PASSWORD, base64.b64encode(f"pat:{PASSWORD}".encode()).decode()]
    written = b"".join(p.read_bytes() for p in [*tmp_path.joinpath("state").rglob("*"), jsonl] if p.is_file())
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert written and logged
    for s in secrets_:
        assert s.encode() not in written and s not in logged, "a secret was written or logged"


def _raw(gw, tmp_path: Path, users: Path, jsonl: Path) -> dict:
    """The test gateway's config again (it was built from a dict: reload gets the same one)."""
    return {"model": str(gw.config.settings.model), "threads": 1, "cameras": cams(1),
            "metrics": {"host": "0.0.0.0", "port": 0}, "state_dir": str(tmp_path / "state"),
            "api": {"users_file": str(users), "rate": 1000},
            "sinks": {"snapshots": {"dir": str(tmp_path / "snaps")}, "jsonl": {"path": str(jsonl)}}}


def test_the_legacy_token_file_is_one_admin_named_token(tiny_onnx, tmp_path):
    tok = new_token()
    (tmp_path / "token").write_text(tok + "\n")
    col = Collect()
    gw = gateway(tiny_onnx, tmp_path, n=1, col=col, api={"token_file": str(tmp_path / "token"), "rate": 1000}).start()
    try:
        assert call(gw, "GET", "/api/cameras")[0] == 200  # loopback without read_token: reads stay open
        one_line_error(call(gw, "POST", "/api/cameras/cam0/suspend", {}), 401)
        assert js(call(gw, "GET", "/api/whoami", token=tok)) == {"user": "token", "role": "admin"}
        assert call(gw, "POST", "/api/cameras/cam0/suspend", {"who": "ann"}, token=tok)[0] == 200
        assert {k: col.of("suspended")[-1][k] for k in ("user", "role", "who")} == {"user": "token", "role": "admin", "who": "ann"}
    finally:
        gw.stop()


def test_an_unknown_name_costs_the_same_scrypt_as_a_wrong_password():
    """No timing oracle for which user names exist: an unknown name is checked against a decoy hash
    (the scrypt runs either way), so both answers take about as long."""
    import time

    store = UserStore([User("ann", "operator", password=hash_password("correct horse"))])
    store.by_password("nobody", "x", now=0.0)  # the decoy is made once, outside the timing
    times = {"wrong password": [], "unknown name": []}
    for _ in range(3):
        for label, name in (("wrong password", "ann"), ("unknown name", "nobody")):
            t0 = time.perf_counter()
            assert store.by_password(name, "guess", now=0.0) is None
            times[label].append(time.perf_counter() - t0)
    wrong, unknown = min(times["wrong password"]), min(times["unknown name"])
    assert unknown > 0.3 * wrong, times  # without the decoy an unknown name answers ~1000x faster


def test_a_users_file_others_can_read_is_warned_about(tmp_path, caplog):
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": [{"name": "ann", "role": "viewer", "token_sha256": "a" * 64}]}))
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="edgeseg"):
        read_users(path)
    assert any("chmod 600" in r.getMessage() for r in caplog.records)
    caplog.clear()
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="edgeseg"):
        read_users(path)
    assert not any("chmod 600" in r.getMessage() for r in caplog.records)


def test_only_an_admin_reloads_over_http_and_a_broken_file_changes_nothing(tiny_onnx, tmp_path):
    """The admin role's own action: POST /api/reload re-reads the config file as SIGHUP does; an
    operator gets 403; a file that no longer loads answers 400 in one line and the cameras run on."""
    from edgeseg import Gateway
    from test_api import FakeCam

    path, tok = users_file(tmp_path)
    cfg = {"model": str(tiny_onnx), "threads": 1, "cameras": cams(1), "metrics": {"port": 0},
           "state_dir": str(tmp_path / "state"), "api": {"users_file": str(path), "rate": 1000}}
    conf = tmp_path / "gateway.yaml"
    conf.write_text(json.dumps(cfg))  # JSON is YAML
    col = Collect()
    gw = Gateway(str(conf), sinks=[col], capture_factory=lambda spec: FakeCam(spec, fps=20)).start()
    o, a = ({"Authorization": f"Bearer {tok[r]}"} for r in ("operator", "admin"))
    try:
        err = one_line_error(call(gw, "POST", "/api/reload", {}, headers=o), 403)
        assert "needs the role admin" in err
        conf.write_text(json.dumps({**cfg, "cameras": cams(2)}))
        assert js(call(gw, "POST", "/api/reload", {}, headers=a))["added"] == ["cam1"]
        (ev,) = col.of("gateway_reloaded")
        assert (ev["user"], ev["role"], ev["added"]) == ("adm-user", "admin", ["cam1"])
        conf.write_text("cameras: [unclosed")
        err = one_line_error(call(gw, "POST", "/api/reload", {}, headers=a), 400)
        assert "running config stays" in err
        assert [c["name"] for c in js(call(gw, "GET", "/api/cameras", headers=a))] == ["cam0", "cam1"]
    finally:
        gw.stop()
