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
        for u in st.users.values() {
            let w = watching.contains(&u.record.id);
            let recent = now.duration_since(u.last_seen) < window;
            if u.record.banned {
                if broadcaster {
                    view.banned.push(self.view_of(u));
                }
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
    /// Users known now, with how long ago each was last seen (most recent first).
    pub fn all_users(&self) -> Vec<(UserView, Duration)> {
        let now = Instant::now();
        let st = self.lock();
        let mut out: Vec<(UserView, Duration)> = st
            .users
            .values()
            .map(|u| (self.view_of(u), now.duration_since(u.last_seen)))
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.id.cmp(&b.0.id)));
        out
    }
    /// Finds a user by public id, or by a unique prefix of it (the tag shown beside default
    /// names works, with or without its `#`).
    pub fn find_user(&self, query: &str) -> Result<UserView, String> {
        let q = query.trim().trim_start_matches('#').to_ascii_lowercase();
        if q.len() < 3 {
            return Err(format!(
                "{query:?} is too short: give a user's id or at least its 3-character tag"
            ));
        }
        let st = self.lock();
        if let Some(u) = st.users.get(&q) {
            return Ok(self.view_of(u));
        }
        let matches: Vec<&User> = st
            .users
            .values()
            .filter(|u| u.record.id.starts_with(&q))
            .collect();
        match matches.as_slice() {
            [u] => Ok(self.view_of(u)),
            [] => Err(format!("no user {query:?}")),
            many => Err(format!(
                "{query:?} matches {} users; give more of the id (`user list` shows them)",
                many.len()
            )),
        }
    }
}
