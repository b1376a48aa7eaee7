// onionstream: the broadcaster's chat overlay (an OBS Browser Source) with JavaScript on.
// The page works without this script (it reloads itself every 2 s through a <meta refresh>
// inside <noscript>, which a browser running scripts ignores); when it runs, it follows the
// read-only socket /overlay/live (docs/WEBSOCKET.md, "The chat overlay's socket") and keeps
// the page's list of messages live: new ones at the bottom, hidden, purged and banned ones
// gone, at most data-max of them. It reconnects with backoff for as long as the page is open
// (OBS keeps a source open for hours; the server may restart meanwhile).
//
// Owns: the overlay's DOM. Must never: send anything but ping/pong, store anything, talk to
// another host, or insert user text as HTML (names and tags go in as text; only the server's
// escaped message HTML is inserted as markup).

/** Reconnect backoff: first delay, cap (ms); jittered ±50 %. */
const BACKOFF_FIRST_MS = 1000;
const BACKOFF_MAX_MS = 30000;
/** No frame at all for this long: the connection is taken for dead (the server pings every 20 s). */
const SILENCE_MS = 50000;

/** Makes an element: h("span", {className: "x"}, "text", child, ...). */
function h(tag, props, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c);
  }
  return e;
}

class Overlay {
  constructor(body) {
    this.key = body.dataset.key;
    this.fadeMs = (Number(body.dataset.fade) || 0) * 1000;
    this.max = Number(body.dataset.max) || 20;
    this.list = document.getElementById("overlay-messages");
    /** id -> <li>, the messages shown (the page's own first). */
    this.items = new Map();
    for (const li of this.list.querySelectorAll("li.message")) {
      this.items.set(Number(li.dataset.id), li);
    }
    if (this.fadeMs > 0) setInterval(() => this.fade(), 1000);
  }

  newestId() {
    let max = null;
    for (const id of this.items.keys()) if (max === null || id > max) max = id;
    return max;
  }

  frame(m) {
    switch (m.type) {
      case "hello": {
        // After a (re)connect: drop what is no longer shown, add what is new.
        const keep = new Set(m.ids);
        for (const id of [...this.items.keys()]) if (!keep.has(id)) this.remove(id);
        m.messages.forEach((msg) => this.add(msg));
        break;
      }
      case "message":
        this.add(m.message);
        break;
      case "removed":
        m.ids.forEach((id) => this.remove(id));
        break;
      case "banned":
        if (m.banned) {
          for (const [id, li] of [...this.items]) if (li.dataset.author === m.user) this.remove(id);
        }
        break;
      default:
        break;
    }
  }

  stale(timeMs) {
    return this.fadeMs > 0 && timeMs < Date.now() - this.fadeMs;
  }

  add(m) {
    if (this.items.has(m.id) || m.hidden || m.author_banned || this.stale(m.time_ms)) return;
    const parts = [];
    if (m.broadcaster) parts.push(h("span", { className: "insignia", title: "Broadcaster" }, "##"), " ");
    const name = h("span", { className: "name" }, m.name);
    name.style.color = m.colour;
    parts.push(name);
    if (m.show_tag) parts.push(h("span", { className: "tag" }, `#${m.tag}`));
    if (m.tripcode) {
      const t = h("span", { className: "tripcode" }, `!${m.tripcode.code}`);
      t.style.background = m.tripcode.background;
      t.style.color = m.tripcode.foreground;
      parts.push(" ", t);
    }
    const text = h("span", { className: "text" });
    // The server's escaped HTML (emotes as <img data-emote>): the only markup inserted.
    text.innerHTML = m.html || "";
    for (const img of text.querySelectorAll("img.emote[data-emote]")) {
      img.src = `/emote/${encodeURIComponent(img.dataset.emote)}?key=${encodeURIComponent(this.key)}`;
    }
    const li = h(
      "li",
      { className: `message${m.broadcaster ? " from-broadcaster" : ""}`, id: `m${m.id}` },
      ...parts,
      h("span", { className: "colon" }, ":"),
      " ",
      text,
    );
    li.dataset.id = String(m.id);
    li.dataset.author = m.author;
    li.dataset.time = String(m.time_ms);
    // In id order (a message shown again, or an unbanned user's, may be older than others).
    let before = null;
    for (const [id, other] of this.items) {
      if (id > m.id && (before === null || id < Number(before.dataset.id))) before = other;
    }
    this.list.insertBefore(li, before);
    this.items.set(m.id, li);
    while (this.items.size > this.max) {
      let oldest = null;
      for (const id of this.items.keys()) if (oldest === null || id < oldest) oldest = id;
      this.remove(oldest);
    }
  }

  remove(id) {
    const li = this.items.get(id);
    if (!li) return;
    li.remove();
    this.items.delete(id);
  }

  fade() {
    for (const [id, li] of [...this.items]) if (this.stale(Number(li.dataset.time))) this.remove(id);
  }
}

/** The read-only socket, reconnecting with backoff and resuming after the newest message. */
class OverlaySocket {
  constructor(overlay) {
    this.overlay = overlay;
    this.attempt = 0;
    this.ws = null;
    this.lastHeard = Date.now();
    this.connect();
    setInterval(() => this.watchdog(), 5000);
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let u = `${scheme}//${location.host}/overlay/live?key=${encodeURIComponent(this.overlay.key)}`;
    const after = this.overlay.newestId();
    if (after !== null) u += `&after=${after}`;
    return u;
  }

  connect() {
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
      if (m.type === "hello") {
        this.attempt = 0;
        document.documentElement.classList.add("live");
      }
      this.overlay.frame(m);
    };
    ws.onclose = (ev) => {
      if (this.ws === ws) this.ws = null;
      document.documentElement.classList.remove("live");
      // 4008: fell behind; resume at once. Anything else (a restart, a refusal): back off.
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
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify(obj));
  }
}

new OverlaySocket(new Overlay(document.body));
