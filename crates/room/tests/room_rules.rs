//! The chat room's rules, exercised through its public API as the web layer uses it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use room::filter::FilterConfig;
use room::flood::ChatRules;
use room::tripcode::BroadcasterPassword;
use room::{Access, AppearanceChange, Moderation, Notice, Post, Role, Room, RoomConfig, Token};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "onionstream-room-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config() -> RoomConfig {
    RoomConfig {
        rules: ChatRules {
            min_interval: Duration::ZERO,
            ..ChatRules::default()
        },
        broadcaster_password: BroadcasterPassword::Plain("secret-pass".into()),
        ..RoomConfig::default()
    }
}

/// Posts with a fresh nonce from the form, solving a captcha if the form shows one.
fn say(room: &Room, token: &Token, text: &str) -> Result<u64, Notice> {
    let form = room.chat_form(token);
    let captcha = form.captcha.map(|id| {
        let answer = room.captchas().answer_for_tests(&id).expect("live captcha");
        (id.as_str().to_owned(), answer)
    });
    room.post(
        token,
        Post {
            nonce: form.nonce,
            text: text.into(),
            captcha,
        },
    )
}

fn texts(room: &Room, token: &Token) -> Vec<String> {
    room.messages(token).into_iter().map(|m| m.text).collect()
}

#[test]
fn a_first_message_needs_a_captcha_and_keeps_the_draft() {
    let room = Room::open(config()).unwrap();
    let alice = Token::generate();
    let form = room.chat_form(&alice);
    let captcha = form
        .captcha
        .clone()
        .expect("first message asks for a captcha");
    // Posting without answering: refused, the text waits in the form.
    let r = room.post(
        &alice,
        Post {
            nonce: form.nonce,
            text: "hello there".into(),
            captcha: None,
        },
    );
    assert_eq!(r, Err(Notice::SolveCaptcha));
    let form = room.chat_form(&alice);
    assert_eq!(form.notice, Some(Notice::SolveCaptcha));
    assert_eq!(form.draft, "hello there");
    assert_eq!(form.captcha.as_ref(), Some(&captcha));
    // A wrong answer: refused, a new captcha, the draft still there.
    let r = room.post(
        &alice,
        Post {
            nonce: form.nonce,
            text: "hello there".into(),
            captcha: Some((captcha.as_str().into(), "wrong!".into())),
        },
    );
    assert_eq!(r, Err(Notice::CaptchaWrong));
    let form = room.chat_form(&alice);
    assert_eq!(form.draft, "hello there");
    let fresh = form.captcha.clone().expect("a new captcha");
    assert_ne!(fresh, captcha);
    let answer = room.captchas().answer_for_tests(&fresh).unwrap();
    room.post(
        &alice,
        Post {
            nonce: form.nonce,
            text: "hello there".into(),
            captcha: Some((fresh.as_str().into(), answer.to_uppercase())),
        },
    )
    .expect("solved captcha posts the message");
    assert_eq!(texts(&room, &alice), ["hello there"]);
    // Solved once: the next message needs none.
    assert!(room.chat_form(&alice).captcha.is_none());
}

#[test]
fn a_replayed_captcha_is_refused() {
    let room = Room::open(config()).unwrap();
    let alice = Token::generate();
    let form = room.chat_form(&alice);
    let id = form.captcha.unwrap();
    let answer = room.captchas().answer_for_tests(&id).unwrap();
    let solved = Some((id.as_str().to_owned(), answer));
    room.post(
        &alice,
        Post {
            nonce: form.nonce,
            text: "one".into(),
            captcha: solved.clone(),
        },
    )
    .unwrap();
    let form = room.chat_form(&alice);
    let r = room.post(
        &alice,
        Post {
            nonce: form.nonce,
            text: "two".into(),
            captcha: solved.clone(),
        },
    );
    assert_eq!(r, Err(Notice::CaptchaUsed));
    // Nor can someone else use it.
    let mallory = Token::generate();
    let form = room.chat_form(&mallory);
    let r = room.post(
        &mallory,
        Post {
            nonce: form.nonce,
            text: "three".into(),
            captcha: solved,
        },
    );
    assert!(
        matches!(r, Err(Notice::CaptchaExpired | Notice::CaptchaUsed)),
        "{r:?}"
    );
    assert_eq!(texts(&room, &alice), ["one"]);
}

