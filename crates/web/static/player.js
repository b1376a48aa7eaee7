// onionstream: the live-edge player of the JavaScript page. Plays the same single
// /stream.mp4 response as the plain <video> (one request per viewer, which Tor favours), but
// through Media Source Extensions fed by a streaming fetch, so it can show how far behind
// live it is, catch up gently (slightly faster playback) or jump to live, skip gaps, and
// follow the stream going offline, coming back and restarting without a reload.
// Without MSE (or with codecs it cannot name) it keeps the plain <video src> and still
// follows offline/online/restart.
// Qualities (renditions: source, low, audio): the page's quality links switch without a
// reload; in "auto" (the default) the player moves down from the source to the low video
// when it keeps stalling, and tries the source again after a while of smooth playing (longer
// after each failed try). Between two video renditions the switch is seamless: the new
// response's init segment goes into the same SourceBuffer, its media placed right after what
// is buffered. Sound only needs a new MediaSource (another set of tracks).
//
// Owns: the <video> (or <audio>) element, the quality choice and the latency indicator.
// Must never: open more than one /stream.mp4 at a time, or fetch anything but /stream.mp4
// from this site.

/** Where the playhead aims to be behind the newest media received (s). Firefox plays
 * smoothly with about 2 s buffered ahead (shared/reference/browser-playback.md). */
export const TARGET_LATENCY = 2.0;
/** Behind by more than target + this: play 10 % faster until back near the target. */
const CATCH_UP_ABOVE = 1.5;
const CATCH_UP_RATE = 1.1;
/** Behind by more than this (e.g. after a pause): offer "Jump to live". */
const JUMP_ABOVE = 6.0;
/** Media kept behind the playhead (s); older media is removed from the buffer. */
const KEEP_BEHIND = 20;
/** Retry delays after the stream response ends or fails while the stream is live (ms). */
const RETRY_MS = [500, 1000, 2000, 4000, 8000];
/** Auto quality: this many stalls within STALL_WINDOW_MS move the player down a quality. */
const STALLS_TO_SWITCH = 2;
const STALL_WINDOW_MS = 30000;
/** Stalls in the first moments after a start or a switch are the start, not the circuit. */
const SETTLE_MS = 4000;
/** Auto quality: smooth playing for this long below the source tries the source again; each
 * failed try doubles it, up to UP_HOLD_MAX_MS. */
const UP_HOLD_MS = 60000;
const UP_HOLD_MAX_MS = 600000;
/** A try up that stalls within this long counts as failed. */
const UP_TRIAL_MS = 20000;

export class Player {
  constructor({ holder, token, codecs, epoch, quality, qualities, latencyBox, latency, jump, notice }) {
    this.holder = holder;
    this.token = token;
    this.codecs = codecs;
    this.quality = quality || "source";
    this.qualities = qualities; // the <nav> of quality links, or null
    this.offers = this.readOffers();
    this.auto = true;
    this.stalls = [];
    this.settleUntil = 0;
    this.smoothSince = performance.now();
    this.upHold = UP_HOLD_MS;
    this.trialUntil = 0; // while trying a higher quality: when the try has succeeded
    this.trialFrom = null;
    this.splice = null; // "pending" before the first append of a new rendition, then "appending"
    this.queue = [];
    this.fetchId = 0;
    this.epoch = epoch || null;
    this.latencyBox = latencyBox;
    this.latencyEl = latency;
    this.jumpButton = jump;
    this.notice = notice;
    this.video = holder.querySelector("video, audio");
    this.online = Boolean(this.video);
    this.run = 0; // generation of the current pipeline; older ones stop themselves
    this.retries = 0;
    this.lastChunkAt = 0;
    this.started = false;
    jump.addEventListener("click", () => this.jumpToLive());
    if (this.video) this.listen(this.video);
    this.wireQualities();
    setInterval(() => this.watch(), 250);
    if (this.video && this.mseUsable()) this.startMse();
    else if (this.video) holder.dataset.mode = "plain";
  }

  streamUrl() {
    const q = this.quality === "source" ? "" : `q=${encodeURIComponent(this.quality)}&`;
    return `/stream.mp4?${q}token=${encodeURIComponent(this.token)}`;
  }

