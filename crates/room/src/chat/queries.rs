//! What the broadcaster's console and the users lists ask: who is here, watching or not,
//! banned; every user known; finding one by id prefix.
//!
//! Owns: these methods of [`Room`]. Must never: show a secret token: users are known by their
//! public id.

use super::*;

impl Room {
    /// The users list. `watching` holds the public ids video reached recently.
    pub fn users(&self, token: &Token, watching: &HashSet<String>) -> UsersView {
        let broadcaster = self.role(token) == Role::Broadcaster;
        let now = Instant::now();
        let mut st = self.lock();
        self.user(&mut st, token, now);
        let window = self.inner.config.presence_window;
        let mut view = UsersView::default();
        if broadcaster {
            // Every banned user, seen lately or not (read back from disk when not in memory).
            let banned: Vec<String> = st.banned.iter().cloned().collect();
            for id in banned {
                if let Some(u) = Self::known(&mut st, &id, now) {
                    let v = self.view_of(u);
                    view.banned.push(v);
                }
            }
        }
        for u in st.users.values() {
            let w = watching.contains(&u.record.id);
            let recent = now.duration_since(u.last_seen) < window;
            if u.record.banned {
                continue;
            }
            if w {
                view.watching.push(self.view_of(u));
            } else if recent {
                view.not_watching.push(self.view_of(u));
            }
        }
        for list in [&mut view.watching, &mut view.not_watching, &mut view.banned] {
            list.sort_by(|a, b| {
                (!a.broadcaster, a.name.to_lowercase(), &a.id).cmp(&(
                    !b.broadcaster,
                    b.name.to_lowercase(),
                    &b.id,
                ))
            });
        }
        view
    }
    /// Every user known (in memory, and on disk), with how long ago each was last seen
    /// (most recent first; for a user not seen since the server started, the last time they
    /// did something kept on disk).
    pub fn all_users(&self) -> Vec<(UserView, Duration)> {
        let now = Instant::now();
        let st = self.lock();
        let mut out: Vec<(UserView, Duration)> = st
            .users
            .values()
            .map(|u| (self.view_of(u), now.duration_since(u.last_seen)))
            .collect();
        if let Some(db) = &st.db {
            match db.users() {
                Ok(stored) => {
                    let now_ms = now_ms();
                    for record in stored.into_iter().filter(|r| !st.users.contains_key(&r.id)) {
                        let ago = u64::try_from(now_ms - record.last_seen_ms).unwrap_or(0);
                        let mut u = User::new(record.id.clone(), now, record.last_seen_ms);
                        u.record = record;
                        out.push((self.view_of(&u), Duration::from_millis(ago)));
                    }
                }
                Err(e) => tracing::warn!("cannot list the users on disk: {e}"),
            }
        }
        out.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.id.cmp(&b.0.id)));
        out
    }
    /// Finds a user by public id, or by a unique prefix of it (the tag shown beside default
    /// names works, with or without its `#`).
    pub fn find_user(&self, query: &str) -> Result<UserView, Notice> {
        let q = query.trim().trim_start_matches('#').to_ascii_lowercase();
        if q.len() < 3 {
            return Err(Notice::Invalid(format!(
                "{query:?} is too short: give a user's id or at least its 3-character tag"
            )));
        }
        let mut st = self.lock();
        if let Some(u) = Self::known(&mut st, &q, Instant::now()) {
            return Ok(self.view_of(u));
        }
        // In memory, and on disk (two are enough to tell "not unique").
        let mut matches: Vec<UserView> = st
            .users
            .values()
            .filter(|u| u.record.id.starts_with(&q))
            .map(|u| self.view_of(u))
            .collect();
        if let Some(db) = &st.db {
            let stored = db
                .users_with_prefix(&q, 2 + matches.len())
                .map_err(|e| Notice::StorageFailed(short_reason(&e)))?;
            for record in stored {
                if !matches.iter().any(|m| m.id == record.id) {
                    let mut u = User::new(record.id.clone(), Instant::now(), record.last_seen_ms);
                    u.record = record;
                    matches.push(self.view_of(&u));
                }
            }
        }
        match matches.as_slice() {
            [u] => Ok(u.clone()),
            [] => Err(Notice::NoSuchUser(query.to_owned())),
            _ => Err(Notice::Invalid(format!(
                "{query:?} matches several users; give more of the id (`user list` shows them)"
            ))),
        }
    }
}
