//! `--chat`: the no-JS chat. Requests/s of the messages frame (100 messages, a real
//! SQLite-backed room) under `wrk -t2 -c32 -d20s` as the baseline, or, without wrk on PATH,
//! 32 keep-alive connections from this process; then the cost of one post in-process
//! (durable and ephemeral room) and over HTTP (`POST /chat/post`). Chat rules are relaxed
//! (no captchas, no flood limits) so every post is accepted.
//!
//! Owns: the chat phase, its users and its load generators. Must never: keep its rooms (they
//! live in a temporary folder, removed at the end), or count a refused post as a cost.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::chat_texts::CHAT_TEXTS;
use crate::http::{post_chat_form, read_response};
use crate::in_process_server::in_process_server_with;
use crate::percentile::{percentile, sorted};
use crate::procfs::fs_type;

/// Users of the chat bench: (name, tripcode password).
const CHAT_USERS: [(&str, Option<&str>); 10] = [
    ("mira", Some("lantern-under-the-bridge")),
    ("owl_at_night", None),
    ("K.", None),
    ("tangerine", Some("correct horse battery")),
    ("nullbyte", None),
    ("Pavel", Some("pavel's old password")),
    ("ghost42", None),
    ("lumen", None),
    ("zed", Some("zzz-sleepy-zed")),
    ("hollow", None),
];

/// Rules that accept every post (no captchas, no flood limits), so only the cost is measured.
fn relaxed_rules() -> room::flood::ChatRules {
    room::flood::ChatRules {
        captcha_first_message: false,
        flood_captcha_messages: 0,
        captcha_every_messages: 0,
        captcha_random_percent: 0,
        min_interval: Duration::ZERO,
        max_linespan: usize::MAX,
        ..room::flood::ChatRules::default()
    }
}

fn open_chat_room(data_dir: Option<PathBuf>) -> room::Room {
    if let Some(dir) = &data_dir {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("chat data dir");
    }
    room::Room::open(room::RoomConfig {
        rules: relaxed_rules(),
        data_dir,
        ..room::RoomConfig::default()
    })
    .expect("the chat room opens")
}

/// Makes the bench's users in `room`: names set, some with tripcodes.
fn chat_users(room: &room::Room) -> Vec<room::Token> {
    CHAT_USERS
        .iter()
        .map(|&(name, password)| {
            let token = room::Token::generate();
            let change = room::AppearanceChange {
                nonce: room.form_nonce(&token),
                name: Some(name.to_owned()),
                tripcode_password: password.map(str::to_owned),
                ..room::AppearanceChange::default()
            };
            room.set_appearance(&token, change).expect("appearance");
            token
        })
        .collect()
}

/// Posts `n` messages in-process, round robin over `users`; returns each post's time (µs).
fn timed_posts(room: &room::Room, users: &[room::Token], n: usize) -> Vec<f64> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let token = &users[i % users.len()];
        let post = room::Post {
            nonce: room.form_nonce(token),
            text: CHAT_TEXTS[(i * 7 + i / users.len()) % CHAT_TEXTS.len()].to_owned(),
            captcha: None,
        };
        let t = Instant::now();
        let result = room.post(token, post);
        times.push(t.elapsed().as_secs_f64() * 1e6);
        if let Err(n) = result {
            eprintln!("chat: a post was refused: {n}");
        }
    }
    times
}

