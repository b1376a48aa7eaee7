// onionstream: the page with JavaScript on. Progressive enhancement only: the page works
// without this script (refreshing frames, plain <video>); when it runs, it opens ONE WebSocket
// (/live, protocol in docs/WEBSOCKET.md) and replaces the frames with live parts, and plays
// the same /stream.mp4 through Media Source Extensions with a latency indicator.
// Plain JavaScript modules, no build step, nothing from any other site.
//
// Owns: wiring the socket to the chat, the info panel and the player. Must never: store
// anything (no cookies, no storage), talk to another host, or put text into the page as HTML
// (message HTML comes escaped from the server and is the only markup inserted).

import { Chat } from "./chat.js";
import { Player } from "./player.js";

const $ = (id) => document.getElementById(id);

/** Close codes after which reconnecting is pointless (docs/WEBSOCKET.md). */
const TERMINAL = new Set([1008, 4001, 4003]);
/** Reconnect backoff: first delay, cap (ms); jittered ±50 %. */
const BACKOFF_FIRST_MS = 1000;
const BACKOFF_MAX_MS = 30000;
/** No frame at all for this long: the connection is taken for dead (the server pings every 20 s). */
const SILENCE_MS = 50000;

/** One WebSocket with reconnects (backoff) and resume (`after`: newest message shown). */
class LiveSocket {
  constructor(token, handlers) {
    this.token = token;
    this.h = handlers;
    this.after = null;
    this.attempt = 0;
    this.ws = null;
    this.lastHeard = Date.now();
    this.stopped = false;
    this.connect();
    setInterval(() => this.watchdog(), 5000);
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let u = `${scheme}//${location.host}/live?token=${encodeURIComponent(this.token)}`;
    if (this.after !== null) u += `&after=${this.after}`;
    return u;
  }

  connect() {
    if (this.stopped) return;
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch (e) {
      this.retry(false);
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.lastHeard = Date.now();
    };
    ws.onmessage = (ev) => {
      this.lastHeard = Date.now();
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      if (m.type === "ping") {
        this.send({ type: "pong" });
        return;
      }
      if (m.type === "hello") this.attempt = 0;
      this.h.frame(m);
    };
    ws.onclose = (ev) => {
      if (this.ws === ws) this.ws = null;
      if (TERMINAL.has(ev.code)) {
        this.stopped = true;
        this.h.terminal(ev.code, ev.reason);
        return;
      }
      this.h.down(ev.code === 1001 && ev.reason ? ev.reason : "");
      this.retry(ev.code === 4008);
    };
  }

  retry(now) {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    this.attempt += 1;
    setTimeout(() => this.connect(), now ? 0 : base * (0.5 + Math.random()));
  }

  watchdog() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && Date.now() - this.lastHeard > SILENCE_MS) {
      this.ws.close(4000, "silent");
    }
  }

  send(obj) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }
}

/** The info panel: title, live state, viewers, uptime, notices. */
class Info {
  constructor() {
    this.uptimeBase = null;
    setInterval(() => this.tickUptime(), 1000);
  }

  update(s) {
    const state = $("live-state");
    state.textContent = s.online ? "LIVE" : "OFFLINE";
    state.className = `badge ${s.online ? "live" : "offline"}`;
    $("live-title").textContent = s.title;
    const top = document.querySelector(".topbar-title");
    if (top) top.textContent = s.title;
    document.title = s.title;
    $("live-viewers").textContent = String(s.viewers);
    this.uptimeBase = s.uptime_ms == null ? null : { ms: s.uptime_ms, at: Date.now() };
    this.tickUptime();
  }

  tickUptime() {
    const box = $("live-uptime-box");
    if (!this.uptimeBase) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    const s = Math.floor((this.uptimeBase.ms + Date.now() - this.uptimeBase.at) / 1000);
    const h = Math.floor(s / 3600);
    const m = Math.floor(s / 60) % 60;
    const two = (n) => String(n).padStart(2, "0");
    $("live-uptime").textContent = h > 0 ? `${h}:${two(m)}:${two(s % 60)}` : `${m}:${two(s % 60)}`;
  }

  notice(text) {
    const n = $("live-notice");
    n.textContent = text || "";
    n.hidden = !text;
  }
}

/** The frames of the no-JS page: taken out while the live parts run (so they stop
 * refreshing), put back if the live connection ends for good. */
class Frames {
  constructor() {
    this.parts = [
      [document.querySelector(".info-frame"), $("info-live")],
      [document.querySelector(".chat-messages-frame"), null],
      [document.querySelector(".chat-form-frame"), null],
      [document.querySelector(".frame-users"), null],
    ].filter(([frame]) => frame);
    this.marks = this.parts.map(([frame]) => {
      const mark = document.createComment("frame");
      frame.before(mark);
      return mark;
    });
    this.live = false;
  }

  goLive() {
    if (this.live) return;
    this.live = true;
    this.parts.forEach(([frame, replacement]) => {
      frame.remove();
      if (replacement) replacement.hidden = false;
    });
    $("chat-live").hidden = false;
    document.documentElement.classList.add("live");
  }

  fallBack() {
    if (!this.live) return;
    this.live = false;
    this.parts.forEach(([frame, replacement], i) => {
      this.marks[i].after(frame);
      if (replacement) replacement.hidden = true;
    });
    $("chat-live").hidden = true;
    document.documentElement.classList.remove("live");
  }
}

function start(token) {
  document.documentElement.classList.add("js");
  const info = new Info();
  const frames = new Frames();
  const player = new Player({
    holder: document.querySelector(".player"),
    token,
    codecs: document.body.dataset.codecs || "",
    epoch: Number(document.body.dataset.epoch || 0),
    quality: document.body.dataset.quality || "source",
    qualities: $("qualities"),
    latencyBox: $("latency-box"),
    latency: $("latency"),
    jump: $("jump-live"),
    notice: (t) => info.notice(t),
  });
  let socket = null;
  const chat = new Chat({
    token,
    send: (m) => socket !== null && socket.send(m),
    state: (t) => {
      const s = $("chat-state");
      s.textContent = t || "";
      s.hidden = !t;
    },
  });
  socket = new LiveSocket(token, {
    frame(m) {
      if (m.type === "hello") {
        frames.goLive();
        chat.state("");
        info.update(m.status);
        player.update(m.status);
      } else if (m.type === "status") {
        info.update(m);
        player.update(m);
      }
      chat.frame(m);
      socket.after = chat.newestId();
    },
    down(reason) {
      if (frames.live) chat.state(reason ? `${reason} Reconnecting…` : "Connection lost. Reconnecting…");
    },
    terminal(code, reason) {
      frames.fallBack();
      info.notice(reason || "The live connection was closed.");
    },
  });
}

const token = document.body.dataset.token;
if (token) start(token);