#[test]
fn a_resent_form_posts_once() {
    let room = Room::open(config()).unwrap();
    let alice = Token::generate();
    say(&room, &alice, "first").unwrap();
    let form = room.chat_form(&alice);
    let post = Post {
        nonce: form.nonce,
        text: "only once".into(),
        captcha: None,
    };
    room.post(&alice, post.clone()).unwrap();
    assert_eq!(room.post(&alice, post), Err(Notice::Duplicate));
    assert_eq!(texts(&room, &alice), ["first", "only once"]);
}

#[test]
fn flooding_asks_for_a_captcha_and_sizes_are_limited() {
    let room = Room::open(config()).unwrap();
    let alice = Token::generate();
    say(&room, &alice, "1").unwrap();
    say(&room, &alice, "2").unwrap();
    say(&room, &alice, "3").unwrap();
    // The fourth message within the window: captcha first.
    let form = room.chat_form(&alice);
    assert!(form.captcha.is_some(), "flooding shows a captcha");
    say(&room, &alice, "4").unwrap();
    let form = room.chat_form(&alice);
    let r = room.post(
        &alice,
        Post {
            nonce: form.nonce,
            text: "x".repeat(513),
            captcha: None,
        },
    );
    assert_eq!(r, Err(Notice::TooLong { max: 512 }));
    assert_eq!(room.chat_form(&alice).draft, "x".repeat(513));
    let form = room.chat_form(&alice);
    let r = room.post(
        &alice,
        Post {
            nonce: form.nonce,
            text: "a\n".repeat(21),
            captcha: None,
        },
    );
    assert_eq!(r, Err(Notice::TooManyLines { max: 20 }));
}

#[test]
fn a_line_flood_is_refused_with_a_wait() {
    let room = Room::open(RoomConfig {
        rules: ChatRules {
            flood_captcha_messages: 0,
            min_interval: Duration::ZERO,
            ..ChatRules::default()
        },
        ..config()
    })
    .unwrap();
    let alice = Token::generate();
    say(&room, &alice, &"line\n".repeat(15)).unwrap();
    let r = say(&room, &alice, &"line\n".repeat(10));
    assert!(matches!(r, Err(Notice::LineFlood { .. })), "{r:?}");
}

#[test]
fn the_broadcaster_logs_in_never_meets_a_captcha_and_is_not_limited() {
    let room = Room::open(config()).unwrap();
    assert_eq!(
        room.login("broadcaster", "nope"),
        Err(room::LoginError::Wrong)
    );
    assert_eq!(
        room.login("admin", "secret-pass"),
        Err(room::LoginError::Wrong)
    );
    let b = room.login("broadcaster", "secret-pass").unwrap();
    assert_eq!(room.role(&b), Role::Broadcaster);
    assert_eq!(room.role(&Token::generate()), Role::Viewer);
    for i in 0..10 {
        let form = room.chat_form(&b);
        assert!(form.captcha.is_none());
        room.post(
            &b,
            Post {
                nonce: form.nonce,
                text: format!("announcement {i}"),
                captcha: None,
            },
        )
        .unwrap();
    }
    let m = room.messages(&b);
    assert_eq!(m.len(), 10);
    assert!(m.iter().all(|m| m.broadcaster && m.name == "Broadcaster"));
}

#[test]
fn failed_logins_are_limited_for_everyone() {
    let room = Room::open(config()).unwrap();
    for _ in 0..room::chat::LOGIN_FAILURES_PER_MINUTE {
        assert_eq!(
            room.login("broadcaster", "guess"),
            Err(room::LoginError::Wrong)
        );
    }
    // Even the right password waits now: guessing cannot continue.
    assert!(matches!(
        room.login("broadcaster", "secret-pass"),
        Err(room::LoginError::TooMany { .. })
    ));
}

