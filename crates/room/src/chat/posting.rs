//! Posting: the message form (nonces, notices, drafts, captchas before a message), the flood
//! and filter rules applied to a post, the broadcaster's own messages, and the messages a
//! visitor is shown.
//!
//! Owns: these methods of [`Room`]. Must never: acknowledge a message before it is durably
//! written, or show a hidden message to anyone but the broadcaster.

use super::*;

impl Room {
    /// A new single-use nonce for one of this user's forms.
    pub(super) fn nonce(u: &mut User) -> String {
        let mut b = [0u8; 12];
        rand::rng().fill_bytes(&mut b);
        let n = hex(&b);
        if u.nonces.len() >= MAX_NONCES_PER_USER {
            u.nonces.pop_front();
        }
        u.nonces.push_back(n.clone());
        n
    }
    pub(super) fn take_nonce(u: &mut User, nonce: &str) -> bool {
        match u.nonces.iter().position(|n| n == nonce) {
            Some(i) => {
                u.nonces.remove(i);
                true
            }
            None => false,
        }
    }
    pub(super) fn needs_captcha(&self, u: &mut User, now: Instant) -> bool {
        let rules = &self.inner.config.rules;
        (rules.captcha_first_message && !u.record.captcha_solved)
            || u.captcha_due
            || (rules.captcha_every_messages > 0
                && u.record.messages_since_captcha >= rules.captcha_every_messages)
            || u.history.flooding(rules, now)
    }
    /// The message form: a fresh nonce, the last notice (once), the draft, and a captcha if
    /// the next message needs one.
    pub fn chat_form(&self, token: &Token) -> ChatForm {
        let now = Instant::now();
        let broadcaster = self.role(token) == Role::Broadcaster;
        let mut st = self.lock();
        let u = self.user(&mut st, token, now);
        let nonce = Self::nonce(u);
        let notice = u.notice.take();
        let timeout_left = timeout_left(&u.record, now_ms()).filter(|_| !broadcaster);
        // A timed-out form shows no message box: the draft waits for the one after the end.
        let draft = if timeout_left.is_some() {
            u.draft.clone()
        } else {
            u.draft.take()
        }
        .unwrap_or_default();
        let need = !broadcaster
            && !u.record.banned
            && timeout_left.is_none()
            && self.needs_captcha(u, now);
        let me = self.view_of(u);
        let owner = u.record.id.clone();
        let slow_mode_secs = if broadcaster { 0 } else { st.slow_mode_secs };
        drop(st);
        let captcha = need.then(|| {
            self.inner
                .captchas
                .current(&owner, now)
                .unwrap_or_else(|| self.issue_captcha(&owner, now))
        });
        ChatForm {
            nonce,
            notice,
            draft,
            captcha,
            me,
            timeout_left,
            slow_mode_secs,
            max_message_chars: self.inner.config.rules.max_message_chars,
            max_name_chars: self.inner.config.rules.max_name_chars,
        }
    }
    /// A fresh nonce for a form (appearance, private entry, ...).
    pub fn form_nonce(&self, token: &Token) -> String {
        let now = Instant::now();
        let mut st = self.lock();
        let u = self.user(&mut st, token, now);
        Self::nonce(u)
    }
    /// The notice waiting for this user, taken (shown once).
    pub fn take_notice(&self, token: &Token) -> Option<Notice> {
        let now = Instant::now();
        let mut st = self.lock();
        self.user(&mut st, token, now).notice.take()
    }
    /// Leaves a notice for this user's next page.
    pub fn set_notice(&self, token: &Token, notice: Notice) {
        let now = Instant::now();
        let mut st = self.lock();
        self.user(&mut st, token, now).notice = Some(notice);
    }
    /// Posts a message. On refusal the notice (and the draft, where the user would want it
    /// back) waits for the next [`Room::chat_form`]; it is also returned.
    pub fn post(&self, token: &Token, post: Post) -> Result<u64, Notice> {
        let now = Instant::now();
        let broadcaster = self.role(token) == Role::Broadcaster;
        let text = sanitize(&post.text, true);
        let mut st = self.lock();
        let result = self.post_locked(&mut st, token, &post, &text, broadcaster, now);
        let u = self.user(&mut st, token, now);
        if let Err(n) = &result {
            self.count(&self.inner.counters.messages_refused);
            u.notice = Some(n.clone());
            let keep_draft = !matches!(
                n,
                Notice::Duplicate | Notice::Banned | Notice::BannedByFilter
            );
            if keep_draft {
                u.draft = Some(text);
            }
        }
        result
    }
    pub(super) fn post_locked(
        &self,
        st: &mut State,
        token: &Token,
        post: &Post,
        text: &str,
        broadcaster: bool,
        now: Instant,
    ) -> Result<u64, Notice> {
        let rules = &self.inner.config.rules;
        let filters = st.filters.clone();
        let slow = st.slow_mode_secs;
        let u = self.user(st, token, now);
        if !Self::take_nonce(u, &post.nonce) {
            return Err(Notice::Duplicate);
        }
        if u.record.banned {
            return Err(Notice::Banned);
        }
        if !broadcaster {
            if let Some(left) = timeout_left(&u.record, now_ms()) {
                return Err(Notice::TimedOut { left });
            }
        }
        rules.check_text(text).map_err(rule_notice)?;
        let id = u.record.id.clone();
        if !broadcaster && slow > 0 {
            // Before any captcha: a refused message must not use up its answer.
            let every = Duration::from_secs(u64::from(slow));
            if let Some(since) = u.last_post.map(|t| now.saturating_duration_since(t)) {
                if since < every {
                    return Err(Notice::SlowMode {
                        every: slow,
                        retry_after: every - since,
                    });
                }
            }
        }
        if !broadcaster {
            if let Some((cid, answer)) = &post.captcha {
                let cid = ChallengeId::parse(cid).ok_or(Notice::CaptchaExpired)?;
                self.inner
                    .captchas
                    .check(&id, &cid, answer, now)
                    .map_err(|e| self.captcha_failed(e))?;
                self.count(&self.inner.counters.captchas_solved);
                u.record.captcha_solved = true;
                u.record.messages_since_captcha = 0;
                u.captcha_due = false;
                u.history.clear();
            } else if self.needs_captcha(u, now) {
                u.captcha_due = u.captcha_due || u.record.captcha_solved;
                return Err(Notice::SolveCaptcha);
            } else if rules.captcha_random_percent > 0
                && rand::random_range(0..100u8) < rules.captcha_random_percent
            {
                u.captcha_due = true;
                return Err(Notice::SolveCaptcha);
            }
            u.history
                .check(rules, rules.linespan(text), now)
                .map_err(rule_notice)?;
        }
        let text = match filters.check(text, broadcaster) {
            FilterVerdict::Pass(t) => t,
            FilterVerdict::Block => return Err(Notice::Blocked),
            FilterVerdict::Ban => {
                u.record.banned = true;
                let _ = Self::save(st, &id);
                return Err(Notice::BannedByFilter);
            }
        };
        let view = self.view_of(u);
        let mut record = u.record.clone();
        record.messages_since_captcha += 1;
        record.last_seen_ms = now_ms();
        let message = MessageRecord {
            id: st.next_id,
            author: id.clone(),
            name: view.name.clone(),
            colour: view.colour.to_string(),
            tripcode: view.tripcode.map(|t| t.as_str().to_owned()),
            broadcaster,
            text,
            time_ms: record.last_seen_ms,
            hidden: false,
        };
        if let Some(db) = &st.db {
            db.insert_message_and_user(&message, &record)
                .map_err(|e| Notice::StorageFailed(short_reason(&e)))?;
        }
        // Durable (or ephemeral by choice): now it exists.
        let u = st.users.get_mut(&id).expect("user made above");
        u.record = record;
        u.persisted = true;
        u.last_post = Some(now);
        u.history.record(rules.linespan(&message.text), now);
        st.next_id += 1;
        let mid = message.id;
        let posted = self.message_view(&message, false);
        st.messages.push_back(message);
        self.count(&self.inner.counters.messages_posted);
        self.emit(RoomEvent::MessagePosted(posted));
        while st.messages.len() > self.inner.config.storage_messages {
            st.messages.pop_front();
        }
        st.posts_since_prune += 1;
        if st.posts_since_prune >= PRUNE_EVERY {
            st.posts_since_prune = 0;
            if let Some(db) = &st.db {
                if let Err(e) = db.prune_messages(self.inner.config.storage_messages) {
                    tracing::warn!("could not prune old messages: {e}");
                }
            }
        }
        Ok(mid)
    }
    /// The messages shown in the chat, oldest first. The broadcaster also sees hidden ones.
    pub fn messages(&self, token: &Token) -> Vec<MessageView> {
        let broadcaster = self.role(token) == Role::Broadcaster;
        let now = Instant::now();
        let mut st = self.lock();
        self.user(&mut st, token, now);
        let shown = self.inner.config.shown_messages;
        let mut out: Vec<MessageView> = st
            .messages
            .iter()
            .rev()
            .filter(|m| broadcaster || !m.hidden)
            .take(shown)
            .map(|m| {
                let banned = st.banned.contains(&m.author);
                self.message_view(m, banned)
            })
            .collect();
        out.reverse();
        out
    }
    /// The newest `n` messages everyone may see, oldest first: none hidden, none by a user
    /// banned now (the broadcaster's chat overlay). Asks for no visitor: it marks no one seen.
    pub fn public_messages(&self, n: usize) -> Vec<MessageView> {
        let st = self.lock();
        let mut out: Vec<MessageView> = st
            .messages
            .iter()
            .rev()
            .filter(|m| !m.hidden && !st.banned.contains(&m.author))
            .take(n)
            .map(|m| self.message_view(m, false))
            .collect();
        out.reverse();
        out
    }
    pub(super) fn message_view(&self, m: &MessageRecord, author_banned: bool) -> MessageView {
        MessageView {
            id: m.id,
            author: m.author.clone(),
            tag: m.author.chars().take(3).collect(),
            name: m.name.clone(),
            colour: Colour::parse(&m.colour).unwrap_or(Colour(0xff, 0xff, 0xff)),
            tripcode: m.tripcode.as_deref().map(Tripcode::from_stored),
            broadcaster: m.broadcaster,
            text: m.text.clone(),
            time_ms: m.time_ms,
            hidden: m.hidden,
            author_banned,
        }
    }
    /// Posts as the broadcaster (from the control socket).
    pub fn broadcaster_say(&self, text: &str) -> Result<u64, Notice> {
        let token = self.inner.broadcaster_token.clone();
        let nonce = self.form_nonce(&token);
        let result = self.post(
            &token,
            Post {
                nonce,
                text: text.to_owned(),
                captcha: None,
            },
        );
        // The console got the answer; the page's form need not show it again.
        let _ = self.take_notice(&token);
        let _ = self.chat_form_draft_clear(&token);
        result
    }
    pub(super) fn chat_form_draft_clear(&self, token: &Token) -> Option<String> {
        let now = Instant::now();
        let mut st = self.lock();
        self.user(&mut st, token, now).draft.take()
    }
    /// The newest `n` messages, hidden ones included (the broadcaster's view).
    pub fn recent_messages(&self, n: usize) -> Vec<MessageView> {
        let st = self.lock();
        let skip = st.messages.len().saturating_sub(n);
        st.messages
            .iter()
            .skip(skip)
            .map(|m| {
                let banned = st.banned.contains(&m.author);
                self.message_view(m, banned)
            })
            .collect()
    }
}
