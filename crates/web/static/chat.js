// onionstream: the live chat of the JavaScript page (messages, the message form with notices
// and captchas, appearance, users list, the broadcaster's moderation), driven by the frames
// of docs/WEBSOCKET.md. Every rule is the server's: this only shows its answers.
//
// Owns: the chat's DOM. Must never: insert user text as HTML (names, tags, tripcodes and
// notices go in as text; only the server's escaped message HTML is inserted as markup).

const $ = (id) => document.getElementById(id);

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

/** A name with its colour, tag and tripcode badge, as in the no-JS frames. */
function nameParts(u) {
  const parts = [];
  if (u.broadcaster) parts.push(h("span", { className: "insignia", title: "Broadcaster" }, "##"), " ");
  const name = h("span", { className: "name" }, u.name);
  name.style.color = u.colour;
  parts.push(name);
  if (u.show_tag) parts.push(h("span", { className: "tag" }, `#${u.tag}`));
  if (u.tripcode) {
    const t = h("span", { className: "tripcode" }, `!${u.tripcode.code}`);
    t.style.background = u.tripcode.background;
    t.style.color = u.tripcode.foreground;
    parts.push(" ", t);
  }
  return parts;
}

/** A duration as the server words it: `45 s`, `10 min`, `1 h 5 min`, `2 days 3 h` (rounded
 * up, so the time shown is never already over). */