#[test]
fn ban_hide_purge_and_unban() {
    let room = Room::open(config()).unwrap();
    let b = room.login("broadcaster", "secret-pass").unwrap();
    let key = room.moderation_key(&b).unwrap();
    let troll = Token::generate();
    let alice = Token::generate();
    let m1 = say(&room, &troll, "spam 1").unwrap();
    say(&room, &troll, "spam 2").unwrap();
    say(&room, &alice, "hi").unwrap();
    let troll_id = room.public_id(&troll);

    // A viewer cannot moderate, even with the broadcaster's key.
    assert_eq!(
        room.moderate(&alice, &key, Moderation::Hide(m1)),
        Err(Notice::NotAllowed)
    );
    // Nor can the broadcaster with a wrong key (a cross-site form would have none).
    assert_eq!(
        room.moderate(&b, "forged", Moderation::Hide(m1)),
        Err(Notice::NotAllowed)
    );
    room.moderate(&b, &key, Moderation::Hide(m1)).unwrap();
    assert_eq!(texts(&room, &alice), ["spam 2", "hi"]);
    // The broadcaster still sees it, marked hidden.
    assert!(room.messages(&b).iter().any(|m| m.id == m1 && m.hidden));

    room.moderate(&b, &key, Moderation::BanAndPurge(troll_id.clone()))
        .unwrap();
    assert_eq!(texts(&room, &alice), ["hi"]);
    assert_eq!(say(&room, &troll, "let me in"), Err(Notice::Banned));
    assert!(room.chat_form(&troll).me.banned);
    let users = room.users(&b, &HashSet::new());
    assert!(users.banned.iter().any(|u| u.id == troll_id));
    assert!(room.users(&alice, &HashSet::new()).banned.is_empty());

    room.moderate(&b, &key, Moderation::Unban(troll_id))
        .unwrap();
    say(&room, &troll, "sorry").unwrap();
    assert_eq!(texts(&room, &alice), ["hi", "sorry"]);
    // The broadcaster cannot be banned.
    let bid = room.public_id(&b);
    assert_eq!(
        room.moderate(&b, &key, Moderation::Ban(bid)),
        Err(Notice::NotAllowed)
    );
}