  mimeType() {
    return `${this.audioOnly() ? "audio" : "video"}/mp4; codecs="${this.codecs}"`;
  }

  audioOnly() {
    return Boolean(this.offers.find((o) => o.name === this.quality && o.audio));
  }

  /** The qualities the page's links offer: [{name, label, codecs, audio}]. */
  readOffers() {
    if (!this.qualities) return [];
    return [...this.qualities.querySelectorAll("[data-q]")].map((e) => ({
      name: e.dataset.q,
      label: e.textContent,
      codecs: e.dataset.codecs || "",
      audio: e.dataset.audio === "true",
    }));
  }

  /** The quality links switch without a reload; "Auto" lets the player choose. */
  wireQualities() {
    const nav = this.qualities;
    if (!nav) return;
    nav.addEventListener("click", (ev) => {
      const el = ev.target.closest("[data-q], [data-auto]");
      if (!el) return;
      ev.preventDefault();
      if (el.dataset.auto !== undefined) {
        this.auto = true;
        this.upHold = UP_HOLD_MS;
        this.smoothSince = performance.now();
      } else {
        this.auto = false;
        this.switchTo(el.dataset.q);
      }
      this.showQualities();
    });
    this.showQualities();
  }

  /** Marks the current quality in the links, and whether the player chooses. */
  showQualities() {
    const nav = this.qualities;
    if (!nav) return;
    this.holder.dataset.quality = this.quality;
    this.holder.dataset.auto = String(this.auto);
    let auto = nav.querySelector("[data-auto]");
    if (!auto) {
      auto = document.createElement("a");
      auto.href = "#";
      auto.className = "quality";
      auto.dataset.auto = "";
      auto.textContent = "Auto";
      nav.append(auto);
    }
    for (const e of nav.querySelectorAll("[data-q], [data-auto]")) {
      const on = e.dataset.auto !== undefined ? this.auto : e.dataset.q === this.quality;
      e.classList.toggle("current", on);
      if (on) e.setAttribute("aria-current", "true");
      else e.removeAttribute("aria-current");
      if (e.tagName === "STRONG") {
        // The no-JS page marks the current one as text: make it a link like the others.
        const a = document.createElement("a");
        a.href = "#";
        a.className = e.className;
        Object.assign(a.dataset, e.dataset);
        a.textContent = e.textContent;
        if (on) a.setAttribute("aria-current", "true");
        e.replaceWith(a);
      }
    }
  }

  /** New offers from a status frame: the links follow (a rendition came or went). */
  updateOffers(list) {
    if (!this.qualities || !Array.isArray(list)) return;
    const same = list.length === this.offers.length && list.every((o, i) => o.name === this.offers[i].name && o.codecs === this.offers[i].codecs);
    if (same) return;
    this.offers = list.map((o) => ({ name: o.name, label: o.label, codecs: o.codecs, audio: o.audio_only }));
    this.qualities.querySelectorAll("[data-q]").forEach((e) => e.remove());
    const auto = this.qualities.querySelector("[data-auto]");
    for (const o of this.offers) {
      const a = document.createElement("a");
      a.href = "#";
      a.className = "quality";
      a.dataset.q = o.name;
      a.dataset.codecs = o.codecs;
      a.dataset.audio = String(o.audio);
      a.textContent = o.label;
      this.qualities.insertBefore(a, auto);
    }
    this.qualities.hidden = this.offers.length < 2;
    if (!this.offers.some((o) => o.name === this.quality) && this.offers.length > 0) this.switchTo("source");
    this.showQualities();
  }

  /** Plays another quality: seamless between video renditions under MSE, else a restart. */
  switchTo(name) {
    const to = this.offers.find((o) => o.name === name);
    if (!to || name === this.quality) return;
    const fromAudio = this.audioOnly();
    this.quality = name;
    this.stalls = [];
    this.settleUntil = performance.now() + SETTLE_MS;
    this.showQualities();
    const wasCodecs = this.codecs;
    this.codecs = to.codecs;
    const seamless = this.holder.dataset.mode === "mse" && this.sb && !fromAudio && !to.audio && this.ms && this.ms.readyState === "open";
    if (!seamless || (wasCodecs !== to.codecs && typeof this.sb.changeType !== "function")) {
      this.restart();
      return;
    }
    this.splice = "pending";
    this.queue.length = 0;
    this.fetch(this.run);
  }