/// Measured load on the messages frame.
struct Load {
    generator: String,
    requests: u64,
    non_200: u64,
    errors: u64,
    secs: f64,
    req_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `wrk -t2 -c32 -d<secs>s --latency <url>`, parsed. `None` if wrk cannot be run.
async fn wrk_load(url: &str, run: Duration) -> Option<Load> {
    let secs = run.as_secs().max(1);
    let out = tokio::process::Command::new("wrk")
        .args(["-t2", "-c32", &format!("-d{secs}s"), "--latency", url])
        .stdin(Stdio::null())
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let ms = |v: &str| -> f64 {
        let v = v.trim();
        let (num, scale) = if let Some(n) = v.strip_suffix("us") {
            (n, 1e-3)
        } else if let Some(n) = v.strip_suffix("ms") {
            (n, 1.0)
        } else if let Some(n) = v.strip_suffix('s') {
            (n, 1e3)
        } else {
            (v, f64::NAN)
        };
        num.parse::<f64>().map(|x| x * scale).unwrap_or(f64::NAN)
    };
    let mut load = Load {
        generator: format!(
            "wrk -t2 -c32 -d{secs}s (a separate process; the server is alone in this one)"
        ),
        requests: 0,
        non_200: 0,
        errors: 0,
        secs: secs as f64,
        req_per_sec: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
    };
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        match f.as_slice() {
            ["50%", v] => load.p50_ms = ms(v),
            ["99%", v] => load.p99_ms = ms(v),
            ["Requests/sec:", v] => load.req_per_sec = v.parse().unwrap_or(f64::NAN),
            [n, "requests", "in", t, ..] => {
                load.requests = n.parse().unwrap_or(0);
                load.secs = ms(t.trim_end_matches(',')) / 1e3;
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => load.non_200 = n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                load.errors = rest
                    .iter()
                    .filter_map(|x| x.trim_end_matches(',').parse::<u64>().ok())
                    .sum()
            }
            _ => {}
        }
    }
    if load.req_per_sec.is_nan() {
        eprintln!(
            "chat: wrk gave no figures:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(load)
}

/// 32 keep-alive HTTP/1.1 connections from this process, each sending `GET path` again as
/// soon as the previous response is complete, for `run`.
async fn builtin_load(addr: std::net::SocketAddr, path: &str, run: Duration) -> Load {
    const CONNECTIONS: usize = 32;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
    let start = Instant::now();
    let end = start + run;
    let mut tasks = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok_ms, mut non_200, mut errors) = (Vec::new(), 0u64, 0u64);
            let mut line = String::new();
            'conn: while Instant::now() < end {
                let Ok(s) = TcpStream::connect(addr).await else {
                    errors += 1;
                    continue;
                };
                let _ = s.set_nodelay(true);
                let mut r = BufReader::new(s);
                while Instant::now() < end {
                    let t = Instant::now();
                    if r.get_mut().write_all(&request).await.is_err() {
                        errors += 1;
                        continue 'conn;
                    }
                    match read_response(&mut r, &mut line).await {
                        Ok((200, _)) => ok_ms.push(t.elapsed().as_secs_f64() * 1000.0),
                        Ok(_) => non_200 += 1,
                        Err(_) => {
                            errors += 1;
                            continue 'conn;
                        }
                    }
                }
            }
            (ok_ms, non_200, errors)
        }));
    }
    let (mut all, mut non_200, mut errors) = (Vec::new(), 0, 0);
    for t in tasks {
        if let Ok((ms, n, e)) = t.await {
            all.extend(ms);
            non_200 += n;
            errors += e;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let s = sorted(all);
    Load {
        generator: format!(
            "in-bench, {CONNECTIONS} keep-alive HTTP/1.1 connections on tokio for {} s \
             (client and server share this process and its worker threads)",
            run.as_secs()
        ),
        requests: s.len() as u64,
        non_200,
        errors,
        secs,
        req_per_sec: s.len() as f64 / secs,
        p50_ms: percentile(&s, 0.5),
        p99_ms: percentile(&s, 0.99),
    }
}

/// `POST /chat/post` round trips (µs), each with a nonce from `GET /chat/form` first.
async fn http_posts(
    addr: std::net::SocketAddr,
    users: &[room::Token],
    n: usize,
) -> std::io::Result<(Vec<f64>, u64)> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut r = BufReader::new(s);
    let mut times = Vec::with_capacity(n);
    let mut not_303 = 0;
    for i in 0..n {
        let token = users[i % users.len()].secret();
        let text = CHAT_TEXTS[(i * 5 + 3) % CHAT_TEXTS.len()];
        let (status, took) = post_chat_form(&mut r, addr, token, text).await?;
        times.push(took.as_secs_f64() * 1e6);
        if status != 303 {
            not_303 += 1;
        }
    }
    Ok((times, not_303))
}

fn report_post_cost(what: &str, us: Vec<f64>) -> f64 {
    let s = sorted(us);
    println!(
        "chat post {what:26} posts={:5}  p50={:.0} µs  p99={:.0} µs  max={:.0} µs",
        s.len(),
        percentile(&s, 0.5),
        percentile(&s, 0.99),
        s.last().copied().unwrap_or(f64::NAN)
    );
    percentile(&s, 0.5)
}

