//! Who a visitor is and whether they get in: roles, the broadcaster's login, the access
//! captcha, private mode's door, captcha images.
//!
//! Owns: these methods of [`Room`]. Must never: decide a chat rule of posting (that is
//! [`super::posting`]), or compare a password without constant time.

use super::*;

impl Room {
    pub fn role(&self, token: &Token) -> Role {
        let a = blake3::hash(token.secret().as_bytes());
        let b = blake3::hash(self.inner.broadcaster_token.secret().as_bytes());
        if bool::from(a.as_bytes().ct_eq(b.as_bytes())) {
            Role::Broadcaster
        } else {
            Role::Viewer
        }
    }
    /// Checks the broadcaster's Basic-auth credentials; on success, the token the broadcaster's
    /// pages carry. Failures from everyone together are limited per minute.
    pub fn login(&self, user: &str, password: &str) -> Result<Token, LoginError> {
        let now = Instant::now();
        {
            let mut f = self
                .inner
                .login_failures
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            while f
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
            {
                f.pop_front();
            }
            if f.len() >= LOGIN_FAILURES_PER_MINUTE {
                let retry_after = Duration::from_secs(60).saturating_sub(now.duration_since(f[0]));
                return Err(LoginError::TooMany { retry_after });
            }
            // Counted as a failure until it proves right: checks running at once cannot
            // together pass the limit (each takes its place before the slow check).
            f.push_back(now);
        }
        let release = || {
            let mut f = self
                .inner
                .login_failures
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(i) = f.iter().rposition(|t| *t == now) {
                f.remove(i);
            }
        };
        // A hashed password costs Argon2's memory per check: never more than a few at once.
        let Some(_slot) = SlowHashSlot::take(&self.inner.slow_hashes) else {
            release();
            return Err(LoginError::TooMany {
                retry_after: Duration::from_secs(1),
            });
        };
        let user_ok: bool = blake3::hash(user.as_bytes())
            .as_bytes()
            .ct_eq(blake3::hash(BROADCASTER_USER.as_bytes()).as_bytes())
            .into();
        let password_ok = self.inner.config.broadcaster_password.verify(password);
        if user_ok && password_ok {
            release();
            return Ok(self.inner.broadcaster_token.clone());
        }
        self.count(&self.inner.counters.logins_failed);
        Err(LoginError::Wrong)
    }
    /// The broadcaster's token, for the local console only (`ctl login`): a way in that no
    /// one on the network can lock out by failing the web login.
    pub fn broadcaster_token(&self) -> &Token {
        &self.inner.broadcaster_token
    }
    /// Whether the visitor may see the page (private mode, access captcha).
    pub fn access(&self, token: &Token) -> Access {
        let now = Instant::now();
        let broadcaster = self.role(token) == Role::Broadcaster;
        let mut st = self.lock();
        if broadcaster {
            return Access::Allowed;
        }
        let u = self.user(&mut st, token, now);
        let (owner, passed) = (u.record.id.clone(), u.access_passed);
        let tripcode = u.record.tripcode.clone();
        if st.private_mode && !tripcode.is_some_and(|t| st.private_allowed.contains(&t)) {
            return Access::Private;
        }
        if self.inner.config.access_captcha && !passed {
            drop(st);
            let id = self
                .inner
                .captchas
                .current(&owner, now)
                .unwrap_or_else(|| self.issue_captcha(&owner, now));
            return Access::Captcha(id);
        }
        Access::Allowed
    }
    /// Answers the access captcha.
    pub fn solve_access_captcha(
        &self,
        token: &Token,
        id: &str,
        answer: &str,
    ) -> Result<(), Notice> {
        let now = Instant::now();
        let owner = self.public_id(token);
        let id = ChallengeId::parse(id).ok_or(Notice::CaptchaExpired)?;
        self.inner
            .captchas
            .check(&owner, &id, answer, now)
            .map_err(|e| self.captcha_failed(e))?;
        self.count(&self.inner.counters.captchas_solved);
        let mut st = self.lock();
        let u = self.user(&mut st, token, now);
        u.access_passed = true;
        let id = u.record.id.clone();
        Self::save(&mut st, &id).map_err(|e| Notice::StorageFailed(short_reason(&e)))
    }
    /// Private mode: enter with a tripcode password. True if its tripcode is on the list (the
    /// user's tripcode is then set to it).
    pub fn enter_private(&self, token: &Token, password: &str) -> Result<bool, Notice> {
        let trip = self.make_tripcode(token, password)?;
        let now = Instant::now();
        let mut st = self.lock();
        if !st.private_allowed.contains(trip.as_str()) {
            return Ok(false);
        }
        let u = self.user(&mut st, token, now);
        u.record.tripcode = Some(trip.as_str().to_owned());
        let id = u.record.id.clone();
        Self::save(&mut st, &id).map_err(|e| Notice::StorageFailed(e.to_string()))?;
        Ok(true)
    }
    /// The image of this visitor's captcha challenge.
    pub fn captcha_png(&self, token: &Token, id: &str) -> Option<Vec<u8>> {
        let id = ChallengeId::parse(id)?;
        self.inner
            .captchas
            .image_png(&self.public_id(token), &id, Instant::now())
    }
}