  /** Records a stall (the element ran out of media while playing) and, in auto mode, moves
   * down when they come too often, or back when a try of a higher quality stalls. */
  stalled() {
    const now = performance.now();
    if (!this.started || now < this.settleUntil) return;
    this.smoothSince = now;
    this.stalls = this.stalls.filter((t) => now - t < STALL_WINDOW_MS);
    this.stalls.push(now);
    if (!this.auto) return;
    if (this.trialFrom && now < this.trialUntil) {
      // The higher quality did not hold: back down, and wait longer before the next try.
      const back = this.trialFrom;
      this.trialFrom = null;
      this.upHold = Math.min(this.upHold * 2, UP_HOLD_MAX_MS);
      this.switchTo(back);
      return;
    }
    if (this.stalls.length >= STALLS_TO_SWITCH) {
      const lower = this.lowerVideo();
      if (lower) {
        this.notice(`Your connection is slow for this quality: switched to ${lower.label}.`);
        this.switchTo(lower.name);
      }
    }
  }

  /** The next video quality below the current one, if any. */
  lowerVideo() {
    const videos = this.offers.filter((o) => !o.audio);
    const at = videos.findIndex((o) => o.name === this.quality);
    return at >= 0 && at + 1 < videos.length ? videos[at + 1] : null;
  }

  /** In auto mode, after smooth playing below the source, tries one quality up. */
  maybeUp() {
    if (!this.auto || !this.started || this.audioOnly()) return;
    const now = performance.now();
    if (this.trialFrom && now >= this.trialUntil) this.trialFrom = null; // the try held
    if (this.trialFrom || now - this.smoothSince < this.upHold) return;
    const videos = this.offers.filter((o) => !o.audio);
    const at = videos.findIndex((o) => o.name === this.quality);
    if (at <= 0) return;
    this.trialFrom = this.quality;
    this.trialUntil = now + UP_TRIAL_MS;
    this.smoothSince = now;
    this.switchTo(videos[at - 1].name);
  }

  listen(v) {
    v.addEventListener("waiting", () => {
      if (!v.seeking) this.stalled();
    });
  }

  mseUsable() {
    return Boolean(this.codecs) && typeof MediaSource !== "undefined" && MediaSource.isTypeSupported(this.mimeType());
  }

  /** The <video> (or <audio> for sound only), made if missing or of the other kind. */
  ensureVideo() {
    const tag = this.audioOnly() ? "AUDIO" : "VIDEO";
    if (this.video && this.video.tagName === tag) return this.video;
    const v = document.createElement(tag.toLowerCase());
    v.className = tag === "AUDIO" ? "video audio-only" : "video";
    v.controls = true;
    v.muted = tag === "VIDEO" && (!this.video || this.video.muted);
    v.autoplay = true;
    if (tag === "VIDEO") v.playsInline = true;
    if (this.video) {
      this.video.removeAttribute("src");
      this.video.load();
    }
    this.holder.querySelectorAll("video, audio").forEach((e) => e.remove());
    this.holder.prepend(v);
    this.video = v;
    this.listen(v);
    return v;
  }

  /** A status frame from the live socket. */
  update(s) {
    const wasOnline = this.online;
    this.online = s.online;
    this.updateOffers(s.renditions);
    const mine = this.offers.find((o) => o.name === this.quality);
    if (mine && mine.codecs) this.codecs = mine.codecs;
    else if (s.codecs && this.quality === "source") this.codecs = s.codecs;
    this.holder.classList.toggle("is-offline", !s.online);
    if (!s.online) {
      this.showOffline(true);
      return;
    }
    this.showOffline(false);
    const restarted = this.epoch !== null && s.epoch !== this.epoch;
    this.epoch = s.epoch;
    if (!wasOnline || restarted || !this.video) {
      if (restarted) this.notice("The stream restarted; playing the new one.");
      else if (!wasOnline) this.notice("");
      this.restart();
    }
  }

