/*
 * A small BX24 library for apps framed by the sandbox portal.
 *
 * The real library lives on a public host these machines can't reach; this one implements the part of
 * its API an app uses from its frame: init/install/installFinish, getAuth/refreshAuth, callMethod /
 * callBatch / callBind / callUnbind, resizeWindow/fitWindow/getScrollSize, setTitle, reloadWindow,
 * closeApplication, placement.info, isAdmin, getLang, getDomain.
 *
 * Like the real library it talks to the parent (portal) page with postMessage; the parent owns the
 * tokens, makes the REST calls on the portal's own origin (no CORS needed) and answers. The frame's
 * window.name is "<DOMAIN>|<PROTOCOL>|<APP_SID>", set by the portal page, as Bitrix24 does.
 */
(function (global) {
  "use strict";
  if (global.BX24 && global.BX24.__sandbox) { return; }

  var nameParts = String(global.name || "").split("|");
  var appSid = nameParts[2] || "";
  var parentWindow = global.parent !== global ? global.parent : null;
  var pending = {};
  var nextId = 1;
  var initData = null;
  var initCallbacks = [];
  var installCallbacks = [];

  function send(cmd, params, callback) {
    if (!parentWindow) {
      if (callback) { callback({error: "NO_PARENT", error_description: "Not inside a portal frame"}); }
      return;
    }
    var id = nextId++;
    if (callback) { pending[id] = callback; }
    // "*" because the frame can't know which of the portal's listeners (https or http) shows it; the
    // message carries no secret, and the answer is checked against window.parent below.
    parentWindow.postMessage({bx24: "sandbox", cmd: cmd, params: params || {}, id: id, sid: appSid}, "*");
  }

  global.addEventListener("message", function (event) {
    if (event.source !== parentWindow) { return; }
    var msg = event.data || {};
    if (msg.bx24 !== "sandbox-answer" || msg.sid !== appSid) { return; }
    var cb = pending[msg.id];
    delete pending[msg.id];
    if (cb) { cb(msg.result); }
  });

  function Result(answer, method, params, start) {
    this.answer = answer || {};
    this.query = {method: method, data: params, start: start || 0};
    this.status = this.answer.__status || 200;
  }
  Result.prototype.data = function () { return this.answer.result; };
  Result.prototype.error = function () {
    return this.answer.error ? {ex: this.answer, status: this.status, getError: () => this.answer, toString: () => this.answer.error + ": " + (this.answer.error_description || "")} : false;
  };
  Result.prototype.error_description = function () { return this.answer.error_description || ""; };
  Result.prototype.more = function () { return typeof this.answer.next !== "undefined"; };
  Result.prototype.total = function () { return this.answer.total || 0; };
  Result.prototype.time = function () { return this.answer.time; };
  Result.prototype.next = function (callback) {
    if (!this.more()) { return false; }
    var params = Object.assign({}, this.query.data, {start: this.answer.next});
    BX24.callMethod(this.query.method, params, callback);
    return true;
  };

  function ready(fn) {
    if (initData) { fn(); } else { initCallbacks.push(fn); }
  }

  var BX24 = {
    __sandbox: true,
    init: function (callback) { if (callback) { ready(callback); } },
    install: function (callback) { if (callback) { installCallbacks.push(callback); } },
    installFinish: function () {
      send("installFinish", {}, function () { /* the portal reloads the frame into the app page */ });
    },
    getAuth: function () {
      if (!initData) { return false; }
      return {
        access_token: initData.AUTH_ID,
        refresh_token: initData.REFRESH_ID,
        expires_in: initData.AUTH_EXPIRES,
        domain: initData.DOMAIN,
        member_id: initData.MEMBER_ID
      };
    },
    refreshAuth: function (callback) {
      send("refreshAuth", {}, function (data) {
        if (data && data.AUTH_ID) { Object.assign(initData, data); }
        if (callback) { callback(BX24.getAuth()); }
      });
    },
    callMethod: function (method, params, callback) {
      ready(function () {
        send("callMethod", {method: method, params: params || {}}, function (answer) {
          if (callback) { callback(new Result(answer, method, params)); }
        });
      });
    },
    callBatch: function (calls, callback, haltOnError) {
      var cmd = Array.isArray(calls) ? [] : {};
      Object.keys(calls).forEach(function (key) {
        var c = calls[key];
        var method = Array.isArray(c) ? c[0] : c.method;
        var params = Array.isArray(c) ? c[1] : c.params;
        cmd[key] = {method: method, params: params || {}};
      });
      ready(function () {
        send("callBatch", {cmd: cmd, halt: haltOnError ? 1 : 0}, function (answer) {
          if (!callback) { return; }
          var out = Array.isArray(cmd) ? [] : {};
          var res = (answer && answer.result) || {};
          Object.keys(cmd).forEach(function (key) {
            var err = (res.result_error || {})[key];
            var one = err ? err : {result: (res.result || {})[key], total: (res.result_total || {})[key], next: (res.result_next || {})[key]};
            out[key] = new Result(one, cmd[key].method, cmd[key].params);
          });
          callback(out);
        });
      });
    },
    callBind: function (event, handler, authType, callback) {
      var params = {event: event, handler: handler};
      if (authType) { params.auth_type = authType; }
      BX24.callMethod("event.bind", params, callback);
    },
    callUnbind: function (event, handler, authType, callback) {
      var params = {event: event, handler: handler};
      if (authType) { params.auth_type = authType; }
      BX24.callMethod("event.unbind", params, callback);
    },
    resizeWindow: function (width, height, callback) {
      send("resizeWindow", {width: width, height: height}, callback);
    },
    fitWindow: function (callback) {
      var size = BX24.getScrollSize();
      BX24.resizeWindow(size.scrollWidth, size.scrollHeight, callback);
    },
    getScrollSize: function () {
      var d = global.document.documentElement, b = global.document.body;
      return {scrollWidth: Math.max(d.scrollWidth, b ? b.scrollWidth : 0), scrollHeight: Math.max(d.scrollHeight, b ? b.scrollHeight : 0)};
    },
    setTitle: function (title, callback) { send("setTitle", {title: String(title)}, callback); },
    reloadWindow: function () { send("reloadWindow", {}); },
    closeApplication: function (callback) { send("closeApplication", {}, callback); },
    isAdmin: function () { return !!(initData && initData.IS_ADMIN); },
    getLang: function () { return initData ? initData.LANG : "en"; },
    getDomain: function () { return initData ? initData.DOMAIN : nameParts[0]; },
    placement: {
      info: function () {
        return initData ? {placement: initData.PLACEMENT, options: initData.PLACEMENT_OPTIONS || {}} : {placement: "", options: {}};
      },
      call: function (command, params, callback) { send("placementCall", {command: command, params: params || {}}, callback); }
    }
  };

  global.BX24 = BX24;

  function start() {
    send("getInitData", {}, function (data) {
      initData = data || {};
      if (initData.INSTALL) {
        installCallbacks.splice(0).forEach(function (fn) { fn(); });
      }
      initCallbacks.splice(0).forEach(function (fn) { fn(); });
    });
  }

  if (global.document.readyState === "loading") {
    global.document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})(window);