function words(ms) {
  const s = Math.max(1, Math.ceil(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.ceil(s / 60)} min`;
  if (s < 86400) {
    let hours = Math.floor(s / 3600);
    let mins = Math.ceil((s % 3600) / 60);
    if (mins === 60) { hours += 1; mins = 0; }
    return mins ? `${hours} h ${mins} min` : `${hours} h`;
  }
  let days = Math.floor(s / 86400);
  let hours = Math.ceil((s % 86400) / 3600);
  if (hours === 24) { days += 1; hours = 0; }
  const unit = days === 1 ? "day" : "days";
  return hours ? `${days} ${unit} ${hours} h` : `${days} ${unit}`;
}

export class Chat {
  constructor({ token, send, state }) {
    this.token = token;
    this.send = send;
    this.state = state;
    this.list = $("live-messages");
    this.items = new Map(); // id -> <li>
    this.me = null;
    this.key = null;
    this.nonce = "";
    this.captcha = null;
    this.busy = false;
    this.slowSecs = 0;
    this.timeoutEnd = null; // Date.now() when this visitor's timeout ends
    this.timeoutTimer = null;
    this.bindForm();
    this.bindRoomControls();
    this.bindAppearance();
    this.bindUsers();
  }

  newestId() {
    let max = null;
    for (const id of this.items.keys()) if (max === null || id > max) max = id;
    return max;
  }

  frame(m) {
    switch (m.type) {
      case "hello":
        this.key = m.moderation_key || null;
        this.setMe(m.me);
        this.limits = m.limits;
        $("live-text").maxLength = m.limits.max_message_chars;
        $("live-name").maxLength = m.limits.max_name_chars;
        this.resume(m.ids, m.messages);
        this.setSlowMode(m.slow_mode_secs || 0);
        this.setForm(m.form);
        if ($("live-users-box").open) this.send({ type: "users", open: true });
        break;
      case "message":
        this.add(m.message);
        break;
      case "removed":
        m.ids.forEach((id) => this.remove(id));
        break;
      case "hidden":
        m.ids.forEach((id) => this.markHidden(id, m.hidden));
        break;
      case "banned":
        for (const li of this.items.values()) {
          if (li.dataset.author === m.user) this.markBanned(li, m.banned);
        }
        break;
      case "form":
        this.setForm(m);
        break;
      case "me":
        this.setMe(m.me);
        break;
      case "users":
        this.renderUsers(m);
        break;
      case "slow_mode":
        this.setSlowMode(m.secs);
        break;
      case "moderated":
        this.notice({ text: m.notice, error: !m.ok });
        break;
      case "error":
        console.warn(`server refused a frame: ${m.reason}`);
        break;
      default:
        break;
    }
  }

  // ---- messages ----

  atBottom() {
    const l = this.list;
    return l.scrollHeight - l.scrollTop - l.clientHeight < 40;
  }

  /** After a (re)connect: drop what the server no longer shows, add what is new. */
  resume(ids, messages) {
    const keep = new Set(ids);
    for (const id of [...this.items.keys()]) if (!keep.has(id)) this.remove(id);
    const stick = true;
    messages.forEach((m) => this.add(m, true));
    this.emptyNote();
    if (stick) this.list.scrollTop = this.list.scrollHeight;
  }

  emptyNote() {
    let note = this.list.querySelector(".chat-empty");
    if (this.items.size === 0 && !note) {
      note = h("li", { className: "chat-empty" }, "No messages yet. Say hello!");
      this.list.append(note);
    } else if (this.items.size > 0 && note) {
      note.remove();
    }
  }

  add(m, quiet) {
    if (this.items.has(m.id)) return;
    const stick = quiet || this.atBottom();
    const li = h(
      "li",
      { className: `message${m.broadcaster ? " from-broadcaster" : ""}`, id: `m${m.id}` },
      h("time", { className: "msg-time" }, m.time),
      " ",
      ...nameParts(m),
      h("span", { className: "colon" }, ":"),
      " ",
    );
    const text = h("span", { className: "text" });
    // Escaped by the server (the same HTML the no-JS frame shows); CSP forbids inline script.
    // One rendering serves every page: emote images come without an address, and this page
    // gives each its own token (a private stream's emotes are served only to those let in).
    text.innerHTML = m.html;
    for (const img of text.querySelectorAll("img.emote[data-emote]")) {
      img.src = `/emote/${encodeURIComponent(img.dataset.emote)}?token=${encodeURIComponent(this.token)}`;
    }
    li.append(text);
    li.dataset.id = String(m.id);
    li.dataset.author = m.author;
    li.dataset.date = m.date;
    if (this.key && !m.broadcaster) li.append(this.modButtons(m));
    // In order of id (a message shown again may be older than the newest).
    let before = null;
    for (const [id, other] of this.items) {
      if (id > m.id && (before === null || id < Number(before.dataset.id))) before = other;
    }
    if (before) before.before(li);
    else this.list.append(li);
    this.items.set(m.id, li);
    if (m.hidden) this.markHidden(m.id, true);
    if (m.author_banned) this.markBanned(li, true);
    this.dateSeparators();
    this.emptyNote();
    if (stick) this.list.scrollTop = this.list.scrollHeight;
  }

  remove(id) {
    const li = this.items.get(id);
    if (!li) return;
    li.remove();
    this.items.delete(id);
    this.dateSeparators();
    this.emptyNote();
  }

  dateSeparators() {
    this.list.querySelectorAll(".date-sep").forEach((e) => e.remove());
    let last = null;
    for (const li of this.list.querySelectorAll("li.message")) {
      if (li.dataset.date !== last) {
        li.before(h("li", { className: "date-sep" }, h("span", {}, li.dataset.date)));
        last = li.dataset.date;
      }
    }
  }

  flag(li, name, on) {
    let f = li.querySelector(`.flag-${name}`);
    if (on && !f) li.querySelector(".text").after(" ", h("span", { className: `flag flag-${name}` }, name));
    if (!on && f) f.remove();
  }

  markHidden(id, hidden) {
    const li = this.items.get(id);
    if (!li) return;
    li.classList.toggle("is-hidden", hidden);
    this.flag(li, "hidden", hidden);
    const b = li.querySelector("button[data-action=hide], button[data-action=unhide]");
    if (b) {
      b.dataset.action = hidden ? "unhide" : "hide";
      b.textContent = hidden ? "unhide" : "hide";
    }
  }

  markBanned(li, banned) {
    if (!this.key) return;
    this.flag(li, "banned", banned);
    const form = li.querySelector(".mod");
    if (form) form.replaceWith(this.modButtons({ id: Number(li.dataset.id), author: li.dataset.author, author_banned: banned, hidden: li.classList.contains("is-hidden") }));
  }

  modButtons(m) {
    const b = (action, label, title, fields) => {
      const btn = h("button", { type: "button", textContent: label, title });
      btn.dataset.action = action;
      btn.addEventListener("click", () => {
        this.send({ type: "moderate", key: this.key, action: btn.dataset.action, ...fields });
      });
      return btn;
    };
    const box = h("span", { className: "mod" });
    box.append(b(m.hidden ? "unhide" : "hide", m.hidden ? "unhide" : "hide", "Hide this message (or show it again)", { message: m.id }));
    if (m.author_banned) {
      box.append(b("unban", "unban", "Let this user post again", { user: m.author }));
    } else {
      box.append(b("timeout", "timeout", "Time this user out for 10 minutes (they cannot chat until then)", { user: m.author, secs: 600 }));
      box.append(b("ban", "ban", "Ban this user", { user: m.author }));
      box.append(b("ban-purge", "ban+hide all", "Ban this user and hide all their messages", { user: m.author }));
    }
    return box;
  }

  // ---- the message form ----

  bindForm() {
    const form = $("live-form");
    const text = $("live-text");
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.post();
    });
    // Enter sends, Shift+Enter starts a new line (as in most chats).
    text.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        this.post();
      }
    });
  }

  post() {
    const text = $("live-text").value;
    if (this.busy || !text.trim()) return;
    const frame = { type: "post", nonce: this.nonce, text };
    if (this.captcha) {
      frame.captcha_id = this.captcha;
      frame.captcha_answer = $("live-captcha-answer").value;
    }
    if (!this.send(frame)) {
      this.notice({ text: "Not connected; your message is still here. Try again in a moment.", error: true });
      return;
    }
    this.busy = true;
    $("live-send").disabled = true;
  }

  notice(n) {
    const p = $("live-form-notice");
    p.textContent = n ? n.text : "";
    p.className = `form-notice${n && n.error ? " is-error" : ""}`;
    p.hidden = !n;
  }

  setForm(f) {
    this.nonce = f.nonce;
    if (f.re === "post") {
      this.busy = false;
      $("live-send").disabled = false;
      if (f.ok) $("live-text").value = "";
    }
    if (f.re !== null && f.re !== undefined) this.notice(f.notice);
    else if (f.notice) this.notice(f.notice);
    const box = $("live-captcha");
    const answer = $("live-captcha-answer");
    if (f.captcha) {
      if (this.captcha !== f.captcha.id) {
        $("live-captcha-img").src = `/captcha/${f.captcha.id}.png?token=${encodeURIComponent(this.token)}`;
        answer.value = "";
      }
      this.captcha = f.captcha.id;
      box.hidden = false;
      answer.required = true;
    } else {
      this.captcha = null;
      box.hidden = true;
      answer.required = false;
    }
    const banned = f.banned;
    $("live-form").classList.toggle("is-banned", banned);
    this.setTimeout(banned ? null : f.timeout_left_ms);
    const blocked = banned || this.timeoutEnd !== null;
    $("live-text").disabled = blocked;
    $("live-send").disabled = blocked || this.busy;
    if (banned) this.notice({ text: "You are banned from the chat.", error: true });
  }

  /** Timed out for `ms` more (null: not): the form says how long, every second, and asks
   * the server for a fresh form when the time is up. */
  setTimeout(ms) {
    clearInterval(this.timeoutTimer);
    this.timeoutTimer = null;
    if (ms === null || ms === undefined || ms <= 0) {
      const was = this.timeoutEnd !== null;
      this.timeoutEnd = null;
      $("live-form").classList.remove("is-timed-out");
      if (was) this.notice(null);
      return;
    }
    this.timeoutEnd = Date.now() + ms;
    $("live-form").classList.add("is-timed-out");
    const tick = () => {
      const left = this.timeoutEnd - Date.now();
      if (left <= 0) {
        clearInterval(this.timeoutTimer);
        this.timeoutTimer = null;
        this.send({ type: "form" });
        return;
      }
      this.notice({ text: `You are timed out: you can chat again in ${words(left)}.`, error: true });
    };
    tick();
    this.timeoutTimer = setInterval(tick, 1000);
  }

  setSlowMode(secs) {
    this.slowSecs = secs;
    const p = $("live-slow-mode");
    if (p) {
      p.hidden = !secs || !!this.key;
      p.textContent = secs ? `Slow mode: one message every ${words(secs * 1000)}.` : "";
    }
    const select = $("live-slow-select");
    if (select) {
      if (![...select.options].some((o) => Number(o.value) === secs)) {
        select.append(h("option", { value: String(secs), textContent: words(secs * 1000) }));
      }
      select.value = String(secs);
    }
  }

  // ---- the broadcaster's room controls (slow mode, clear chat) ----

  bindRoomControls() {
    const box = $("live-room-controls");
    if (!box) return;
    $("live-slow-set").addEventListener("click", () => {
      this.send({ type: "moderate", key: this.key, action: "slow", secs: Number($("live-slow-select").value) });
    });
    $("live-clear").addEventListener("click", () => {
      this.send({ type: "moderate", key: this.key, action: "clear" });
    });
  }

  setMe(me) {
    this.me = me;
    const el = $("live-me");
    el.replaceChildren(...nameParts(me));
  }

  // ---- appearance ----

  bindAppearance() {
    const toggle = $("live-appearance-toggle");
    const form = $("live-appearance");
    toggle.addEventListener("click", () => {
      const open = form.hidden;
      form.hidden = !open;
      toggle.setAttribute("aria-expanded", String(open));
      if (open && this.me) {
        $("live-name").value = this.me.default_name ? "" : this.me.name;
        $("live-name").placeholder = this.me.name;
        $("live-colour").value = this.me.custom_colour ? this.me.colour : "";
        $("live-tripcode").value = "";
        $("live-clear-tripcode").checked = false;
        $("live-tripcode-now").textContent = this.me.tripcode ? `tripcode !${this.me.tripcode.code}` : "no tripcode";
        $("live-name").focus();
      }
    });
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const frame = {
        type: "appearance",
        nonce: this.nonce,
        name: $("live-name").value,
        colour: $("live-colour").value,
        clear_tripcode: $("live-clear-tripcode").checked,
      };
      const pw = $("live-tripcode").value;
      if (pw) frame.tripcode_password = pw;
      if (this.send(frame)) {
        form.hidden = true;
        toggle.setAttribute("aria-expanded", "false");
        $("live-tripcode").value = "";
      }
    });
  }

  // ---- users ----

  bindUsers() {
    const box = $("live-users-box");
    box.addEventListener("toggle", () => this.send({ type: "users", open: box.open }));
  }

  renderUsers(m) {
    const groups = [
      ["Watching", m.watching],
      ["Not watching", m.not_watching],
    ];
    if (m.banned) groups.push(["Banned", m.banned]);
    const out = [];
    for (const [title, users] of groups) {
      out.push(h("h3", { className: "users-heading" }, `${title} `, h("span", { className: "count" }, String(users.length))));
      const ul = h("ul", { className: "users" });
      for (const u of users) {
        const li = h("li", {}, ...nameParts(u));
        if (this.key && !u.broadcaster) {
          const b = (action, label) => {
            const btn = h("button", { type: "button", textContent: label });
            btn.addEventListener("click", () => this.send({ type: "moderate", key: this.key, action, user: u.id }));
            return btn;
          };
          const mod = h("span", { className: "mod" });
          const left = u.timeout_until_ms ? u.timeout_until_ms - Date.now() : 0;
          if (u.banned) mod.append(b("unban", "unban"));
          else {
            if (left > 0) {
              li.append(" ", h("span", { className: "flag timed-out" }, `timed out, ${words(left)} left`));
              mod.append(b("end-timeout", "end timeout"));
            } else {
              for (const [secs, label] of [[60, "1m"], [600, "10m"], [3600, "1h"]]) {
                const btn = h("button", { type: "button", textContent: label, title: `Time this user out for ${label}` });
                btn.addEventListener("click", () => this.send({ type: "moderate", key: this.key, action: "timeout", user: u.id, secs }));
                mod.append(btn);
              }
            }
            mod.append(b("ban", "ban"), b("ban-purge", "ban+hide all"));
          }
          li.append(" ", mod);
        }
        ul.append(li);
      }
      out.push(ul);
    }
    $("live-users").replaceChildren(...out);
  }
}
