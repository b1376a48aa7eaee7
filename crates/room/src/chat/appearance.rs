//! A visitor's appearance: name, colour and tripcode (the slow hash at most
//! [`super::MAX_CONCURRENT_SLOW_HASHES`] at once, outside the lock).
//!
//! Owns: these methods of [`Room`]. Must never: hold the room's lock during a slow hash.

use super::*;

impl Room {
    /// Marks the visitor as seen and says who they are.
    pub fn me(&self, token: &Token) -> UserView {
        let now = Instant::now();
        let mut st = self.lock();
        let u = self.user(&mut st, token, now);
        self.view_of(u)
    }
    /// Computes a tripcode for this user, within their rate limit. Slow; takes no lock while
    /// hashing.
    pub(super) fn make_tripcode(&self, token: &Token, password: &str) -> Result<Tripcode, Notice> {
        let now = Instant::now();
        {
            let mut st = self.lock();
            let u = self.user(&mut st, token, now);
            while u
                .tripcodes_made
                .front()
                .is_some_and(|t| now.duration_since(*t) >= TRIPCODE_WINDOW)
            {
                u.tripcodes_made.pop_front();
            }
            if u.tripcodes_made.len() >= TRIPCODES_PER_WINDOW {
                let retry_after =
                    TRIPCODE_WINDOW.saturating_sub(now.duration_since(u.tripcodes_made[0]));
                return Err(Notice::TripcodeTooOften { retry_after });
            }
            u.tripcodes_made.push_back(now);
        }
        let _slot = SlowHashSlot::take(&self.inner.slow_hashes).ok_or(Notice::TripcodeBusy)?;
        Tripcode::from_password(password, &self.inner.key)
            .map_err(|e| Notice::BadTripcode(e.to_string()))
    }
    /// Changes name, colour or tripcode. The notice waits for the next form as well.
    pub fn set_appearance(&self, token: &Token, change: AppearanceChange) -> Result<(), Notice> {
        let result = self.set_appearance_inner(token, change);
        let now = Instant::now();
        let mut st = self.lock();
        let u = self.user(&mut st, token, now);
        u.notice = Some(match &result {
            Ok(()) => Notice::AppearanceSaved,
            Err(n) => n.clone(),
        });
        result
    }
    pub(super) fn set_appearance_inner(
        &self,
        token: &Token,
        change: AppearanceChange,
    ) -> Result<(), Notice> {
        let now = Instant::now();
        let rules = &self.inner.config.rules;
        {
            let mut st = self.lock();
            let u = self.user(&mut st, token, now);
            if !Self::take_nonce(u, &change.nonce) {
                return Err(Notice::Duplicate);
            }
        }
        let name = match &change.name {
            Some(n) => {
                let n = sanitize(n, false);
                if n.chars().count() > rules.max_name_chars {
                    return Err(Notice::NameTooLong {
                        max: rules.max_name_chars,
                    });
                }
                Some((!n.is_empty()).then_some(n))
            }
            None => None,
        };
        let colour = match change.colour.as_deref().map(str::trim) {
            Some("") => Some(None),
            Some(c) => Some(Some(
                Colour::parse_custom(c)
                    .map_err(|e| Notice::BadColour(e.to_string()))?
                    .to_string(),
            )),
            None => None,
        };
        let tripcode = if change.clear_tripcode {
            Some(None)
        } else {
            match change.tripcode_password.as_deref() {
                Some(p) if !p.is_empty() => Some(Some(self.make_tripcode(token, p)?)),
                _ => None,
            }
        };
        let mut st = self.lock();
        let u = self.user(&mut st, token, now);
        let before = u.record.clone();
        if let Some(n) = name {
            u.record.name = n;
        }
        if let Some(c) = colour {
            u.record.colour = c;
        }
        if let Some(t) = tripcode {
            u.record.tripcode = t.map(|t| t.as_str().to_owned());
        }
        let id = u.record.id.clone();
        if let Err(e) = Self::save(&mut st, &id) {
            if let Some(u) = st.users.get_mut(&id) {
                u.record = before;
            }
            return Err(Notice::StorageFailed(short_reason(&e)));
        }
        if let Some(u) = st.users.get(&id) {
            self.emit(RoomEvent::AppearanceChanged(self.view_of(u)));
        }
        Ok(())
    }
}
