//! Moderation and the room's settings: hiding, banning, timeouts, clearing the chat, slow
//! mode, captchas required by the broadcaster, private mode and its list, word filters; kept
//! across restarts.
//!
//! Owns: these methods of [`Room`]. Must never: let anyone but the broadcaster (a moderation
//! key, or the console) moderate.

use super::*;

impl Room {
    /// The broadcaster's moderation key: a token-bound value every moderation form carries,
    /// so no other site can make the broadcaster's browser moderate. `None` for viewers.
    pub fn moderation_key(&self, token: &Token) -> Option<String> {
        (self.role(token) == Role::Broadcaster).then(|| {
            let h = blake3::keyed_hash(
                &self.inner.key,
                format!("moderation {}", token.secret()).as_bytes(),
            );
            hex(&h.as_bytes()[..16])
        })
    }
    /// The key of the broadcaster's chat overlay (`onionstream ctl overlay`): 32 hex digits
    /// derived from the room's secret, so it survives restarts and is never stored. It grants
    /// reading the chat as viewers see it, nothing else.
    pub fn overlay_key(&self) -> String {
        hex(&blake3::keyed_hash(&self.inner.key, b"chat overlay key").as_bytes()[..16])
    }
    /// Whether `key` is the overlay key (compared in constant time).
    pub fn is_overlay_key(&self, key: &str) -> bool {
        bool::from(self.overlay_key().as_bytes().ct_eq(key.as_bytes()))
    }
    /// Moderates (see [`Moderation`]), for the broadcaster only (with their moderation key).
    pub fn moderate(&self, token: &Token, key: &str, action: Moderation) -> Result<Notice, Notice> {
        let expected = self.moderation_key(token).ok_or(Notice::NotAllowed)?;
        if !bool::from(expected.as_bytes().ct_eq(key.as_bytes())) {
            return Err(Notice::NotAllowed);
        }
        self.apply_moderation(action)
    }
    /// Moderates, on the broadcaster's authority (the caller checked it: the web forms and the
    /// live socket through [`Room::moderate`], the control socket by being the local owner).
    pub fn apply_moderation(&self, action: Moderation) -> Result<Notice, Notice> {
        let mut st = self.lock();
        let storage = |e: DbError| Notice::StorageFailed(short_reason(&e));
        let done = match action {
            Moderation::Hide(id) | Moderation::Unhide(id) => {
                let hide = matches!(action, Moderation::Hide(_));
                if !st.messages.iter().any(|m| m.id == id) {
                    return Err(Notice::NotFound);
                }
                if let Some(db) = &st.db {
                    db.set_hidden(&[id], hide).map_err(storage)?;
                }
                if let Some(m) = st.messages.iter_mut().find(|m| m.id == id) {
                    m.hidden = hide;
                }
                self.emit(RoomEvent::MessageHidden { id, hidden: hide });
                if hide {
                    "Message hidden."
                } else {
                    "Message shown again."
                }
            }
            Moderation::Ban(ref user)
            | Moderation::BanAndPurge(ref user)
            | Moderation::Unban(ref user) => {
                if *user == self.inner.broadcaster_id {
                    return Err(Notice::NotAllowed);
                }
                let Some(u) = Self::known(&mut st, user, Instant::now()) else {
                    return Err(Notice::NotFound);
                };
                let ban = !matches!(action, Moderation::Unban(_));
                let was = u.record.banned;
                u.record.banned = ban;
                if let Err(e) = Self::save(&mut st, user) {
                    if let Some(u) = st.users.get_mut(user) {
                        u.record.banned = was;
                    }
                    return Err(storage(e));
                }
                if ban {
                    st.banned.insert(user.clone());
                } else {
                    st.banned.remove(user);
                }
                let mut purged = Vec::new();
                if matches!(action, Moderation::BanAndPurge(_)) {
                    if let Some(db) = &st.db {
                        db.hide_all_by(user).map_err(storage)?;
                    }
                    for m in st.messages.iter_mut().filter(|m| m.author == *user) {
                        if !m.hidden {
                            purged.push(m.id);
                        }
                        m.hidden = true;
                    }
                }
                if let Some(u) = st.users.get(user) {
                    self.emit(RoomEvent::UserBanned {
                        user: self.view_of(u),
                        banned: ban,
                        purged,
                    });
                }
                if matches!(action, Moderation::BanAndPurge(_)) {
                    "User banned and their messages hidden."
                } else if ban {
                    "User banned."
                } else {
                    "User unbanned."
                }
            }
            Moderation::Timeout { ref user, duration } => {
                let until = now_ms().saturating_add(duration.min(MAX_TIMEOUT).as_millis() as i64);
                self.set_timeout(&mut st, user, Some(until))?;
                return Ok(Notice::Moderated(format!(
                    "User timed out for {}.",
                    crate::notice::duration_words(duration)
                )));
            }
            Moderation::EndTimeout(ref user) => {
                self.set_timeout(&mut st, user, None)?;
                "Timeout lifted."
            }
            Moderation::ClearChat => {
                if let Some(db) = &st.db {
                    db.hide_all().map_err(storage)?;
                }
                let mut ids = Vec::new();
                for m in st.messages.iter_mut().filter(|m| !m.hidden) {
                    m.hidden = true;
                    ids.push(m.id);
                }
                let n = ids.len();
                self.emit(RoomEvent::ChatCleared { ids });
                return Ok(Notice::Moderated(format!(
                    "Chat cleared: {n} message{} hidden.",
                    if n == 1 { "" } else { "s" }
                )));
            }
            Moderation::SlowMode(secs) => {
                if secs > MAX_SLOW_MODE_SECS {
                    return Err(Notice::Invalid(format!(
                        "slow mode waits at most {MAX_SLOW_MODE_SECS} s"
                    )));
                }
                if let Some(db) = &st.db {
                    db.set_setting(SETTING_SLOW_MODE, &secs.to_string())
                        .map_err(storage)?;
                }
                st.slow_mode_secs = secs;
                self.emit(RoomEvent::SlowMode { secs });
                return Ok(Notice::Moderated(if secs == 0 {
                    "Slow mode off.".into()
                } else {
                    format!(
                        "Slow mode on: one message every {} per user.",
                        crate::notice::duration_words(Duration::from_secs(u64::from(secs)))
                    )
                }));
            }
        };
        Ok(Notice::Moderated(done.into()))
    }
    /// Times `user` out until `until` (Unix ms), or lifts their timeout; kept on disk.
    fn set_timeout(&self, st: &mut State, user: &str, until: Option<i64>) -> Result<(), Notice> {
        if user == self.inner.broadcaster_id {
            return Err(Notice::NotAllowed);
        }
        let Some(u) = Self::known(st, user, Instant::now()) else {
            return Err(Notice::NotFound);
        };
        let was = u.record.timeout_until_ms;
        u.record.timeout_until_ms = until;
        if let Err(e) = Self::save(st, user) {
            if let Some(u) = st.users.get_mut(user) {
                u.record.timeout_until_ms = was;
            }
            return Err(Notice::StorageFailed(short_reason(&e)));
        }
        if let Some(u) = st.users.get(user) {
            self.emit(RoomEvent::UserTimedOut {
                user: self.view_of(u),
                until_ms: until,
            });
        }
        Ok(())
    }
    /// Slow mode now: one message per this many seconds per user (0 = off).
    pub fn slow_mode(&self) -> u32 {
        self.lock().slow_mode_secs
    }
    /// Private mode on or off, kept across restarts.
    pub fn set_private_mode(&self, on: bool) -> Result<(), Notice> {
        let mut st = self.lock();
        if let Some(db) = &st.db {
            db.set_setting(SETTING_PRIVATE_MODE, if on { "on" } else { "off" })
                .map_err(|e| Notice::StorageFailed(short_reason(&e)))?;
        }
        st.private_mode = on;
        Ok(())
    }
    /// Whether private mode is on, and the tripcodes allowed in (sorted).
    pub fn private_mode(&self) -> (bool, Vec<String>) {
        let st = self.lock();
        let mut list: Vec<String> = st.private_allowed.iter().cloned().collect();
        list.sort();
        (st.private_mode, list)
    }
    /// Adds or removes a tripcode on the private list, kept across restarts.
    pub fn private_allow(&self, tripcode: &str, allow: bool) -> Result<(), Notice> {
        let code = tripcode.trim().trim_start_matches('!');
        if code.chars().count() != crate::tripcode::TRIPCODE_LEN {
            return Err(Notice::Invalid(format!(
                "{tripcode:?} is not a tripcode ({} characters, as the chat shows after the '!')",
                crate::tripcode::TRIPCODE_LEN
            )));
        }
        let mut st = self.lock();
        let mut next = st.private_allowed.clone();
        if allow {
            next.insert(code.to_owned());
        } else {
            next.remove(code);
        }
        if let Some(db) = &st.db {
            let mut list: Vec<&String> = next.iter().collect();
            list.sort();
            let json = serde_json::to_string(&list).unwrap_or_else(|_| "[]".into());
            db.set_setting(SETTING_PRIVATE_TRIPCODES, &json)
                .map_err(|e| Notice::StorageFailed(short_reason(&e)))?;
        }
        st.private_allowed = next;
        Ok(())
    }
    /// The word filters now in force.
    pub fn filters(&self) -> FilterConfig {
        self.lock().filter_config.clone()
    }
    /// Replaces the word filters (checked first; kept across restarts).
    pub fn set_filters(&self, config: FilterConfig) -> Result<(), Notice> {
        let compiled = WordFilters::new(&config).map_err(|e| Notice::Invalid(e.to_string()))?;
        let mut st = self.lock();
        if let Some(db) = &st.db {
            let json =
                serde_json::to_string(&config).map_err(|e| Notice::StorageFailed(e.to_string()))?;
            db.set_setting(SETTING_FILTERS, &json)
                .map_err(|e| Notice::StorageFailed(short_reason(&e)))?;
        }
        st.filter_config = config;
        st.filters = Arc::new(compiled);
        Ok(())
    }
    /// Makes a user solve a captcha before their next message.
    pub fn require_captcha(&self, user_id: &str) -> Result<(), Notice> {
        let mut st = self.lock();
        let u = Self::known(&mut st, user_id, Instant::now()).ok_or(Notice::NotFound)?;
        u.captcha_due = true;
        u.record.captcha_solved = false;
        Self::save(&mut st, user_id).map_err(|e| Notice::StorageFailed(short_reason(&e)))
    }
}
