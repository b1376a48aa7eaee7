//! Image captchas for people who browse with JavaScript off: single-use, expiring challenges
//! drawn in-process as small PNGs from a font bundled with the program.
//!
//! Owns: the live challenges (who each belongs to, its answer, when it was issued), the ids
//! already used (so a replay is told "used"), the per-owner count of recent wrong answers, and
//! the drawing of the picture (`render`: bundled DejaVu Sans Mono Bold, never a system font).
//!
//! Must never:
//! - accept a challenge twice (a right or wrong answer consumes it);
//! - let one owner see or answer another owner's challenge, or even learn that it exists;
//! - keep unbounded state: live challenges, used ids and wrong-answer counters are all capped
//!   and swept as they expire;
//! - log, print or return an answer outside [`Captchas::answer_for_tests`];
//! - hold its lock while drawing a picture;
//! - compare an answer in time that depends on the expected answer.
//!
//! The picture is deterministic per challenge (a reload shows the same one), but its
//! randomness comes from a secret per-process key, so knowing a challenge id does not let anyone
//! reproduce the noise and strip it away.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::{Rng, RngCore};
use subtle::ConstantTimeEq;

mod render;

use render::render_png;

/// Settings.
#[derive(Debug, Clone)]
pub struct CaptchaPolicy {
    /// A challenge this old (or older) is refused as expired. Default 30 minutes.
    pub lifetime: Duration,
    /// Wrong answers one owner may give within `wrong_window` before every check by that owner
    /// is refused for a while. Default 5; 0 is taken as 1.
    pub max_wrong: u32,
    /// How long a wrong answer counts against its owner. Default 10 minutes.
    pub wrong_window: Duration,
    /// Characters in an answer. Default 4; taken within 1..=10 so it fits the picture.
    pub answer_len: usize,
}

impl Default for CaptchaPolicy {
    fn default() -> Self {
        CaptchaPolicy {
            lifetime: Duration::from_secs(1800),
            max_wrong: 5,
            wrong_window: Duration::from_secs(600),
            answer_len: 4,
        }
    }
}

/// Alphabet of answers: lowercase letters and digits that are hard to mistake for one another
/// (no 0/o, 1/l/i/j, 5/s, 2/z, 6/b, g/q or v; of 9/g/q only 9 is kept). Answers are checked
/// case-insensitively, ignoring surrounding whitespace.
pub const CAPTCHA_ALPHABET: &str = "34789acdefhkmnprtuwxy";
/// Most live challenges kept in all; beyond it the oldest are dropped.
pub const MAX_LIVE_CHALLENGES: usize = 20_000;
/// Width of the picture, in pixels.
pub const CAPTCHA_WIDTH: u32 = 160;
/// Height of the picture, in pixels.
pub const CAPTCHA_HEIGHT: u32 = 60;

/// Most used ids remembered (so a replay says "used"); beyond it the oldest are forgotten and a
/// replay of them says "expired" instead. Either way it is refused.
const MAX_USED_REMEMBERED: usize = MAX_LIVE_CHALLENGES;
/// Most owners with recent wrong answers remembered.
const MAX_WRONG_OWNERS: usize = MAX_LIVE_CHALLENGES;
/// Longest answer we bother to read; anything longer is simply wrong.
const MAX_ANSWER_INPUT: usize = 64;
/// Bounds on [`CaptchaPolicy::answer_len`].
const ANSWER_LEN_RANGE: (usize, usize) = (1, 10);
/// Fewest issue/check calls between two full sweeps.
const FULL_SWEEP_EVERY: usize = 1024;
/// Characters of a [`ChallengeId`].
const ID_LEN: usize = 22;
/// The alphabet of ids: 64 url-safe characters, so one random byte & 63 picks one uniformly.
const ID_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A challenge id: 22 random url-safe chars (`[A-Za-z0-9_-]`), safe in a URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChallengeId(String);

