"""The BX24 shim and the portal page's frame script, run under node with a minimal window/parent pair.

No browser here: the test gives the shim a fake `window` whose `parent.postMessage` answers like the
portal page does, and asserts what the shim sent and what the app's callbacks received.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

# The JS harness below keeps its own line lengths; fixtures are imported beside the recording app.
# ruff: noqa: F811, E501
from tests.sandbox.recording_app import Life, life, recording_app  # noqa: F401

SHIM = Path(__file__).resolve().parents[2] / "sandbox" / "static" / "bx24.js"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is needed to run the JS shim")

HARNESS = r"""
const fs = require("fs");
const sent = [];
const listeners = [];
const init = {DOMAIN: "p.example:8443", AUTH_ID: "acc", REFRESH_ID: "ref", AUTH_EXPIRES: "3600",
  MEMBER_ID: "m1", PLACEMENT: "CRM_DEAL_DETAIL_TAB", PLACEMENT_OPTIONS: {ID: "5"}, INSTALL: true, IS_ADMIN: true,
  LANG: "en", APP_SID: "sid1"};
const parent = {
  postMessage(msg, origin) {
    sent.push({cmd: msg.cmd, params: msg.params, sid: msg.sid, origin: origin});
    let result = true;
    if (msg.cmd === "getInitData") result = init;
    if (msg.cmd === "callMethod") result = {result: {called: msg.params.method, params: msg.params.params}, total: 60, next: 50};
    if (msg.cmd === "callBatch") result = {result: {result: {a: [1]}, result_error: {b: {error: "ERR", error_description: "bad"}}}};
    setTimeout(() => listeners.forEach(fn => fn({source: parent, data: {bx24: "sandbox-answer", id: msg.id, sid: msg.sid, result}})), 1);
  }
};
global.window = {
  name: "p.example:8443|1|sid1", parent,
  addEventListener(type, fn) { if (type === "message") listeners.push(fn); },
  document: {readyState: "complete", documentElement: {scrollWidth: 300, scrollHeight: 700}, body: {scrollWidth: 10, scrollHeight: 10}},
};
eval(fs.readFileSync(process.argv[2], "utf8"));
const BX24 = window.BX24;
const out = {};
BX24.install(() => { out.install_called = true; });
BX24.init(() => {
  out.auth = BX24.getAuth();
  out.placement = BX24.placement.info();
  BX24.callMethod("crm.deal.get", {id: 5}, (r) => {
    out.data = r.data(); out.more = r.more(); out.total = r.total(); out.error = r.error();
    BX24.callBatch({a: ["crm.deal.list", {}], b: {method: "crm.deal.get", params: {id: 0}}}, (res) => {
      out.batch_a = res.a.data(); out.batch_b_error = res.b.error().toString();
      BX24.fitWindow();
      BX24.installFinish();
      setTimeout(() => { out.sent = sent; console.log(JSON.stringify(out)); }, 20);
    });
  });
});
"""


def _run(tmp_path: Path) -> dict:
    harness = tmp_path / "harness.js"
    harness.write_text(HARNESS)
    done = subprocess.run([NODE, str(harness), str(SHIM)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_shim_talks_to_parent(tmp_path):
    out = _run(tmp_path)
    assert out["install_called"] is True
    assert out["auth"] == {
        "access_token": "acc",
        "refresh_token": "ref",
        "expires_in": "3600",
        "domain": "p.example:8443",
        "member_id": "m1",
    }
    assert out["placement"] == {"placement": "CRM_DEAL_DETAIL_TAB", "options": {"ID": "5"}}
    assert out["data"] == {"called": "crm.deal.get", "params": {"id": 5}}
    assert out["more"] is True and out["total"] == 60 and out["error"] is False
    assert out["batch_a"] == [1] and out["batch_b_error"] == "ERR: bad"
    cmds = [m["cmd"] for m in out["sent"]]
    assert cmds == ["getInitData", "callMethod", "callBatch", "resizeWindow", "installFinish"]
    assert all(m["sid"] == "sid1" for m in out["sent"])
    resize = out["sent"][3]["params"]
    assert resize == {"width": 300, "height": 700}


def test_frame_page_script_is_valid_javascript(life: Life, tmp_path):
    from urllib.parse import urlsplit

    import requests

    host = urlsplit(life.portal()["http_endpoint"]).netloc
    page = requests.get(f"http://{host}/portal/app/", timeout=10).text
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    assert scripts, "the frame page has its parent-side script"
    source = tmp_path / "frame.js"
    source.write_text("\n".join(scripts))
    checked = subprocess.run([NODE, "--check", str(source)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    # The parent answers only the registered app's origin with frame secrets.
    assert f'var appOrigin = "{life.app.url}"' in page
