//! Who is watching, and how many `/stream.mp4` responses each visitor may hold.
//!
//! Owns: per-token presence (when video last reached them), the count of watching viewers,
//! and the limits on open streams (per token and in all) and on how often a token may open a
//! new one. Must never: know what a stream contains, or keep unbounded per-token state.
//!
//! A plain `std::sync::Mutex`: every critical section is a hash-map lookup, never an await.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::token::Token;

/// Window over which [`StreamLimits::opens_per_minute`] is counted.
const OPEN_WINDOW: Duration = Duration::from_secs(60);
/// How often a viewer's presence is refreshed while video flows to it.
const MARK_INTERVAL: Duration = Duration::from_secs(1);
/// Tokens with nothing open and no activity for this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// How often the watching count is recomputed at most.
const COUNT_CACHE: Duration = Duration::from_secs(1);
/// Most tokens remembered at once; beyond it, idle ones are forgotten first.
pub const MAX_TRACKED_TOKENS: usize = 100_000;

/// Limits on `/stream.mp4` responses.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// Open responses one token may hold at once.
    pub max_per_token: usize,
    /// New responses one token may open per minute.
    pub opens_per_minute: usize,
    /// Open responses in all.
    pub max_total: usize,
    /// A viewer counts as watching while video reached it this recently.
    pub watching_window: Duration,
    /// A viewer moved forward (skipped ahead because it could not keep up) this many times
    /// within [`StreamLimits::struggle_window`] on one rendition is struggling: its page
    /// suggests a lower quality. 0: never.
    pub struggle_skips: usize,
    pub struggle_window: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_per_token: 3,
            opens_per_minute: 12,
            max_total: 10_000,
            watching_window: Duration::from_secs(8),
            struggle_skips: 2,
            struggle_window: Duration::from_secs(120),
        }
    }
}

/// Why a stream was refused, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRefused {
    TooManyOpen { limit: usize },
    TooOften { retry_after: Duration },
    ServerFull,
}

impl StreamRefused {
    pub fn retry_after(&self) -> Duration {
        match self {
            StreamRefused::TooManyOpen { .. } => Duration::from_secs(10),
            StreamRefused::TooOften { retry_after } => *retry_after,
            StreamRefused::ServerFull => Duration::from_secs(30),
        }
    }

    /// A sentence for the visitor.
    pub fn reason(&self) -> String {
        match self {
            StreamRefused::TooManyOpen { limit } => {
                format!("You already have {limit} streams open. Close one and try again.")
            }
            StreamRefused::TooOften { retry_after } => format!(
                "You opened the stream too often. Try again in {} s.",
                retry_after.as_secs().max(1)
            ),
            StreamRefused::ServerFull => {
                "The server has as many viewers as it can take. Try again later.".into()
            }
        }
    }
}

#[derive(Debug)]
struct Entry {
    open: usize,
    opens: VecDeque<Instant>,
    last_video: Option<Instant>,
    last_activity: Instant,
    /// The latest skips ahead, with the rendition they happened on (at most
    /// `struggle_skips` kept).
    skips: VecDeque<(Instant, &'static str)>,
}

#[derive(Debug, Default)]
struct State {
    tokens: HashMap<Token, Entry>,
    open_total: usize,
    watching_cache: Option<(Instant, usize)>,
}

/// Presence and stream limits. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Viewers {
    limits: Arc<StreamLimits>,
    state: Arc<Mutex<State>>,
}