impl ChallengeId {
    /// An id as it came back from a form or URL; `None` unless it has the shape of one.
    pub fn parse(s: &str) -> Option<ChallengeId> {
        let ok = s.len() == ID_LEN && s.bytes().all(|b| ID_ALPHABET.contains(&b));
        ok.then(|| ChallengeId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn random() -> ChallengeId {
        let mut bytes = [0u8; ID_LEN];
        rand::rng().fill_bytes(&mut bytes);
        ChallengeId(
            bytes
                .iter()
                .map(|b| char::from(ID_ALPHABET[usize::from(b & 63)]))
                .collect(),
        )
    }
}

/// Why an answer was refused. Each message is a sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptchaError {
    #[error("that captcha is unknown or has expired; solve the new one")]
    Expired,
    #[error("that captcha was already used; solve the new one")]
    Used,
    #[error("wrong answer; try the new one")]
    Wrong,
    #[error("too many wrong answers; wait {} s", retry_after.as_secs().max(1))]
    TooManyWrong { retry_after: Duration },
}

/// An owner as kept in memory: a fixed-size hash, whatever the length of the owner string.
type OwnerKey = [u8; 32];

fn owner_key(owner: &str) -> OwnerKey {
    blake3::hash(owner.as_bytes()).into()
}

struct Live {
    owner: OwnerKey,
    answer: Box<str>,
    issued: Instant,
    /// Position in [`State::order`].
    seq: u64,
}

struct Used {
    owner: OwnerKey,
    issued: Instant,
}

#[derive(Default)]
struct State {
    live: HashMap<ChallengeId, Live>,
    /// Issue order of the live challenges (oldest first), for expiry and eviction.
    order: BTreeMap<u64, ChallengeId>,
    next_seq: u64,
    /// Each owner's live challenge (at most one).
    by_owner: HashMap<OwnerKey, ChallengeId>,
    /// Consumed ids, remembered until they would have expired.
    used: HashMap<ChallengeId, Used>,
    /// `used` in the order ids were consumed.
    used_order: VecDeque<ChallengeId>,
    /// Times of each owner's latest wrong answers (at most `max_wrong`, oldest first).
    wrong: HashMap<OwnerKey, VecDeque<Instant>>,
    /// issue/check calls left before the next full sweep.
    until_full_sweep: usize,
}

struct Inner {
    policy: CaptchaPolicy,
    /// Secret key the pictures' randomness is derived from.
    key: [u8; 32],
    state: Mutex<State>,
}

/// All live challenges. Cheap to clone: clones share the same challenges.
#[derive(Clone)]
pub struct Captchas {
    inner: Arc<Inner>,
}

impl fmt::Debug for Captchas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Captchas")
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

impl Captchas {
    pub fn new(policy: CaptchaPolicy) -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Captchas {
            inner: Arc::new(Inner {
                policy,
                key,
                state: Mutex::new(State::default()),
            }),
        }
    }

    pub fn policy(&self) -> &CaptchaPolicy {
        &self.inner.policy
    }