  showOffline(on) {
    let card = this.holder.querySelector(".offline-overlay");
    if (on && !card) {
      card = document.createElement("div");
      card.className = "offline-overlay";
      card.setAttribute("role", "status");
      const big = document.createElement("p");
      big.className = "offline-big";
      big.textContent = "The stream is offline";
      const small = document.createElement("p");
      small.textContent = "It starts here by itself when it is live again.";
      card.append(big, small);
      this.holder.append(card);
    }
    if (!on && card) card.remove();
    // Cards the no-JS page rendered (loaded while offline) go once a video exists.
    if (!on) this.holder.querySelectorAll(".offline-card").forEach((e) => e.remove());
  }

  restart() {
    this.stop();
    const v = this.ensureVideo();
    if (this.mseUsable()) {
      this.startMse();
    } else {
      this.holder.dataset.mode = "plain";
      v.querySelectorAll("source").forEach((e) => e.remove());
      v.src = `${this.streamUrl()}&epoch=${this.epoch || 0}`;
      v.play().catch(() => {});
    }
  }

  stop() {
    this.run += 1;
    if (this.abort) this.abort.abort();
    this.abort = null;
  }

  async startMse() {
    const run = ++this.run;
    const v = this.ensureVideo();
    this.holder.dataset.mode = "mse";
    this.started = false;
    this.splice = null;
    this.queue = [];
    this.settleUntil = performance.now() + SETTLE_MS;
    // Drops the plain <video src> request (and its <source> fallbacks) of the no-JS markup
    // before opening ours.
    v.querySelectorAll("source").forEach((e) => e.remove());
    v.removeAttribute("src");
    v.load();
    const ms = new MediaSource();
    v.src = URL.createObjectURL(ms);
    await new Promise((resolve) => ms.addEventListener("sourceopen", resolve, { once: true }));
    if (run !== this.run) return;
    URL.revokeObjectURL(v.src);
    let sb;
    try {
      sb = ms.addSourceBuffer(this.mimeType());
    } catch (e) {
      console.warn(`MSE refused ${this.mimeType()}: ${e}; using the plain player`);
      this.codecs = "";
      this.restart();
      return;
    }
    this.ms = ms;
    this.sb = sb;
    sb.addEventListener("updateend", () => {
      if (run !== this.run) return;
      if (this.splice === "appending") {
        // The new rendition's media now follows what was buffered; later fragments keep
        // the offset that placed it there. (Not while an append ended inside a fragment:
        // the mode cannot change then; the next append's end is tried.)
        try {
          sb.mode = "segments";
          this.splice = null;
        } catch (e) {
          if (e.name !== "InvalidStateError") throw e;
        }
      }
      if (!this.started && sb.buffered.length > 0) {
        this.started = true;
        const end = sb.buffered.end(sb.buffered.length - 1);
        v.currentTime = Math.max(sb.buffered.start(0), end - TARGET_LATENCY);
        v.play().catch(() => {});
      }
      this.pump(run);
    });
    this.fetch(run);
  }

  /** Appends what arrived, all at once. A new rendition's first bytes are placed right
   * after the buffered media (sequence mode for that one append). */
  pump(run) {
    const sb = this.sb;
    const ms = this.ms;
    const queue = this.queue;
    if (run !== this.run || !sb || sb.updating || queue.length === 0 || ms.readyState !== "open") return;
    const total = queue.reduce((n, c) => n + c.byteLength, 0);
    const chunk = new Uint8Array(total);
    let at = 0;
    for (const c of queue.splice(0)) {
      chunk.set(c, at);
      at += c.byteLength;
    }
    try {
      if (this.splice === "pending") {
        // Forget a partial fragment of the old response, then name the new codecs.
        sb.abort();
        if (typeof sb.changeType === "function") sb.changeType(this.mimeType());
        const b = sb.buffered;
        sb.mode = "sequence";
        if (b.length > 0) sb.timestampOffset = b.end(b.length - 1);
        this.splice = "appending";
      }
      sb.appendBuffer(chunk);
    } catch (e) {
      if (e.name === "QuotaExceededError") {
        queue.unshift(chunk);
        this.trim(true);
      } else {
        console.warn(`appending failed: ${e}; starting again`);
        this.restart();
      }
    }
  }

