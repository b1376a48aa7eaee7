//! Property tests of the room's rules: generated sequences of posts, captcha answers and
//! moderation, each checked against a small model of what the rules promise a user.
//!
//! - Flood limits: whatever the timing, no window ever lets more lines through than
//!   `max_linespan`, posts are never closer than `min_interval`, and the wait a refusal names
//!   is honest (retrying after it is not refused for the same reason).
//! - Captchas: an answer works at most once, a wrong answer or someone else's challenge never
//!   passes, and guesses are limited (`max_wrong` per `wrong_window`), in the captcha store and
//!   through `Room::post`.
//! - Moderation: after any sequence of posts, hides, unhides, bans and unbans, what viewers see
//!   is exactly the model's visible messages, banned users cannot post, and hidden messages
//!   reach no one but the broadcaster.
//!
//! Must never: sleep or depend on wall-clock speed (time is generated where the API takes it;
//! the `Room` tests use windows far longer than a test run). Case counts keep the file under
//! a few seconds in debug builds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use room::captcha::{CaptchaError, CaptchaPolicy, Captchas, ChallengeId};
use room::flood::{ChatRules, PostHistory, RuleBreak};
use room::tripcode::BroadcasterPassword;
use room::{Moderation, Notice, Post, Room, RoomConfig, Token};

/// `cases` generated cases; failures are reported with their shrunk input, not saved to a
/// regressions file (there is no `src/` beside an integration test to save it next to).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Flood limits

#[derive(Debug, Clone)]
struct FloodCase {
    window_ms: u64,
    max_linespan: usize,
    min_interval_ms: u64,
    /// (milliseconds since the previous attempt, lines of the message)
    attempts: Vec<(u64, usize)>,
}

fn flood_case() -> impl Strategy<Value = FloodCase> {
    (
        1_000u64..60_000,
        1usize..30,
        prop_oneof![Just(0u64), 1u64..3_000],
        prop::collection::vec((0u64..6_000, 1usize..12), 1..80),
    )
        .prop_map(
            |(window_ms, max_linespan, min_interval_ms, attempts)| FloodCase {
                window_ms,
                max_linespan,
                min_interval_ms,
                attempts,
            },
        )
}

proptest! {
    #![proptest_config(config(1024))]

    /// No sequence of posts at generated times ever gets more than `max_linespan` lines
    /// through in any window, or two posts closer than `min_interval`; a refusal's
    /// `retry_after` is honest.
    #[test]
    fn no_window_ever_lets_more_lines_through_than_the_limit(case in flood_case()) {
        let rules = ChatRules {
            flood_window: Duration::from_millis(case.window_ms),
            max_linespan: case.max_linespan,
            min_interval: Duration::from_millis(case.min_interval_ms),
            ..ChatRules::default()
        };
        let t0 = Instant::now();
        let mut now = t0;
        let mut history = PostHistory::default();
        let mut accepted: Vec<(Instant, usize)> = Vec::new();
        for &(gap, lines) in &case.attempts {
            now += Duration::from_millis(gap);
            match history.check(&rules, lines, now) {
                Ok(()) => {
                    history.record(lines, now);
                    accepted.push((now, lines));
                }
                Err(RuleBreak::TooFast { retry_after }) => {
                    prop_assert!(retry_after <= rules.min_interval);
                    let mut later = history.clone();
                    let r = later.check(&rules, lines, now + retry_after);
                    prop_assert!(
                        !matches!(r, Err(RuleBreak::TooFast { .. })),
                        "still too fast after the {retry_after:?} it named"
                    );
                }
                Err(RuleBreak::LineFlood { retry_after }) => {
                    prop_assert!(retry_after <= rules.flood_window);
                    if lines <= rules.max_linespan {
                        let mut later = history.clone();
                        prop_assert_eq!(later.check(&rules, lines, now + retry_after), Ok(()));
                    }
                }
                Err(other) => prop_assert!(false, "unexpected refusal {other:?}"),
            }
        }
        for (i, &(start, _)) in accepted.iter().enumerate() {
            let in_window: usize = accepted[i..]
                .iter()
                .take_while(|(t, _)| *t - start < rules.flood_window)
                .map(|&(_, n)| n)
                .sum();
            prop_assert!(
                in_window <= rules.max_linespan,
                "{in_window} lines within one window from post {i}, limit {}",
                rules.max_linespan
            );
            if i > 0 {
                prop_assert!(start - accepted[i - 1].0 >= rules.min_interval);
            }
        }
        // Not vacuous: the first attempt that fits the limit always goes through.
        if case.attempts[0].1 <= case.max_linespan {
            prop_assert!(!accepted.is_empty());
        }
    }

    /// The same limit through the room: one user's messages of generated line counts, posted
    /// as fast as the test can, never fill more than `max_linespan` lines (the window lasts an
    /// hour); a message that would cross it is refused as a line flood, one that still fits
    /// goes through.
    #[test]
    fn the_room_refuses_messages_past_the_line_limit(
        max_linespan in 1usize..15,
        line_counts in prop::collection::vec(1usize..5, 1..12),
    ) {
        let room = Room::open(RoomConfig {
            rules: ChatRules {
                min_interval: Duration::ZERO,
                flood_window: Duration::from_secs(3600),
                max_linespan,
                flood_captcha_messages: 0,
                captcha_first_message: false,
                captcha_every_messages: 0,
                ..ChatRules::default()
            },
            broadcaster_password: BroadcasterPassword::Plain("secret-pass".into()),
            ..RoomConfig::default()
        })
        .unwrap();
        let alice = Token::generate();
        let mut used = 0;
        for (i, &lines) in line_counts.iter().enumerate() {
            let text = (0..lines).map(|l| format!("m{i} line {l}")).collect::<Vec<_>>().join("\n");
            let r = post(&room, &alice, &text, None);
            if used + lines <= max_linespan {
                prop_assert!(r.is_ok(), "refused within the limit: {r:?}");
                used += lines;
            } else {
                prop_assert!(matches!(r, Err(Notice::LineFlood { .. })), "{r:?}");
            }
        }
        let shown: usize = room.messages(&alice).iter().map(|m| m.text.lines().count()).sum();
        prop_assert_eq!(shown, used);
    }
}