#[test]
fn appearance_names_colours_and_tripcodes() {
    let room = Room::open(config()).unwrap();
    let alice = Token::generate();
    let me = room.me(&alice);
    assert_eq!(me.name, "Anonymous");
    assert!(me.default_name);
    assert_eq!(me.tag.len(), 3);
    let change = |c: AppearanceChange| {
        room.set_appearance(
            &alice,
            AppearanceChange {
                nonce: room.form_nonce(&alice),
                ..c
            },
        )
    };
    change(AppearanceChange {
        name: Some("  Alice\u{202e}\u{7}  ".into()),
        colour: Some("#FFCC00".into()),
        tripcode_password: Some("my secret".into()),
        ..Default::default()
    })
    .unwrap();
    let me = room.me(&alice);
    assert_eq!(me.name, "Alice");
    assert_eq!(me.colour.to_string(), "#ffcc00");
    let trip = me.tripcode.clone().unwrap();
    assert_eq!(trip.as_str().len(), 8);
    // The same password elsewhere gives the same tripcode.
    let other = Token::generate();
    room.set_appearance(
        &other,
        AppearanceChange {
            nonce: room.form_nonce(&other),
            tripcode_password: Some("my secret".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(room.me(&other).tripcode, Some(trip));

    assert_eq!(
        change(AppearanceChange {
            name: Some("x".repeat(25)),
            ..Default::default()
        }),
        Err(Notice::NameTooLong { max: 24 })
    );
    assert!(matches!(
        change(AppearanceChange {
            colour: Some("#111111".into()),
            ..Default::default()
        }),
        Err(Notice::BadColour(_))
    ));
    change(AppearanceChange {
        name: Some(String::new()),
        colour: Some(String::new()),
        clear_tripcode: true,
        ..Default::default()
    })
    .unwrap();
    let me = room.me(&alice);
    assert!(me.default_name && me.tripcode.is_none() && !me.custom_colour);
}

#[test]
fn word_filters_block_censor_and_ban() {
    let room = Room::open(RoomConfig {
        filters: FilterConfig {
            ban: vec!["buy drugs".into()],
            block: vec!["re:https?://".into()],
            censor: vec!["darn".into()],
            ..FilterConfig::default()
        },
        ..config()
    })
    .unwrap();
    let alice = Token::generate();
    say(&room, &alice, "well DARN it").unwrap();
    assert_eq!(texts(&room, &alice), ["well **** it"]);
    assert_eq!(say(&room, &alice, "see http://x"), Err(Notice::Blocked));
    assert_eq!(
        say(&room, &alice, "Buy Drugs here"),
        Err(Notice::BannedByFilter)
    );
    assert!(room.me(&alice).banned);
}

#[test]
fn private_mode_admits_listed_tripcodes_and_the_broadcaster_only() {
    let probe = Room::open(config()).unwrap();
    // Tripcodes depend on the room's key: make one in a room with a known data dir.
    let dir = temp_dir("private");
    let open = |private: Vec<String>| {
        Room::open(RoomConfig {
            private_mode: true,
            private_tripcodes: private,
            data_dir: Some(dir.clone()),
            ..config()
        })
    };
    let room = open(vec![]).unwrap();
    let member = Token::generate();
    room.set_appearance(
        &member,
        AppearanceChange {
            nonce: room.form_nonce(&member),
            tripcode_password: Some("club password".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let trip = room.me(&member).tripcode.unwrap().as_str().to_owned();
    drop(room);
    let room = open(vec![trip]).unwrap();
    assert_eq!(room.access(&member), Access::Allowed);
    let outsider = Token::generate();
    assert_eq!(room.access(&outsider), Access::Private);
    assert_eq!(room.enter_private(&outsider, "wrong password"), Ok(false));
    assert_eq!(room.access(&outsider), Access::Private);
    let newcomer = Token::generate();
    assert_eq!(room.enter_private(&newcomer, "club password"), Ok(true));
    assert_eq!(room.access(&newcomer), Access::Allowed);
    let b = room.login("broadcaster", "secret-pass").unwrap();
    assert_eq!(room.access(&b), Access::Allowed);
    drop(probe);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_access_captcha_comes_once() {
    let room = Room::open(RoomConfig {
        access_captcha: true,
        ..config()
    })
    .unwrap();
    let alice = Token::generate();
    let Access::Captcha(id) = room.access(&alice) else {
        panic!("access captcha expected")
    };
    assert!(room.captcha_png(&alice, id.as_str()).is_some());
    assert!(room.captcha_png(&Token::generate(), id.as_str()).is_none());
    let answer = room.captchas().answer_for_tests(&id).unwrap();
    room.solve_access_captcha(&alice, id.as_str(), &answer)
        .unwrap();
    assert_eq!(room.access(&alice), Access::Allowed);
}

#[test]
fn everything_acknowledged_survives_a_restart() {
    let dir = temp_dir("restart");
    let cfg = || RoomConfig {
        data_dir: Some(dir.clone()),
        ..config()
    };
    let alice = Token::generate();
    let troll = Token::generate();
    let (trip, key_before) = {
        let room = Room::open(cfg()).unwrap();
        room.set_appearance(
            &alice,
            AppearanceChange {
                nonce: room.form_nonce(&alice),
                name: Some("Alice".into()),
                tripcode_password: Some("pw".into()),
                ..Default::default()
            },
        )
        .unwrap();
        say(&room, &alice, "kept").unwrap();
        let hidden = say(&room, &troll, "hidden later").unwrap();
        let b = room.login("broadcaster", "secret-pass").unwrap();
        let key = room.moderation_key(&b).unwrap();
        room.moderate(&b, &key, Moderation::Hide(hidden)).unwrap();
        room.moderate(&b, &key, Moderation::Ban(room.public_id(&troll)))
            .unwrap();
        (room.me(&alice).tripcode, room.public_id(&alice))
    };
    let room = Room::open(cfg()).unwrap();
    assert_eq!(room.public_id(&alice), key_before, "ids are stable");
    let me = room.me(&alice);
    assert_eq!(me.name, "Alice");
    assert_eq!(me.tripcode, trip);
    assert_eq!(texts(&room, &alice), ["kept"]);
    assert!(room.me(&troll).banned);
    // Alice solved her captcha before the restart: none now.
    assert!(room.chat_form(&alice).captcha.is_none());
    // The broadcaster's token is the same too (no new login needed).
    let b = room.login("broadcaster", "secret-pass").unwrap();
    assert_eq!(room.messages(&b).len(), 2);
    drop(room);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn control_characters_and_bidi_overrides_are_stripped() {
    assert_eq!(
        room::chat::sanitize("a\u{0}b\u{202e}c\r\nd\t", true),
        "abc\nd"
    );
    assert_eq!(room::chat::sanitize("x\ny", false), "xy");
}

#[test]
fn every_change_is_an_event_without_secrets() {
    use room::RoomEvent;
    let room = Room::open(config()).unwrap();
    let mut events = room.subscribe();
    let alice = Token::generate();
    let id = say(&room, &alice, "evented").unwrap();
    room.set_appearance(
        &alice,
        AppearanceChange {
            nonce: room.form_nonce(&alice),
            name: Some("Alice".into()),
            ..Default::default()
        },
    )
    .unwrap();
    room.apply_moderation(Moderation::Hide(id)).unwrap();
    room.apply_moderation(Moderation::BanAndPurge(room.public_id(&alice)))
        .unwrap();
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        assert!(
            !format!("{e:?}").contains(alice.secret()),
            "no token in {e:?}"
        );
        seen.push(e);
    }
    assert!(matches!(&seen[0], RoomEvent::UserJoined(u) if u.id == room.public_id(&alice)));
    assert!(seen
        .iter()
        .any(|e| matches!(e, RoomEvent::MessagePosted(m) if m.id == id && m.text == "evented")));
    assert!(seen
        .iter()
        .any(|e| matches!(e, RoomEvent::AppearanceChanged(u) if u.name == "Alice")));
    assert!(seen.contains(&RoomEvent::MessageHidden { id, hidden: true }));
    assert!(seen
        .iter()
        .any(|e| matches!(e, RoomEvent::UserBanned { banned: true, .. })));
}

#[test]
fn a_burst_of_tripcode_requests_is_refused_as_busy_not_queued() {
    let room = Room::open(config()).unwrap();
    let results: Vec<Result<(), Notice>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let room = &room;
                s.spawn(move || {
                    let t = Token::generate();
                    room.set_appearance(
                        &t,
                        AppearanceChange {
                            nonce: room.form_nonce(&t),
                            tripcode_password: Some("same burst".into()),
                            ..Default::default()
                        },
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().any(Result::is_ok), "some tripcodes are made");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(()) | Err(Notice::TripcodeBusy))),
        "{results:?}"
    );
    // Every slot came back: the next request works.
    let t = Token::generate();
    room.set_appearance(
        &t,
        AppearanceChange {
            nonce: room.form_nonce(&t),
            tripcode_password: Some("after the burst".into()),
            ..Default::default()
        },
    )
    .unwrap();
}

#[test]
fn a_damaged_secret_key_stops_the_room_instead_of_changing_every_identity() {
    let dir = temp_dir("key");
    let durable = || RoomConfig {
        data_dir: Some(dir.clone()),
        ..config()
    };
    let visitor = Token::generate();
    let id = Room::open(durable()).unwrap().public_id(&visitor);
    // The same key next time: the same public id.
    assert_eq!(Room::open(durable()).unwrap().public_id(&visitor), id);
    let db_file = dir.join("room.sqlite3");
    for damaged in ["zz".repeat(32), "abcd".into(), "0".repeat(63)] {
        room::db::Db::open(&db_file)
            .unwrap()
            .set_setting("secret_key", &damaged)
            .unwrap();
        let err = Room::open(durable()).map(|_| ()).unwrap_err();
        assert!(
            matches!(err, room::RoomError::SecretKey(_)),
            "{damaged:?}: {err}"
        );
        assert!(err.to_string().contains("room.sqlite3"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_room_that_lives_for_months_holds_only_its_recent_users_and_reads_the_others_back() {
    const USERS: usize = 5_000;
    let dir = temp_dir("many");
    let durable = || RoomConfig {
        data_dir: Some(dir.clone()),
        ..config()
    };
    let room = Room::open(durable()).unwrap();
    let tokens: Vec<Token> = (0..USERS).map(|_| Token::generate()).collect();
    for (i, t) in tokens.iter().enumerate() {
        room.set_appearance(
            t,
            AppearanceChange {
                nonce: room.form_nonce(t),
                name: Some(format!("User {i}")),
                ..Default::default()
            },
        )
        .unwrap();
    }
    // One of them posts, then is banned.
    let banned = &tokens[7];
    let banned_id = room.public_id(banned);
    let posted = say(&room, banned, "before the ban").unwrap();
    room.apply_moderation(Moderation::Ban(banned_id.clone()))
        .unwrap();
    assert!(room.users_in_memory() >= USERS);

    // Nobody comes back for longer than the forget window: memory holds none of them, though
    // every one of them did something worth keeping.
    let later = std::time::Instant::now() + room::chat::FORGET_IDLE_AFTER + Duration::from_secs(1);
    room.sweep_at(later);
    assert!(
        room.users_in_memory() < 10,
        "{} users still in memory",
        room.users_in_memory()
    );
    // Yet every one is known: the console lists them all and finds one by id.
    let listed = room.all_users();
    assert_eq!(
        listed
            .iter()
            .filter(|(u, _)| u.name.starts_with("User "))
            .count(),
        USERS
    );
    let id = room.public_id(&tokens[1234]);
    assert_eq!(room.find_user(&id).unwrap().name, "User 1234");
    assert_eq!(room.find_user(&id[..12]).unwrap().id, id);
    // The banned author's message still says so; the broadcaster's list still shows them.
    let bt = room.broadcaster_token().clone();
    let shown = room.messages(&bt);
    let m = shown.iter().find(|m| m.id == posted).expect("the message");
    assert!(m.author_banned);
    room.sweep_at(later);
    let view = room.users(&bt, &HashSet::new());
    assert!(view.banned.iter().any(|u| u.id == banned_id), "{view:?}");
    // Returning users are read back as they were.
    assert_eq!(room.me(&tokens[42]).name, "User 42");
    assert!(room.me(banned).banned);

    // After a restart nobody is read at start, and a returning user is still themselves.
    drop(room);
    let room = Room::open(durable()).unwrap();
    assert_eq!(room.users_in_memory(), 0);
    assert_eq!(room.me(&tokens[99]).name, "User 99");
    assert!(room.me(banned).banned);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_timeout_refuses_posts_with_the_time_left_and_lifts_by_itself() {
    let room = Room::open(config()).unwrap();
    let b = room.login("broadcaster", "secret-pass").unwrap();
    let key = room.moderation_key(&b).unwrap();
    let troll = Token::generate();
    say(&room, &troll, "first").unwrap();
    let troll_id = room.public_id(&troll);
    let done = room
        .moderate(
            &b,
            &key,
            Moderation::Timeout {
                user: troll_id.clone(),
                duration: Duration::from_secs(2),
            },
        )
        .unwrap();
    assert_eq!(done.to_string(), "User timed out for 2 s.");
    match say(&room, &troll, "again") {
        Err(Notice::TimedOut { left }) => assert!(left <= Duration::from_secs(2), "{left:?}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // The form says so, with the time left, keeps the draft, and asks no captcha meanwhile.
    let form = room.chat_form(&troll);
    assert!(form.timeout_left.is_some());
    assert_eq!(form.draft, "again");
    assert!(form.captcha.is_none());
    assert!(form.me.timeout_until_ms.is_some());
    // The broadcaster cannot be timed out, and no one but the broadcaster times out.
    let bid = room.public_id(&b);
    let t = |user: String| Moderation::Timeout {
        user,
        duration: Duration::from_secs(60),
    };
    assert_eq!(room.moderate(&b, &key, t(bid)), Err(Notice::NotAllowed));
    assert_eq!(
        room.moderate(&troll, &key, t(troll_id.clone())),
        Err(Notice::NotAllowed)
    );
    std::thread::sleep(Duration::from_millis(2100));
    say(&room, &troll, "I am back").unwrap();
    assert!(room.chat_form(&troll).timeout_left.is_none());
    assert!(room.me(&troll).timeout_until_ms.is_none());

    // Lifted early by the broadcaster.
    room.moderate(&b, &key, t(troll_id.clone())).unwrap();
    assert!(matches!(
        say(&room, &troll, "x"),
        Err(Notice::TimedOut { .. })
    ));
    room.moderate(&b, &key, Moderation::EndTimeout(troll_id))
        .unwrap();
    say(&room, &troll, "free").unwrap();
}

#[test]
fn slow_mode_allows_one_message_per_interval_except_for_the_broadcaster() {
    let room = Room::open(config()).unwrap();
    let b = room.login("broadcaster", "secret-pass").unwrap();
    let key = room.moderation_key(&b).unwrap();
    let alice = Token::generate();
    let bob = Token::generate();
    let done = room.moderate(&b, &key, Moderation::SlowMode(2)).unwrap();
    assert_eq!(
        done.to_string(),
        "Slow mode on: one message every 2 s per user."
    );
    assert_eq!(room.chat_form(&alice).slow_mode_secs, 2);
    assert_eq!(room.chat_form(&b).slow_mode_secs, 0);
    say(&room, &alice, "one").unwrap();
    match say(&room, &alice, "two") {
        Err(Notice::SlowMode { every, retry_after }) => {
            assert_eq!(every, 2);
            assert!(retry_after <= Duration::from_secs(2));
        }
        other => panic!("expected slow mode, got {other:?}"),
    }
    assert_eq!(room.chat_form(&alice).draft, "two");
    // Per user: bob may speak; the broadcaster is never slowed.
    say(&room, &bob, "hello").unwrap();
    say(&room, &b, "welcome").unwrap();
    say(&room, &b, "everyone").unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    say(&room, &alice, "two").unwrap();
    room.moderate(&b, &key, Moderation::SlowMode(0)).unwrap();
    say(&room, &alice, "three").unwrap();
    assert_eq!(
        room.moderate(&b, &key, Moderation::SlowMode(room::MAX_SLOW_MODE_SECS + 1))
            .map_err(|n| n.is_error()),
        Err(true)
    );
}

#[test]
fn moderation_requests_name_what_they_need() {
    let m = |a: &str, msg: Option<u64>, user: Option<&str>, secs: Option<u64>| {
        Moderation::from_request(a, msg, user.map(str::to_owned), secs)
    };
    assert_eq!(m("hide", Some(3), None, None), Ok(Moderation::Hide(3)));
    assert_eq!(
        m("timeout", None, Some("u"), Some(600)),
        Ok(Moderation::Timeout {
            user: "u".into(),
            duration: Duration::from_secs(600)
        })
    );
    assert_eq!(m("clear", None, None, None), Ok(Moderation::ClearChat));
    assert_eq!(m("slow", None, None, Some(0)), Ok(Moderation::SlowMode(0)));
    for (a, msg, user, secs) in [
        ("hide", None, None, None),
        ("ban", None, Some(""), None),
        ("timeout", None, Some("u"), None),
        ("timeout", None, Some("u"), Some(0)),
        (
            "timeout",
            None,
            Some("u"),
            Some(room::MAX_TIMEOUT.as_secs() + 1),
        ),
        ("timeout", None, None, Some(60)),
        ("slow", None, None, Some(u64::from(u32::MAX) + 1)),
        ("slow", None, None, None),
        ("launch", None, None, None),
    ] {
        let e = m(a, msg, user, secs).unwrap_err();
        assert!(!e.is_empty(), "{a}");
    }
}

#[test]
fn clearing_the_chat_hides_everything_shown_and_survives_a_restart() {
    let dir = temp_dir("clear");
    let cfg = || RoomConfig {
        data_dir: Some(dir.clone()),
        ..config()
    };
    let alice = Token::generate();
    let troll = Token::generate();
    {
        let room = Room::open(cfg()).unwrap();
        let b = room.login("broadcaster", "secret-pass").unwrap();
        let key = room.moderation_key(&b).unwrap();
        say(&room, &alice, "before 1").unwrap();
        say(&room, &troll, "before 2").unwrap();
        let mut events = room.subscribe();
        let done = room.moderate(&b, &key, Moderation::ClearChat).unwrap();
        assert_eq!(done.to_string(), "Chat cleared: 2 messages hidden.");
        match events.try_recv().unwrap() {
            room::RoomEvent::ChatCleared { ids } => assert_eq!(ids.len(), 2),
            other => panic!("{other:?}"),
        }
        assert!(texts(&room, &alice).is_empty());
        // The broadcaster still sees them, hidden.
        assert_eq!(room.messages(&b).iter().filter(|m| m.hidden).count(), 2);
        say(&room, &alice, "after").unwrap();
        // Kept: a timeout and slow mode too.
        room.moderate(
            &b,
            &key,
            Moderation::Timeout {
                user: room.public_id(&troll),
                duration: Duration::from_secs(600),
            },
        )
        .unwrap();
        room.moderate(&b, &key, Moderation::SlowMode(30)).unwrap();
    }
    let room = Room::open(cfg()).unwrap();
    assert_eq!(texts(&room, &alice), ["after"]);
    match say(&room, &troll, "still here?") {
        Err(Notice::TimedOut { left }) => assert!(left > Duration::from_secs(590), "{left:?}"),
        other => panic!("expected the timeout kept, got {other:?}"),
    }
    assert_eq!(room.slow_mode(), 30);
    assert_eq!(room.chat_form(&alice).slow_mode_secs, 30);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_overlay_key_survives_a_restart_and_the_overlay_sees_what_everyone_sees() {
    let dir = temp_dir("overlay");
    let open = || {
        Room::open(RoomConfig {
            data_dir: Some(dir.clone()),
            ..config()
        })
        .unwrap()
    };
    let room = open();
    let key = room.overlay_key();
    assert_eq!(key.len(), 32);
    assert!(room.is_overlay_key(&key));
    assert!(!room.is_overlay_key(""));
    assert!(!room.is_overlay_key(&key[..31]));
    assert!(!room.is_overlay_key(&key.to_uppercase()));
    // Not the broadcaster's token, nor anything else the room hands out.
    assert_ne!(key, room.broadcaster_token().secret());

    let (alice, bob) = (Token::generate(), Token::generate());
    let a1 = say(&room, &alice, "alice one").unwrap();
    let b1 = say(&room, &bob, "bob one").unwrap();
    let a2 = say(&room, &alice, "alice two").unwrap();
    let a3 = say(&room, &alice, "alice three").unwrap();
    let ids = |v: Vec<room::MessageView>| v.iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(ids(room.public_messages(10)), vec![a1, b1, a2, a3]);
    assert_eq!(ids(room.public_messages(2)), vec![a2, a3]);
    room.apply_moderation(Moderation::Hide(a2)).unwrap();
    assert_eq!(ids(room.public_messages(10)), vec![a1, b1, a3]);
    // A banned author's messages go, purged or not, and come back when unbanned.
    let bob_id = room.public_id(&bob);
    room.apply_moderation(Moderation::Ban(bob_id.clone()))
        .unwrap();
    assert_eq!(ids(room.public_messages(10)), vec![a1, a3]);
    room.apply_moderation(Moderation::Unban(bob_id)).unwrap();
    assert_eq!(ids(room.public_messages(10)), vec![a1, b1, a3]);
    // Asking marked no one seen: the overlay is nobody.
    let users_before = room.users_in_memory();
    let _ = room.public_messages(10);
    assert_eq!(room.users_in_memory(), users_before);
    drop(room);
    assert_eq!(open().overlay_key(), key);
}