  /** One /stream.mp4 response into the SourceBuffer; a newer one (a switch) stops it. */
  async fetch(run) {
    const id = ++this.fetchId;
    if (this.abort) this.abort.abort();
    const abort = new AbortController();
    this.abort = abort;
    try {
      const res = await fetch(this.streamUrl(), { signal: abort.signal, cache: "no-store" });
      if (!res.ok || !res.body) throw new Error(`status ${res.status}`);
      const reader = res.body.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done || run !== this.run || id !== this.fetchId) break;
        this.lastChunkAt = performance.now();
        this.retries = 0;
        this.queue.push(value);
        this.pump(run);
      }
    } catch (e) {
      if (run !== this.run || id !== this.fetchId) return;
    }
    if (run !== this.run || id !== this.fetchId) return;
    // The response ended (the stream went offline or restarted with other settings) or
    // failed: start again while live; the status frames say when.
    if (this.online) {
      const delay = RETRY_MS[Math.min(this.retries, RETRY_MS.length - 1)];
      this.retries += 1;
      setTimeout(() => {
        if (run === this.run && id === this.fetchId && this.online) this.restart();
      }, delay);
    }
  }

  /** Removes media long behind the playhead (browsers cap the buffer). */
  trim(hard) {
    const sb = this.sb;
    const v = this.video;
    if (!sb || sb.updating || sb.buffered.length === 0) return;
    const keep = hard ? 4 : KEEP_BEHIND;
    const from = sb.buffered.start(0);
    const to = v.currentTime - keep;
    if (to - from > (hard ? 0.5 : 10)) sb.remove(from, to);
  }

  /** Seconds between the playhead and the newest media received (wall clock minus media time
   * at the playhead, taking the newest media as live), or null when unknown. */
  latency() {
    const v = this.video;
    if (!v || !this.sb || this.holder.dataset.mode !== "mse" || !this.started) return null;
    const b = v.buffered;
    if (b.length === 0) return null;
    const end = b.end(b.length - 1);
    return end - v.currentTime + (performance.now() - this.lastChunkAt) / 1000;
  }

  jumpToLive() {
    const v = this.video;
    if (!v) return;
    const b = v.buffered;
    if (b.length > 0) v.currentTime = Math.max(b.start(b.length - 1), b.end(b.length - 1) - TARGET_LATENCY);
    v.playbackRate = 1;
    v.play().catch(() => {});
  }

  watch() {
    const v = this.video;
    if (!v || this.holder.dataset.mode !== "mse") {
      this.latencyBox.hidden = true;
      this.jumpButton.hidden = true;
      return;
    }
    // Skip a gap (the stream was interrupted): jump to the next buffered range.
    const b = v.buffered;
    for (let i = 0; i < b.length; i += 1) {
      if (v.currentTime < b.start(i) && (i === 0 || v.currentTime >= b.end(i - 1) - 0.1)) {
        if (v.readyState < 3) v.currentTime = b.start(i);
        break;
      }
    }
    const lat = this.latency();
    if (lat === null || !this.online) {
      this.latencyBox.hidden = true;
      this.jumpButton.hidden = true;
      return;
    }
    this.holder.dataset.latency = lat.toFixed(2);
    this.latencyBox.hidden = false;
    this.latencyEl.textContent = `${lat.toFixed(1)} s`;
    if (!v.paused) {
      if (lat > TARGET_LATENCY + CATCH_UP_ABOVE && lat < JUMP_ABOVE) v.playbackRate = CATCH_UP_RATE;
      else if (lat < TARGET_LATENCY + 0.3 || lat >= JUMP_ABOVE) v.playbackRate = 1;
    }
    this.jumpButton.hidden = lat < JUMP_ABOVE;
    this.maybeUp();
    if (Math.random() < 0.04) this.trim(false);
  }
}
