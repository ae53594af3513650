// Corral's web pages: the little script they share. Pages are rendered on
// the server; this keeps them current without a reload and tails logs.
//  * <body data-live="/ui/live">: an EventSource on that URL; every event
//    (the master's operator events) re-renders the page's <main> from the
//    server, at most a few times a second.
//  * <body data-refresh-seconds="5">: the same re-render on a timer (the
//    frameworks' pages, which have no event stream).
//  * <pre data-tail="URL">: a log tail over Mesos' /files/read protocol
//    (`?offset=-1` gives the size; then `offset` and `length` give data).
(function () {
  "use strict";
  var body = document.body;
  var status = document.getElementById("live-status");
  var pending = null;
  var inflight = false;

  function say(text) { if (status) { status.textContent = text; } }

  function rerender() {
    pending = null;
    if (inflight) { pending = setTimeout(rerender, 300); return; }
    var main = document.querySelector("main");
    if (!main || main.hasAttribute("data-static")) { return; }
    inflight = true;
    fetch(window.location.href, { cache: "no-store", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.redirected) { window.location.href = r.url; return null; }
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (html) {
        if (html === null) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("main");
        if (fresh) {
          var focusedId = document.activeElement && document.activeElement.id;
          main.innerHTML = fresh.innerHTML;
          document.title = doc.title;
          if (focusedId) {
            var again = document.getElementById(focusedId);
            if (again) { again.focus(); }
          }
          main.setAttribute("data-rendered", String(Date.now()));
        }
      })
      .catch(function (e) { say("update failed: " + e.message); })
      .then(function () { inflight = false; });
  }

  function schedule() {
    if (pending === null) { pending = setTimeout(rerender, 250); }
  }

  // A browser opens at most six HTTP/1.1 connections to one host, and an
  // event stream holds one for as long as it is open: only a page that is
  // shown keeps its stream. A hidden tab closes it and catches up when it
  // is shown again; a page being left (or put in the back/forward cache)
  // closes it at once.
  var source = null;
  function connect() {
    if (source !== null || !body.dataset.live || !window.EventSource) { return; }
    source = new EventSource(body.dataset.live);
    source.onopen = function () { say("live"); };
    source.onerror = function () { say("reconnecting\u2026"); };
    source.onmessage = schedule;
    source.addEventListener("change", schedule);
  }
  function disconnect() {
    if (source !== null) { source.close(); source = null; say("paused"); }
  }
  if (body.dataset.live) {
    if (!document.hidden) { connect(); }
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) { disconnect(); } else { connect(); schedule(); }
    });
    window.addEventListener("pagehide", disconnect);
    window.addEventListener("pageshow", function (e) {
      if (e.persisted && !document.hidden) { connect(); schedule(); }
    });
  }
  var every = parseInt(body.dataset.refreshSeconds || "0", 10);
  if (every > 0) {
    say("refreshes every " + every + " s");
    setInterval(schedule, every * 1000);
  }

  var MAX_TAIL_CHARS = 1 << 20;
  var CHUNK = 64 * 1024;
  Array.prototype.forEach.call(document.querySelectorAll("pre[data-tail]"), function (pre) {
    var url = pre.dataset.tail;
    var offset = null;
    var note = document.getElementById(pre.id + "-status");
    function sep() { return url.indexOf("?") >= 0 ? "&" : "?"; }
    function tell(t) { if (note) { note.textContent = t; } }
    function poll() {
      var q = offset === null ? "offset=-1" : "offset=" + offset + "&length=" + CHUNK;
      fetch(url + sep() + q, { cache: "no-store" })
        .then(function (r) {
          if (!r.ok) { return r.text().then(function (t) { throw new Error(t || ("HTTP " + r.status)); }); }
          return r.json();
        })
        .then(function (j) {
          if (offset === null) {
            offset = Math.max(0, j.offset - CHUNK);
            tell("following");
            setTimeout(poll, 0);
            return;
          }
          if (j.data && j.data.length > 0) {
            var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
            var text = pre.textContent + j.data;
            if (text.length > MAX_TAIL_CHARS) { text = text.slice(text.length - MAX_TAIL_CHARS); }
            pre.textContent = text;
            // Offsets count bytes; the data arrives as text.
            offset = j.offset + new TextEncoder().encode(j.data).length;
            if (atBottom) { pre.scrollTop = pre.scrollHeight; }
            setTimeout(poll, 0);
          } else {
            setTimeout(poll, 1000);
          }
        })
        .catch(function (e) { tell("stopped: " + e.message); setTimeout(poll, 3000); });
    }
    poll();
  });
})();