impl Viewers {
    pub fn new(limits: StreamLimits) -> Self {
        Viewers {
            limits: Arc::new(limits),
            state: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a stream for `token`, or says why not. The guard closes it when dropped.
    pub fn open_stream(&self, token: &Token) -> Result<ViewerGuard, StreamRefused> {
        let now = Instant::now();
        let mut st = self.lock();
        if st.open_total >= self.limits.max_total {
            return Err(StreamRefused::ServerFull);
        }
        if st.tokens.len() >= MAX_TRACKED_TOKENS && !st.tokens.contains_key(token) {
            forget_idle(&mut st, now, Duration::ZERO);
        }
        let entry = st.tokens.entry(token.clone()).or_insert_with(|| Entry {
            open: 0,
            opens: VecDeque::new(),
            skips: VecDeque::new(),
            last_video: None,
            last_activity: now,
        });
        entry.last_activity = now;
        if entry.open >= self.limits.max_per_token {
            return Err(StreamRefused::TooManyOpen {
                limit: self.limits.max_per_token,
            });
        }
        while entry
            .opens
            .front()
            .is_some_and(|t| now.duration_since(*t) >= OPEN_WINDOW)
        {
            entry.opens.pop_front();
        }
        if entry.opens.len() >= self.limits.opens_per_minute {
            let oldest = *entry.opens.front().expect("non-empty");
            let retry_after = OPEN_WINDOW.saturating_sub(now.duration_since(oldest));
            return Err(StreamRefused::TooOften {
                retry_after: retry_after.max(Duration::from_secs(1)),
            });
        }
        entry.opens.push_back(now);
        entry.open += 1;
        st.open_total += 1;
        Ok(ViewerGuard {
            viewers: self.clone(),
            token: token.clone(),
            last_mark: None,
        })
    }

    /// Records that video reached `token` (an HLS segment, a stream chunk).
    pub fn mark_watching(&self, token: &Token) {
        let now = Instant::now();
        let mut st = self.lock();
        if let Some(e) = st.tokens.get_mut(token) {
            e.last_video = Some(now);
            e.last_activity = now;
        } else if st.tokens.len() < MAX_TRACKED_TOKENS {
            st.tokens.insert(
                token.clone(),
                Entry {
                    open: 0,
                    opens: VecDeque::new(),
                    skips: VecDeque::new(),
                    last_video: Some(now),
                    last_activity: now,
                },
            );
        }
    }

    /// Visitors video reached within the watching window: the viewer count.
    pub fn watching(&self) -> usize {
        let now = Instant::now();
        let mut st = self.lock();
        if let Some((at, n)) = st.watching_cache {
            if now.duration_since(at) < COUNT_CACHE {
                return n;
            }
        }
        let window = self.limits.watching_window;
        let n = st
            .tokens
            .values()
            .filter(|e| e.last_video.is_some_and(|t| now.duration_since(t) < window))
            .count();
        st.watching_cache = Some((now, n));
        forget_idle(&mut st, now, FORGET_AFTER);
        n
    }

    /// The visitors video reached within the watching window (for the users list).
    pub fn watching_tokens(&self) -> Vec<Token> {
        let now = Instant::now();
        let window = self.limits.watching_window;
        self.lock()
            .tokens
            .iter()
            .filter(|(_, e)| e.last_video.is_some_and(|t| now.duration_since(t) < window))
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Whether `token` is watching now.
    pub fn is_watching(&self, token: &Token) -> bool {
        let st = self.lock();
        st.tokens
            .get(token)
            .and_then(|e| e.last_video)
            .is_some_and(|t| t.elapsed() < self.limits.watching_window)
    }

    /// Open `/stream.mp4` responses in all.
    /// Whether `token`'s video on `rendition` was moved forward often enough lately that a
    /// lower quality would serve it better ([`StreamLimits::struggle_skips`]).
    pub fn struggling(&self, token: &Token, rendition: &str) -> bool {
        let need = self.limits.struggle_skips;
        if need == 0 {
            return false;
        }
        let now = Instant::now();
        let st = self.lock();
        st.tokens.get(token).is_some_and(|e| {
            e.skips
                .iter()
                .filter(|(at, r)| {
                    *r == rendition && now.duration_since(*at) < self.limits.struggle_window
                })
                .count()
                >= need
        })
    }

    fn skipped(&self, token: &Token, rendition: &'static str) {
        let keep = self.limits.struggle_skips;
        if keep == 0 {
            return;
        }
        let mut st = self.lock();
        if let Some(e) = st.tokens.get_mut(token) {
            if e.skips.len() == keep {
                e.skips.pop_front();
            }
            e.skips.push_back((Instant::now(), rendition));
        }
    }

    pub fn open_streams(&self) -> usize {
        self.lock().open_total
    }

    fn close(&self, token: &Token) {
        let mut st = self.lock();
        st.open_total = st.open_total.saturating_sub(1);
        if let Some(e) = st.tokens.get_mut(token) {
            e.open = e.open.saturating_sub(1);
            e.last_activity = Instant::now();
        }
    }
}

fn forget_idle(st: &mut State, now: Instant, idle: Duration) {
    st.tokens
        .retain(|_, e| e.open > 0 || now.duration_since(e.last_activity) < idle);
}

/// An open stream. Dropping it closes the stream (the response ended or the socket died).
#[derive(Debug)]
pub struct ViewerGuard {
    viewers: Viewers,
    token: Token,
    last_mark: Option<Instant>,
}

impl ViewerGuard {
    /// Call when the viewer was moved forward because it could not keep up with
    /// `rendition` (what [`Viewers::struggling`] counts).
    pub fn skipped(&self, rendition: &'static str) {
        self.viewers.skipped(&self.token, rendition);
    }

    /// Call whenever video bytes go out; presence is refreshed at most once a second.
    pub fn video_sent(&mut self) {
        let now = Instant::now();
        if self
            .last_mark
            .is_none_or(|t| now.duration_since(t) >= MARK_INTERVAL)
        {
            self.last_mark = Some(now);
            self.viewers.mark_watching(&self.token);
        }
    }
}

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        self.viewers.close(&self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_may_hold_only_so_many_streams() {
        let v = Viewers::new(StreamLimits::default());
        let t = Token::generate();
        let a = v.open_stream(&t).unwrap();
        let _b = v.open_stream(&t).unwrap();
        let _c = v.open_stream(&t).unwrap();
        assert_eq!(
            v.open_stream(&t).unwrap_err(),
            StreamRefused::TooManyOpen { limit: 3 }
        );
        drop(a);
        assert!(v.open_stream(&t).is_ok(), "closing one frees a place");
        assert!(
            v.open_stream(&Token::generate()).is_ok(),
            "others are not affected"
        );
    }

    #[test]
    fn a_viewer_skipped_forward_twice_on_a_rendition_is_struggling_there() {
        let v = Viewers::new(StreamLimits::default());
        let t = Token::generate();
        let g = v.open_stream(&t).unwrap();
        g.skipped("source");
        assert!(!v.struggling(&t, "source"), "one skip is not enough");
        g.skipped("source");
        assert!(v.struggling(&t, "source"));
        assert!(!v.struggling(&t, "low"), "skips count per rendition");
        assert!(!v.struggling(&Token::generate(), "source"));
        let never = Viewers::new(StreamLimits {
            struggle_skips: 0,
            ..StreamLimits::default()
        });
        let g = never.open_stream(&t).unwrap();
        g.skipped("source");
        g.skipped("source");
        assert!(!never.struggling(&t, "source"));
    }

    #[test]
    fn opening_too_often_is_refused_with_a_retry_time() {
        let v = Viewers::new(StreamLimits {
            opens_per_minute: 2,
            ..StreamLimits::default()
        });
        let t = Token::generate();
        drop(v.open_stream(&t).unwrap());
        drop(v.open_stream(&t).unwrap());
        let e = v.open_stream(&t).unwrap_err();
        assert!(matches!(e, StreamRefused::TooOften { .. }));
        assert!(e.retry_after() > Duration::from_secs(50));
    }

    #[test]
    fn the_server_wide_limit_holds() {
        let v = Viewers::new(StreamLimits {
            max_total: 2,
            ..StreamLimits::default()
        });
        let _a = v.open_stream(&Token::generate()).unwrap();
        let _b = v.open_stream(&Token::generate()).unwrap();
        assert_eq!(
            v.open_stream(&Token::generate()).unwrap_err(),
            StreamRefused::ServerFull
        );
        assert_eq!(v.open_streams(), 2);
    }

    #[test]
    fn viewers_count_while_video_reaches_them() {
        let v = Viewers::new(StreamLimits::default());
        let t = Token::generate();
        let mut g = v.open_stream(&t).unwrap();
        assert_eq!(v.watching(), 0, "open but nothing sent yet");
        g.video_sent();
        assert!(v.is_watching(&t));
        v.state.lock().unwrap().watching_cache = None;
        assert_eq!(v.watching(), 1);
    }
}