/// The messages frame under load for `run` (with wrk if `use_wrk` and it is on PATH), then
/// the post costs; prints the `chat` lines and the `chat summary`.
pub async fn run(run: Duration, use_wrk: bool) {
    const PAGE_MESSAGES: usize = 100;
    const POSTS: usize = 2000;
    const HTTP_POSTS: usize = 500;
    let root = std::env::temp_dir().join(format!("onionstream-bench-chat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("temp dir");
    println!(
        "chat: rooms in {} ({}), SQLite WAL synchronous=FULL; rules relaxed (no captchas, no flood limits)",
        root.display(),
        fs_type(&root)
    );

    // The messages frame of a room with 100 messages.
    let room = open_chat_room(Some(root.join("frame")));
    let users = chat_users(&room);
    {
        let room = room.clone();
        let users = users.clone();
        tokio::task::spawn_blocking(move || timed_posts(&room, &users, PAGE_MESSAGES))
            .await
            .expect("posts");
    }
    let store = media::SegmentStore::new(media::StoreConfig::default());
    let addr = in_process_server_with(store, room.clone()).await;
    let viewer = room::Token::generate();
    let path = format!("/chat/messages?token={}", viewer.secret());
    let page_bytes = match TcpStream::connect(addr).await {
        Ok(mut s) => {
            let _ = s
                .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
                .await;
            let mut r = BufReader::new(s);
            match read_response(&mut r, &mut String::new()).await {
                Ok((200, body)) => body.len(),
                other => {
                    println!("chat: the messages frame did not answer 200: {other:?}");
                    return;
                }
            }
        }
        Err(e) => {
            println!("chat: cannot connect to the in-process server: {e}");
            return;
        }
    };
    let shown = room.messages(&viewer).len();
    let load = match use_wrk {
        true => wrk_load(&format!("http://{addr}{path}"), run).await,
        false => None,
    };
    let load = match load {
        Some(l) => l,
        None => {
            if use_wrk {
                println!("chat: wrk not on PATH, using the in-bench load generator");
            }
            builtin_load(addr, &path, run).await
        }
    };
    println!(
        "chat messages-frame  messages={shown}  page={page_bytes} bytes  requests={}  non-200={}  errors={}  over {:.1} s",
        load.requests, load.non_200, load.errors, load.secs
    );
    println!(
        "chat messages-frame  {:.0} req/s  p50={:.2} ms  p99={:.2} ms  generator: {}",
        load.req_per_sec, load.p50_ms, load.p99_ms, load.generator
    );

    // Posting over HTTP: GET /chat/form for a nonce, then the timed POST /chat/post.
    let posted_before = room
        .counters()
        .messages_posted
        .load(std::sync::atomic::Ordering::Relaxed);
    let refused_before = room
        .counters()
        .messages_refused
        .load(std::sync::atomic::Ordering::Relaxed);
    let http = http_posts(addr, &users, HTTP_POSTS).await;
    let posted = room
        .counters()
        .messages_posted
        .load(std::sync::atomic::Ordering::Relaxed)
        - posted_before;
    let refused = room
        .counters()
        .messages_refused
        .load(std::sync::atomic::Ordering::Relaxed)
        - refused_before;
    let http_p50 = match http {
        Ok((us, not_303)) => {
            if not_303 > 0 || refused > 0 || posted != HTTP_POSTS as u64 {
                println!("chat post http: {posted} accepted, {refused} refused, {not_303} answers not 303");
            }
            report_post_cost("http durable (round trip)", us)
        }
        Err(e) => {
            println!("chat post http: {e}");
            f64::NAN
        }
    };

    // Posting in-process, durable and ephemeral.
    let mut p50 = Vec::new();
    for (what, dir) in [
        ("in-process durable", Some(root.join("posts"))),
        ("in-process ephemeral", None),
    ] {
        let us = tokio::task::spawn_blocking(move || {
            let room = open_chat_room(dir);
            let users = chat_users(&room);
            let us = timed_posts(&room, &users, POSTS);
            let refused = room
                .counters()
                .messages_refused
                .load(std::sync::atomic::Ordering::Relaxed);
            if refused > 0 {
                println!("chat post {what}: {refused} posts refused");
            }
            us
        })
        .await
        .expect("posts");
        p50.push(report_post_cost(what, us));
    }
    let _ = std::fs::remove_dir_all(&root);
    println!(
        "chat summary: messages frame {:.0} req/s ({}; baseline wrk -t2 -c32 -d20s: seed 770-1043, anonstream 343-448 req/s); \
         post p50 {:.0} µs durable vs {:.0} µs ephemeral in-process, {:.0} µs over HTTP",
        load.req_per_sec,
        if load.generator.starts_with("wrk") { "wrk" } else { "in-bench client" },
        p50[0],
        p50[1],
        http_p50
    );
}