// ---------------------------------------------------------------------------------------------
// Captchas

#[derive(Debug, Clone)]
enum CaptchaOp {
    Issue,
    /// The right answer, in any case and with spaces around it.
    Right,
    /// A wrong answer.
    Wrong(String),
    /// The right answer to a challenge already answered (the `usize` picks which).
    Replay(usize),
    /// Another owner answers this owner's live challenge correctly.
    Steal,
    Wait(u64),
}

fn captcha_op() -> impl Strategy<Value = CaptchaOp> {
    prop_oneof![
        3 => Just(CaptchaOp::Issue),
        3 => Just(CaptchaOp::Right),
        4 => "[ a-z0-9]{0,6}".prop_map(CaptchaOp::Wrong),
        2 => any::<usize>().prop_map(CaptchaOp::Replay),
        1 => Just(CaptchaOp::Steal),
        2 => prop_oneof![0u64..120, 100u64..2_000].prop_map(CaptchaOp::Wait),
    ]
}

struct LiveChallenge {
    id: ChallengeId,
    answer: String,
    issued: Instant,
}

proptest! {
    #![proptest_config(config(1024))]

    /// An answer works at most once, wrong answers and another owner's answers never pass,
    /// and no more than `max_wrong` wrong guesses are judged within any `wrong_window`.
    #[test]
    fn a_captcha_answer_works_once_and_guesses_are_limited(
        max_wrong in 1u32..6,
        wrong_window_s in 30u64..1_200,
        lifetime_s in 60u64..3_600,
        ops in prop::collection::vec(captcha_op(), 1..60),
    ) {
        let policy = CaptchaPolicy {
            lifetime: Duration::from_secs(lifetime_s),
            max_wrong,
            wrong_window: Duration::from_secs(wrong_window_s),
            ..CaptchaPolicy::default()
        };
        let captchas = Captchas::new(policy.clone());
        let owner = "alice";
        let mut now = Instant::now();
        let mut live: Option<LiveChallenge> = None;
        let mut answered: Vec<(ChallengeId, String)> = Vec::new();
        let mut wrong_at: Vec<Instant> = Vec::new();
        let mut passes = 0usize;
        let mut issued = 0usize;
        let locked = |wrong_at: &[Instant], now: Instant| {
            wrong_at.iter().filter(|&&t| now - t < policy.wrong_window).count()
                >= max_wrong as usize
        };
        for op in ops {
            match op {
                CaptchaOp::Issue => {
                    let id = captchas.issue(owner, now);
                    let answer = captchas.answer_for_tests(&id).expect("a live challenge");
                    live = Some(LiveChallenge { id, answer, issued: now });
                    issued += 1;
                }
                CaptchaOp::Right | CaptchaOp::Wrong(_) => {
                    let Some(c) = &live else { continue };
                    let (given, right) = match &op {
                        CaptchaOp::Wrong(w) if !w.trim().eq_ignore_ascii_case(&c.answer) => {
                            (w.clone(), false)
                        }
                        _ => (format!(" {} ", c.answer.to_uppercase()), true),
                    };
                    let r = captchas.check(owner, &c.id, &given, now);
                    if locked(&wrong_at, now) {
                        prop_assert!(
                            matches!(r, Err(CaptchaError::TooManyWrong { .. })),
                            "a locked-out owner was judged: {r:?}"
                        );
                        continue;
                    }
                    let expired = now - c.issued >= policy.lifetime;
                    if expired {
                        prop_assert_eq!(r, Err(CaptchaError::Expired));
                    } else if right {
                        prop_assert_eq!(r, Ok(()));
                        passes += 1;
                    } else {
                        prop_assert_eq!(r, Err(CaptchaError::Wrong));
                        wrong_at.push(now);
                    }
                    let c = live.take().expect("checked above");
                    answered.push((c.id, c.answer));
                }
                CaptchaOp::Replay(pick) => {
                    if answered.is_empty() {
                        continue;
                    }
                    let (id, answer) = &answered[pick % answered.len()];
                    let r = captchas.check(owner, id, answer, now);
                    prop_assert!(r.is_err(), "a used challenge passed again");
                }
                CaptchaOp::Steal => {
                    let Some(c) = &live else { continue };
                    let r = captchas.check("mallory", &c.id, &c.answer, now);
                    prop_assert_eq!(r, Err(CaptchaError::Expired));
                    // Still the owner's to answer (unless it expired meanwhile).
                    let alive = now - c.issued < policy.lifetime;
                    if alive {
                        prop_assert_eq!(captchas.answer_for_tests(&c.id), Some(c.answer.clone()));
                    }
                }
                CaptchaOp::Wait(s) => now += Duration::from_secs(s),
            }
        }
        prop_assert!(passes <= issued);
        // Limited guesses: never more than max_wrong judged wrong within one window.
        for (i, &t) in wrong_at.iter().enumerate() {
            let within = wrong_at[i..].iter().filter(|&&u| u - t < policy.wrong_window).count();
            prop_assert!(within <= max_wrong as usize, "{within} wrong guesses judged in one window");
        }
    }

    /// Through the room: however many wrong answers are sent with a post, none of them lets
    /// the message through, and after `max_wrong` of them even the right answer is refused.
    #[test]
    fn a_wrong_captcha_answer_never_lets_a_post_through(
        wrong in prop::collection::vec("[ a-z0-9]{0,8}", 1..8),
    ) {
        let max_wrong = 3;
        let room = Room::open(RoomConfig {
            rules: ChatRules { min_interval: Duration::ZERO, ..ChatRules::default() },
            captcha: CaptchaPolicy { max_wrong, ..CaptchaPolicy::default() },
            broadcaster_password: BroadcasterPassword::Plain("secret-pass".into()),
            ..RoomConfig::default()
        })
        .unwrap();
        let alice = Token::generate();
        let mut judged_wrong = 0;
        for w in &wrong {
            let form = room.chat_form(&alice);
            let Some(id) = form.captcha else {
                prop_assert!(false, "a first message asks for a captcha");
                unreachable!();
            };
            let answer = room.captchas().answer_for_tests(&id).expect("live");
            let given = if w.trim().eq_ignore_ascii_case(&answer) { String::new() } else { w.clone() };
            let r = room.post(&alice, Post {
                nonce: form.nonce,
                text: "let me in".into(),
                captcha: Some((id.as_str().to_owned(), given)),
            });
            prop_assert!(r.is_err(), "a wrong answer posted");
            judged_wrong += usize::from(r == Err(Notice::CaptchaWrong));
            prop_assert!(room.messages(&alice).is_empty());
        }
        prop_assert!(judged_wrong <= max_wrong as usize);
        if wrong.len() >= max_wrong as usize {
            // Locked out: the right answer to a fresh challenge is refused too.
            let form = room.chat_form(&alice);
            if let Some(id) = form.captcha {
                let answer = room.captchas().answer_for_tests(&id).expect("live");
                let r = room.post(&alice, Post {
                    nonce: form.nonce,
                    text: "now?".into(),
                    captcha: Some((id.as_str().to_owned(), answer)),
                });
                prop_assert!(r.is_err(), "posted while locked out");
            }
            prop_assert!(room.messages(&alice).is_empty());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Moderation

const USERS: usize = 3;
const SHOWN: usize = 8;

#[derive(Debug, Clone)]
enum ModOp {
    Post(usize),
    Hide(usize),
    Unhide(usize),
    Ban(usize),
    BanAndPurge(usize),
    Unban(usize),
}

fn mod_op() -> impl Strategy<Value = ModOp> {
    prop_oneof![
        6 => (0..USERS).prop_map(ModOp::Post),
        2 => any::<usize>().prop_map(ModOp::Hide),
        2 => any::<usize>().prop_map(ModOp::Unhide),
        1 => (0..USERS).prop_map(ModOp::Ban),
        1 => (0..USERS).prop_map(ModOp::BanAndPurge),
        2 => (0..USERS).prop_map(ModOp::Unban),
    ]
}

/// What the room should hold: messages (id, author, hidden) in order, and who is banned.
#[derive(Default)]
struct Model {
    messages: Vec<(u64, usize, bool)>,
    banned: [bool; USERS],
}

proptest! {
    #![proptest_config(config(384))]

    /// After every step of any sequence of posts, hides, unhides, bans and unbans: viewers
    /// (the authors included) see exactly the model's last visible messages and never a hidden
    /// one, the broadcaster sees all of them marked as the model says, banned users' posts are
    /// refused, and each message says whether its author is banned now.
    #[test]
    fn what_viewers_see_follows_every_hide_and_ban(ops in prop::collection::vec(mod_op(), 1..40)) {
        let room = Room::open(RoomConfig {
            rules: ChatRules {
                min_interval: Duration::ZERO,
                max_linespan: 10_000,
                flood_captcha_messages: 0,
                captcha_first_message: false,
                captcha_every_messages: 0,
                ..ChatRules::default()
            },
            shown_messages: SHOWN,
            broadcaster_password: BroadcasterPassword::Plain("secret-pass".into()),
            ..RoomConfig::default()
        })
        .unwrap();
        let users: Vec<Token> = (0..USERS).map(|_| Token::generate()).collect();
        let ids: Vec<String> = users.iter().map(|t| room.public_id(t)).collect();
        for u in &users {
            room.chat_form(u); // the room knows them from their first page view
        }
        let watcher = Token::generate();
        let b = room.broadcaster_token().clone();
        let key = room.moderation_key(&b).expect("the broadcaster moderates");
        let mut model = Model::default();
        let mut posted = 0;
        for op in ops {
            match op {
                ModOp::Post(u) => {
                    posted += 1;
                    let r = post(&room, &users[u], &format!("message {posted}"), None);
                    if model.banned[u] {
                        prop_assert_eq!(r, Err(Notice::Banned));
                    } else {
                        let id = r.map_err(|n| TestCaseError::fail(format!("refused: {n:?}")))?;
                        model.messages.push((id, u, false));
                    }
                }
                ModOp::Hide(k) | ModOp::Unhide(k) => {
                    if model.messages.is_empty() {
                        continue;
                    }
                    let hide = matches!(op, ModOp::Hide(_));
                    let n = model.messages.len();
                    let m = &mut model.messages[k % n];
                    let action = if hide { Moderation::Hide(m.0) } else { Moderation::Unhide(m.0) };
                    prop_assert!(room.moderate(&b, &key, action).is_ok());
                    m.2 = hide;
                }
                ModOp::Ban(u) | ModOp::BanAndPurge(u) | ModOp::Unban(u) => {
                    let action = match op {
                        ModOp::Ban(_) => Moderation::Ban(ids[u].clone()),
                        ModOp::BanAndPurge(_) => Moderation::BanAndPurge(ids[u].clone()),
                        _ => Moderation::Unban(ids[u].clone()),
                    };
                    prop_assert!(room.moderate(&b, &key, action).is_ok());
                    model.banned[u] = !matches!(op, ModOp::Unban(_));
                    if matches!(op, ModOp::BanAndPurge(_)) {
                        for m in model.messages.iter_mut().filter(|m| m.1 == u) {
                            m.2 = true;
                        }
                    }
                }
            }
            let author_of: HashMap<u64, usize> =
                model.messages.iter().map(|&(id, u, _)| (id, u)).collect();
            let visible: Vec<u64> = model.messages.iter().filter(|m| !m.2).map(|m| m.0).collect();
            let visible = &visible[visible.len().saturating_sub(SHOWN)..];
            for viewer in users.iter().chain([&watcher]) {
                let seen = room.messages(viewer);
                let seen_ids: Vec<u64> = seen.iter().map(|m| m.id).collect();
                prop_assert_eq!(&seen_ids[..], visible);
                for m in &seen {
                    prop_assert!(!m.hidden);
                    prop_assert_eq!(m.author_banned, model.banned[author_of[&m.id]]);
                }
            }
            let all = &model.messages[model.messages.len().saturating_sub(SHOWN)..];
            let seen: Vec<(u64, bool)> = room.messages(&b).iter().map(|m| (m.id, m.hidden)).collect();
            let want: Vec<(u64, bool)> = all.iter().map(|&(id, _, h)| (id, h)).collect();
            prop_assert_eq!(seen, want);
        }
    }
}

/// Posts `text` with a fresh nonce from the form.
fn post(
    room: &Room,
    token: &Token,
    text: &str,
    captcha: Option<(String, String)>,
) -> Result<u64, Notice> {
    let form = room.chat_form(token);
    room.post(
        token,
        Post {
            nonce: form.nonce,
            text: text.into(),
            captcha,
        },
    )
}
