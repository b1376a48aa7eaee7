// onionstream: the live-edge player of the JavaScript page. Plays the same single
// /stream.mp4 response as the plain <video> (one request per viewer, which Tor favours), but
// through Media Source Extensions fed by a streaming fetch, so it can show how far behind
// live it is, catch up gently (slightly faster playback) or jump to live, skip gaps, and
// follow the stream going offline, coming back and restarting without a reload.
// Without MSE (or with codecs it cannot name) it keeps the plain <video src> and still
// follows offline/online/restart.
//
// Owns: the <video> element and the latency indicator. Must never: open more than one
// /stream.mp4 at a time, or fetch anything but /stream.mp4 from this site.

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

export class Player {
  constructor({ holder, token, codecs, epoch, latencyBox, latency, jump, notice }) {
    this.holder = holder;
    this.token = token;
    this.codecs = codecs;
    this.epoch = epoch || null;
    this.latencyBox = latencyBox;
    this.latencyEl = latency;
    this.jumpButton = jump;
    this.notice = notice;
    this.online = Boolean(holder.querySelector("video"));
    this.video = holder.querySelector("video");
    this.run = 0; // generation of the current pipeline; older ones stop themselves
    this.retries = 0;
    this.lastChunkAt = 0;
    this.started = false;
    jump.addEventListener("click", () => this.jumpToLive());
    setInterval(() => this.watch(), 250);
    if (this.video && this.mseUsable()) this.startMse();
    else if (this.video) holder.dataset.mode = "plain";
  }

  streamUrl() {
    return `/stream.mp4?token=${encodeURIComponent(this.token)}`;
  }

  mimeType() {
    return `video/mp4; codecs="${this.codecs}"`;
  }

  mseUsable() {
    return Boolean(this.codecs) && typeof MediaSource !== "undefined" && MediaSource.isTypeSupported(this.mimeType());
  }

  /** The <video>, made if the page was loaded while offline. */
  ensureVideo() {
    if (this.video) return this.video;
    const v = document.createElement("video");
    v.className = "video";
    v.controls = true;
    v.muted = true;
    v.autoplay = true;
    v.playsInline = true;
    this.holder.replaceChildren(v);
    this.video = v;
    return v;
  }

  /** A status frame from the live socket. */
  update(s) {
    const wasOnline = this.online;
    this.online = s.online;
    if (s.codecs) this.codecs = s.codecs;
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
    // Drops the plain <video src> request of the no-JS markup before opening ours.
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
    const queue = [];
    const pump = () => {
      if (run !== this.run || sb.updating || queue.length === 0 || ms.readyState !== "open") return;
      const total = queue.reduce((n, c) => n + c.byteLength, 0);
      const chunk = new Uint8Array(total);
      let at = 0;
      for (const c of queue.splice(0)) {
        chunk.set(c, at);
        at += c.byteLength;
      }
      try {
        sb.appendBuffer(chunk);
      } catch (e) {
        if (e.name === "QuotaExceededError") {
          queue.unshift(chunk);
          this.trim(true);
        } else {
          throw e;
        }
      }
    };
    sb.addEventListener("updateend", () => {
      if (run !== this.run) return;
      if (!this.started && sb.buffered.length > 0) {
        this.started = true;
        const end = sb.buffered.end(sb.buffered.length - 1);
        v.currentTime = Math.max(sb.buffered.start(0), end - TARGET_LATENCY);
        v.play().catch(() => {});
      }
      pump();
    });
    this.abort = new AbortController();
    try {
      const res = await fetch(this.streamUrl(), { signal: this.abort.signal, cache: "no-store" });
      if (!res.ok || !res.body) throw new Error(`status ${res.status}`);
      const reader = res.body.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done || run !== this.run) break;
        this.lastChunkAt = performance.now();
        this.retries = 0;
        queue.push(value);
        pump();
      }
    } catch (e) {
      if (run !== this.run) return;
    }
    if (run !== this.run) return;
    // The response ended (the stream went offline or restarted with other settings) or
    // failed: start again while live; the status frames say when.
    if (this.online) {
      const delay = RETRY_MS[Math.min(this.retries, RETRY_MS.length - 1)];
      this.retries += 1;
      setTimeout(() => {
        if (run === this.run && this.online) this.restart();
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
    if (Math.random() < 0.04) this.trim(false);
  }
}