    /// A new challenge for `owner` (an opaque string: the user's public id). Issuing a new one
    /// for an owner drops that owner's previous unsolved one (one live challenge per owner).
    /// It does not look at lockouts: [`Captchas::check`] refuses a locked-out owner anyway.
    pub fn issue(&self, owner: &str, now: Instant) -> ChallengeId {
        let policy = &self.inner.policy;
        let len = policy
            .answer_len
            .clamp(ANSWER_LEN_RANGE.0, ANSWER_LEN_RANGE.1);
        let alphabet = CAPTCHA_ALPHABET.as_bytes();
        let mut rng = rand::rng();
        let answer: String = (0..len)
            .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
            .collect();
        let id = ChallengeId::random();
        let owner = owner_key(owner);

        let mut st = self.lock();
        st.maintain(policy, now);
        if let Some(old) = st.by_owner.get(&owner).cloned() {
            st.remove_live(&old);
        }
        while st.live.len() >= MAX_LIVE_CHALLENGES {
            let Some((_, oldest)) = st.order.pop_first() else {
                break;
            };
            st.remove_live(&oldest);
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.order.insert(seq, id.clone());
        st.by_owner.insert(owner, id.clone());
        st.live.insert(
            id.clone(),
            Live {
                owner,
                answer: answer.into_boxed_str(),
                issued: now,
                seq,
            },
        );
        id
    }

    /// The PNG picture of a live challenge, only for its owner; `None` if it is unknown,
    /// expired, used or another owner's. The same challenge gives the same bytes every time.
    pub fn image_png(&self, owner: &str, id: &ChallengeId, now: Instant) -> Option<Vec<u8>> {
        let owner = owner_key(owner);
        let answer = {
            let st = self.lock();
            let live = st.live.get(id)?;
            if live.owner != owner || expired(live.issued, now, self.inner.policy.lifetime) {
                return None;
            }
            live.answer.clone()
        };
        let seed: [u8; 32] = blake3::keyed_hash(&self.inner.key, id.as_str().as_bytes()).into();
        render_png(&answer, seed)
    }

    /// Checks an answer (case-insensitive, surrounding whitespace ignored).
    ///
    /// A right or wrong answer consumes the challenge; a replay of a consumed id gives
    /// [`CaptchaError::Used`]. A wrong answer counts against the owner; once the owner has
    /// `max_wrong` of them within `wrong_window`, every check by that owner gives
    /// [`CaptchaError::TooManyWrong`] without consuming or reading anything. Another owner's
    /// challenge gives [`CaptchaError::Expired`], as if it did not exist.
    pub fn check(
        &self,
        owner: &str,
        id: &ChallengeId,
        answer: &str,
        now: Instant,
    ) -> Result<(), CaptchaError> {
        let policy = &self.inner.policy;
        let owner = owner_key(owner);
        let mut st = self.lock();
        st.maintain(policy, now);

        if let Some(retry_after) = st.wrong.get(&owner).and_then(|w| lockout(w, policy, now)) {
            return Err(CaptchaError::TooManyWrong { retry_after });
        }
        if let Some(used) = st.used.get(id) {
            return if used.owner == owner && !expired(used.issued, now, policy.lifetime) {
                Err(CaptchaError::Used)
            } else {
                Err(CaptchaError::Expired)
            };
        }
        // Another owner's challenge is left alone and looks like no challenge at all.
        let Some(live) = st.live.get(id).filter(|l| l.owner == owner) else {
            return Err(CaptchaError::Expired);
        };
        let stale = expired(live.issued, now, policy.lifetime);
        let Some(live) = st.remove_live(id) else {
            return Err(CaptchaError::Expired);
        };
        if stale {
            return Err(CaptchaError::Expired);
        }
        st.remember_used(id.clone(), owner, live.issued);
        if answer_matches(answer, &live.answer) {
            Ok(())
        } else {
            st.record_wrong(owner, policy, now);
            Err(CaptchaError::Wrong)
        }
    }

    /// The live challenge of this owner, if any (so a page can show the same one again).
    pub fn current(&self, owner: &str, now: Instant) -> Option<ChallengeId> {
        let st = self.lock();
        let id = st.by_owner.get(&owner_key(owner))?;
        let live = st.live.get(id)?;
        (!expired(live.issued, now, self.inner.policy.lifetime)).then(|| id.clone())
    }

    /// Whether `owner` is locked out by too many wrong answers, and for how long.
    pub fn locked_out(&self, owner: &str, now: Instant) -> Option<Duration> {
        let st = self.lock();
        st.wrong
            .get(&owner_key(owner))
            .and_then(|w| lockout(w, &self.inner.policy, now))
    }

    /// For tests only: the expected answer of a live challenge.
    #[doc(hidden)]
    pub fn answer_for_tests(&self, id: &ChallengeId) -> Option<String> {
        self.lock().live.get(id).map(|l| l.answer.to_string())
    }

    /// For tests only: how many challenges are live (issued, not yet consumed or dropped).
    #[doc(hidden)]
    pub fn live_count(&self) -> usize {
        self.lock().live.len()
    }

    /// Drops expired challenges, used ids and old wrong-answer counts. [`Captchas::issue`] and
    /// [`Captchas::check`] do this too (amortised), so state stays bounded without it.
    pub fn sweep(&self, now: Instant) {
        let policy = &self.inner.policy;
        let mut st = self.lock();
        st.full_sweep(policy, now);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether something issued at `issued` is expired at `now`.
fn expired(issued: Instant, now: Instant, lifetime: Duration) -> bool {
    now.saturating_duration_since(issued) >= lifetime
}

/// How long an owner with these wrong answers is still locked out, if they are.
fn lockout(wrong: &VecDeque<Instant>, policy: &CaptchaPolicy, now: Instant) -> Option<Duration> {
    let max = policy.max_wrong.max(1) as usize;
    let mut recent: Vec<Instant> = wrong
        .iter()
        .copied()
        .filter(|&t| now.saturating_duration_since(t) < policy.wrong_window)
        .collect();
    if recent.len() < max {
        return None;
    }
    recent.sort_unstable();
    // The lockout lifts once enough of the recent ones have left the window.
    let lifts_with = recent[recent.len() - max];
    Some(
        policy
            .wrong_window
            .saturating_sub(now.saturating_duration_since(lifts_with)),
    )
}

/// Compares a typed answer with the expected one, in time independent of the expected one.
fn answer_matches(given: &str, expected: &str) -> bool {
    let given = given.trim();
    if given.len() > MAX_ANSWER_INPUT {
        return false;
    }
    let given = given.to_ascii_lowercase();
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

impl State {
    fn remove_live(&mut self, id: &ChallengeId) -> Option<Live> {
        let live = self.live.remove(id)?;
        self.order.remove(&live.seq);
        if self.by_owner.get(&live.owner) == Some(id) {
            self.by_owner.remove(&live.owner);
        }
        Some(live)
    }

    fn remember_used(&mut self, id: ChallengeId, owner: OwnerKey, issued: Instant) {
        while self.used_order.len() >= MAX_USED_REMEMBERED {
            if let Some(old) = self.used_order.pop_front() {
                self.used.remove(&old);
            }
        }
        self.used.insert(id.clone(), Used { owner, issued });
        self.used_order.push_back(id);
    }

    fn record_wrong(&mut self, owner: OwnerKey, policy: &CaptchaPolicy, now: Instant) {
        if !self.wrong.contains_key(&owner) && self.wrong.len() >= MAX_WRONG_OWNERS {
            self.prune_wrong(policy, now);
            if self.wrong.len() >= MAX_WRONG_OWNERS {
                self.evict_quietest_wrong();
            }
        }
        let times = self.wrong.entry(owner).or_default();
        times.push_back(now);
        // Only the latest `max_wrong` matter for a lockout.
        while times.len() > policy.max_wrong.max(1) as usize {
            times.pop_front();
        }
    }

    /// Drops wrong answers that have left the window, and owners left with none.
    fn prune_wrong(&mut self, policy: &CaptchaPolicy, now: Instant) {
        self.wrong.retain(|_, times| {
            times.retain(|&t| now.saturating_duration_since(t) < policy.wrong_window);
            !times.is_empty()
        });
    }

    /// Makes room among wrong-answer counters by forgetting the eighth of owners whose latest
    /// wrong answer is oldest.
    fn evict_quietest_wrong(&mut self) {
        let mut latest: Vec<(Instant, OwnerKey)> = self
            .wrong
            .iter()
            .filter_map(|(k, times)| times.back().map(|&t| (t, *k)))
            .collect();
        let drop = (latest.len() / 8).max(1).min(latest.len());
        if drop == 0 {
            return;
        }
        latest.select_nth_unstable_by_key(drop - 1, |&(t, _)| t);
        for (_, k) in &latest[..drop] {
            self.wrong.remove(k);
        }
    }

    /// Cheap upkeep on every issue/check, plus a full sweep every so often (amortised O(1)).
    fn maintain(&mut self, policy: &CaptchaPolicy, now: Instant) {
        // Live challenges in issue order: drop expired ones from the front.
        while let Some((_, id)) = self.order.first_key_value() {
            let stale = self
                .live
                .get(id)
                .is_none_or(|l| expired(l.issued, now, policy.lifetime));
            if !stale {
                break;
            }
            let id = id.clone();
            if self.remove_live(&id).is_none() {
                self.order.pop_first();
            }
        }
        // Used ids in consumption order: drop expired ones from the front.
        while let Some(id) = self.used_order.front() {
            let stale = self
                .used
                .get(id)
                .is_none_or(|u| expired(u.issued, now, policy.lifetime));
            if !stale {
                break;
            }
            if let Some(id) = self.used_order.pop_front() {
                self.used.remove(&id);
            }
        }
        if self.until_full_sweep == 0 {
            self.full_sweep(policy, now);
        } else {
            self.until_full_sweep -= 1;
        }
    }

    fn full_sweep(&mut self, policy: &CaptchaPolicy, now: Instant) {
        let stale: Vec<ChallengeId> = self
            .live
            .iter()
            .filter(|(_, l)| expired(l.issued, now, policy.lifetime))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &stale {
            self.remove_live(id);
        }
        self.used
            .retain(|_, u| !expired(u.issued, now, policy.lifetime));
        let used = &self.used;
        self.used_order.retain(|id| used.contains_key(id));
        self.prune_wrong(policy, now);
        let size = self.live.len() + self.used.len() + self.wrong.len();
        self.until_full_sweep = size.max(FULL_SWEEP_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::render::font;
    use super::*;
    use ab_glyph::Font;

    fn captchas() -> Captchas {
        Captchas::new(CaptchaPolicy::default())
    }

    /// Decodes a PNG into (width, height, 8-bit gray pixels).
    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND);
        let mut reader = decoder.read_info().expect("png header");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buf).expect("png frame");
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn captcha_right_answer_is_accepted_once_in_any_case_with_spaces() {
        let c = captchas();
        let now = Instant::now();
        let id = c.issue("alice", now);
        assert_eq!(c.current("alice", now), Some(id.clone()));
        let answer = c.answer_for_tests(&id).unwrap();
        assert_eq!(answer.len(), 4);
        assert!(answer.chars().all(|ch| CAPTCHA_ALPHABET.contains(ch)));
        let typed = format!("  {}\t\n", answer.to_uppercase());
        assert_eq!(c.check("alice", &id, &typed, now), Ok(()));
        assert_eq!(c.check("alice", &id, &answer, now), Err(CaptchaError::Used));
        assert_eq!(c.current("alice", now), None);
        assert_eq!(c.image_png("alice", &id, now), None);
        assert_eq!(c.locked_out("alice", now), None);
    }

    #[test]
    fn captcha_wrong_answer_consumes_the_challenge() {
        let c = captchas();
        let now = Instant::now();
        let id = c.issue("alice", now);
        let answer = c.answer_for_tests(&id).unwrap();
        assert_eq!(c.check("alice", &id, "!!!!", now), Err(CaptchaError::Wrong));
        assert_eq!(c.answer_for_tests(&id), None);
        assert_eq!(c.current("alice", now), None);
        assert_eq!(c.image_png("alice", &id, now), None);
        // Even the right answer now: the id is gone.
        assert_eq!(c.check("alice", &id, &answer, now), Err(CaptchaError::Used));
        // An empty or a too-long answer is simply wrong.
        let id = c.issue("alice", now);
        assert_eq!(c.check("alice", &id, "", now), Err(CaptchaError::Wrong));
        let id = c.issue("alice", now);
        let long = "a".repeat(10_000);
        assert_eq!(c.check("alice", &id, &long, now), Err(CaptchaError::Wrong));
    }

    #[test]
    fn captcha_too_many_wrong_locks_out_then_lifts_after_the_window() {
        let c = captchas();
        let policy = c.policy().clone();
        let t0 = Instant::now();
        for i in 0..policy.max_wrong {
            let now = t0 + Duration::from_secs(u64::from(i));
            let id = c.issue("mallory", now);
            assert_eq!(
                c.check("mallory", &id, "nope", now),
                Err(CaptchaError::Wrong)
            );
        }
        let now = t0 + Duration::from_secs(10);
        let id = c.issue("mallory", now);
        let answer = c.answer_for_tests(&id).unwrap();
        let expected_wait = policy.wrong_window - Duration::from_secs(10);
        assert_eq!(
            c.check("mallory", &id, &answer, now),
            Err(CaptchaError::TooManyWrong {
                retry_after: expected_wait
            })
        );
        assert_eq!(c.locked_out("mallory", now), Some(expected_wait));
        // Not consumed: the same challenge is still live and shown.
        assert_eq!(c.answer_for_tests(&id), Some(answer.clone()));
        assert_eq!(c.current("mallory", now), Some(id.clone()));
        // Other owners are not affected.
        assert_eq!(c.locked_out("alice", now), None);
        let other = c.issue("alice", now);
        let other_answer = c.answer_for_tests(&other).unwrap();
        assert_eq!(c.check("alice", &other, &other_answer, now), Ok(()));

        // Just before the oldest wrong answer leaves the window: still locked.
        let almost = t0 + policy.wrong_window - Duration::from_millis(1);
        assert!(matches!(
            c.check("mallory", &id, &answer, almost),
            Err(CaptchaError::TooManyWrong { .. })
        ));
        // Once it has left: the right answer is accepted.
        let later = t0 + policy.wrong_window;
        assert_eq!(c.locked_out("mallory", later), None);
        assert_eq!(c.check("mallory", &id, &answer, later), Ok(()));
    }

    #[test]
    fn captcha_lockout_message_says_how_long() {
        let e = CaptchaError::TooManyWrong {
            retry_after: Duration::from_millis(300),
        };
        assert_eq!(e.to_string(), "too many wrong answers; wait 1 s");
        let e = CaptchaError::TooManyWrong {
            retry_after: Duration::from_secs(42),
        };
        assert_eq!(e.to_string(), "too many wrong answers; wait 42 s");
    }

    #[test]
    fn captcha_expires_after_its_lifetime() {
        let c = captchas();
        let lifetime = c.policy().lifetime;
        let t0 = Instant::now();
        let id = c.issue("alice", t0);
        let answer = c.answer_for_tests(&id).unwrap();
        let late = t0 + lifetime;
        assert_eq!(c.current("alice", late), None);
        assert_eq!(c.image_png("alice", &id, late), None);
        assert_eq!(
            c.check("alice", &id, &answer, late),
            Err(CaptchaError::Expired)
        );

        let id = c.issue("bob", t0);
        let answer = c.answer_for_tests(&id).unwrap();
        let in_time = t0 + lifetime - Duration::from_secs(1);
        assert!(c.image_png("bob", &id, in_time).is_some());
        assert_eq!(c.check("bob", &id, &answer, in_time), Ok(()));
        // A replay is "used" until the challenge would have expired, then "expired".
        assert_eq!(
            c.check("bob", &id, &answer, in_time),
            Err(CaptchaError::Used)
        );
        assert_eq!(
            c.check("bob", &id, &answer, t0 + lifetime),
            Err(CaptchaError::Expired)
        );
    }

    #[test]
    fn captcha_of_another_owner_cannot_be_seen_or_answered() {
        let c = captchas();
        let now = Instant::now();
        let id = c.issue("alice", now);
        let answer = c.answer_for_tests(&id).unwrap();
        assert_eq!(c.image_png("eve", &id, now), None);
        assert_eq!(
            c.check("eve", &id, &answer, now),
            Err(CaptchaError::Expired)
        );
        assert_eq!(c.current("eve", now), None);
        // Untouched for its owner.
        assert!(c.image_png("alice", &id, now).is_some());
        assert_eq!(c.check("alice", &id, &answer, now), Ok(()));
        // Nor does a used one say "used" to someone else.
        assert_eq!(
            c.check("eve", &id, &answer, now),
            Err(CaptchaError::Expired)
        );
    }

    #[test]
    fn captcha_issuing_a_new_one_drops_the_old_one() {
        let c = captchas();
        let now = Instant::now();
        let old = c.issue("alice", now);
        let old_answer = c.answer_for_tests(&old).unwrap();
        let new = c.issue("alice", now);
        assert_ne!(old, new);
        assert_eq!(c.current("alice", now), Some(new.clone()));
        assert_eq!(c.image_png("alice", &old, now), None);
        assert_eq!(
            c.check("alice", &old, &old_answer, now),
            Err(CaptchaError::Expired)
        );
        assert_eq!(c.live_count(), 1);
        let new_answer = c.answer_for_tests(&new).unwrap();
        assert_eq!(c.check("alice", &new, &new_answer, now), Ok(()));
    }

    #[test]
    fn captcha_state_stays_bounded() {
        let c = captchas();
        let now = Instant::now();
        let first = c.issue("owner-0", now);
        let mut last = first.clone();
        for i in 1..MAX_LIVE_CHALLENGES + 100 {
            last = c.issue(&format!("owner-{i}"), now);
        }
        assert!(c.live_count() <= MAX_LIVE_CHALLENGES);
        // The oldest went first; the newest is still there.
        assert_eq!(c.current("owner-0", now), None);
        assert_eq!(
            c.check("owner-0", &first, "xxxx", now),
            Err(CaptchaError::Expired)
        );
        let name = format!("owner-{}", MAX_LIVE_CHALLENGES + 99);
        assert_eq!(c.current(&name, now), Some(last));

        // Consume them all wrongly: used ids and wrong counters stay bounded too.
        for i in 0..MAX_LIVE_CHALLENGES + 100 {
            let owner = format!("owner-{i}");
            if let Some(id) = c.current(&owner, now) {
                assert_eq!(c.check(&owner, &id, "!", now), Err(CaptchaError::Wrong));
            }
        }
        for i in 0..MAX_LIVE_CHALLENGES + 100 {
            let owner = format!("late-{i}");
            let id = c.issue(&owner, now);
            assert_eq!(c.check(&owner, &id, "!", now), Err(CaptchaError::Wrong));
        }
        {
            let st = c.lock();
            assert!(st.used.len() <= MAX_USED_REMEMBERED);
            assert_eq!(st.used.len(), st.used_order.len());
            assert!(st.wrong.len() <= MAX_WRONG_OWNERS);
            assert!(st.by_owner.len() <= st.live.len());
            assert_eq!(st.order.len(), st.live.len());
        }

        // After everything has expired, a sweep leaves nothing behind.
        let policy = c.policy().clone();
        c.sweep(now + policy.lifetime.max(policy.wrong_window));
        let st = c.lock();
        assert!(st.live.is_empty());
        assert!(st.order.is_empty());
        assert!(st.by_owner.is_empty());
        assert!(st.used.is_empty());
        assert!(st.used_order.is_empty());
        assert!(st.wrong.is_empty());
    }

    #[test]
    fn captcha_expired_challenges_are_swept_by_issue_and_check() {
        let c = captchas();
        let t0 = Instant::now();
        for i in 0..100 {
            c.issue(&format!("owner-{i}"), t0);
        }
        assert_eq!(c.live_count(), 100);
        c.issue("someone", t0 + c.policy().lifetime);
        assert_eq!(c.live_count(), 1);
    }

    #[test]
    fn captcha_png_decodes_with_dark_and_light_pixels() {
        let c = captchas();
        let now = Instant::now();
        let id = c.issue("alice", now);
        let png = c.image_png("alice", &id, now).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        let (w, h, pixels) = decode(&png);
        assert_eq!((w, h), (CAPTCHA_WIDTH, CAPTCHA_HEIGHT));
        assert_eq!(pixels.len(), (w * h) as usize);
        let dark = pixels.iter().filter(|&&p| p < 80).count();
        let light = pixels.iter().filter(|&&p| p > 200).count();
        // Some ink (the glyphs), mostly ground.
        assert!(dark > 200, "only {dark} dark pixels");
        assert!(light > pixels.len() / 2, "only {light} light pixels");
    }

    #[test]
    fn captcha_same_challenge_gives_the_same_picture() {
        let c = captchas();
        let now = Instant::now();
        let id = c.issue("alice", now);
        let a = c.image_png("alice", &id, now).unwrap();
        let b = c
            .image_png("alice", &id, now + Duration::from_secs(60))
            .unwrap();
        assert_eq!(a, b);
        // A clone shares the challenges (and the key).
        assert_eq!(c.clone().image_png("alice", &id, now).unwrap(), a);
    }

    #[test]
    fn captcha_different_answers_give_different_pictures() {
        let c = captchas();
        let now = Instant::now();
        let a = c.issue("alice", now);
        let b = c.issue("bob", now);
        assert_ne!(
            c.image_png("alice", &a, now).unwrap(),
            c.image_png("bob", &b, now).unwrap()
        );
        // Even with the same randomness, the text shows.
        let seed = [7u8; 32];
        let (_, _, one) = decode(&render_png("3478", seed).unwrap());
        let (_, _, two) = decode(&render_png("acde", seed).unwrap());
        let differing = one
            .iter()
            .zip(&two)
            .filter(|(x, y)| x.abs_diff(**y) > 60)
            .count();
        assert!(differing > 100, "only {differing} pixels differ");
    }

    #[test]
    fn captcha_every_answer_character_is_drawn() {
        let font = font().expect("bundled font parses");
        for ch in CAPTCHA_ALPHABET.chars() {
            assert_ne!(font.glyph_id(ch).0, 0, "no glyph for {ch:?}");
            let (_, _, pixels) = decode(&render_png(&ch.to_string(), [1; 32]).unwrap());
            assert!(pixels.iter().filter(|&&p| p < 80).count() > 30, "{ch:?}");
        }
    }

    #[test]
    fn captcha_alphabet_has_no_look_alikes() {
        let mut seen = std::collections::HashSet::new();
        for ch in CAPTCHA_ALPHABET.chars() {
            assert!(ch.is_ascii_lowercase() || ch.is_ascii_digit());
            assert!(seen.insert(ch), "{ch:?} twice");
            assert!(!"0o1li5s2zj6bgqv".contains(ch), "{ch:?} is ambiguous");
        }
    }

    #[test]
    fn captcha_ids_are_url_safe_and_parse_back() {
        let c = captchas();
        let now = Instant::now();
        let id = c.issue("alice", now);
        assert_eq!(id.as_str().len(), 22);
        assert!(id
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(ChallengeId::parse(id.as_str()), Some(id.clone()));
        assert_ne!(c.issue("bob", now), id);
        assert_eq!(ChallengeId::parse(""), None);
        assert_eq!(ChallengeId::parse("abc"), None);
        assert_eq!(ChallengeId::parse(&"a".repeat(23)), None);
        assert_eq!(ChallengeId::parse("aaaaaaaaaaaaaaaaaaaaa/"), None);
        assert_eq!(ChallengeId::parse("aaaaaaaaaaaaaaaaaaaaaé"), None);
        assert!(ChallengeId::parse("Az09_-Az09_-Az09_-Az09").is_some());
    }

    #[test]
    fn captcha_answer_length_follows_the_policy() {
        let c = Captchas::new(CaptchaPolicy {
            answer_len: 6,
            ..CaptchaPolicy::default()
        });
        let now = Instant::now();
        let id = c.issue("alice", now);
        assert_eq!(c.answer_for_tests(&id).unwrap().len(), 6);
        assert!(c.image_png("alice", &id, now).is_some());
    }

    #[test]
    fn captchas_are_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Captchas>();
    }

    /// Size and time of a typical picture (`cargo test -p room --release captcha -- --nocapture`).
    #[test]
    fn captcha_render_size_and_time() {
        let c = captchas();
        let now = Instant::now();
        let rounds = 200;
        let ids: Vec<(String, ChallengeId)> = (0..rounds)
            .map(|i| {
                let owner = format!("owner-{i}");
                let id = c.issue(&owner, now);
                (owner, id)
            })
            .collect();
        let start = Instant::now();
        let mut sizes: Vec<usize> = ids
            .iter()
            .map(|(owner, id)| c.image_png(owner, id, now).unwrap().len())
            .collect();
        let each = start.elapsed() / rounds;
        sizes.sort_unstable();
        println!(
            "captcha png: median {} bytes, max {} bytes; {:?} per picture",
            sizes[sizes.len() / 2],
            sizes[sizes.len() - 1],
            each
        );
        assert!(sizes[sizes.len() / 2] < 10 * 1024);
    }
}
