//! The broadcaster's console against the real server: `onionstream ctl` commands and the
//! JSON-lines protocol over the real control socket, each change checked where a viewer
//! would see it (over HTTP), the event stream, and hostile or slow console clients.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use testkit::http::post_form;

fn ctl_json(data_dir: &Path, args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = ctl_ok(data_dir, &a);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// A raw protocol connection.
struct Console {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Console {
    fn open(data_dir: &Path) -> Console {
        let s = UnixStream::connect(data_dir.join("control.sock")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Console {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    fn line(&mut self) -> Value {
        let mut l = String::new();
        self.reader
            .read_line(&mut l)
            .unwrap_or_else(|e| panic!("no line from the control socket: {e}"));
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l:?}"))
    }

    fn call(&mut self, cmd: &str, args: Value) -> Value {
        let req = json!({"v": 1, "id": cmd, "cmd": cmd, "args": args});
        self.send_raw(format!("{req}\n").as_bytes());
        let r = self.line();
        assert_eq!(r["id"], json!(cmd));
        r
    }
}

/// Posts `text` as the visitor with token `t` through the no-JS form.
async fn say(addr: std::net::SocketAddr, t: &str, text: &str) {
    let form = get(addr, &format!("/chat/form?token={t}")).await.text();
    let nonce = hidden_input(&form, "nonce").expect("a message form");
    let status = post_form(
        addr,
        &format!("/chat/post?token={t}"),
        &format!("nonce={nonce}&text={}", enc(text)),
    )
    .await
    .status;
    assert_eq!(status, 303);
}

async fn messages(addr: std::net::SocketAddr, t: &str) -> String {
    get(addr, &format!("/chat/messages?token={t}")).await.text()
}

const ALICE: &str = "alicealicealice-0001";
const BOB: &str = "bobbobbobbobbob-0002";

#[tokio::test]
async fn every_ctl_command_changes_what_viewers_see() {
    // Our own data directory: it must outlive the first server (restarted at the end).
    let dir = temp_dir("ctl-data");
    let server = Server::start(&["--data-dir", dir.to_str().unwrap()], Some(NO_CAPTCHA)).await;
    let addr = server.addr;

    // The socket is the owner's only.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("control.sock"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "control.sock mode {mode:o}");
    }

    // Title.
    ctl_ok(&dir, &["title", "set", "Night shift <live>"]);
    assert!(ctl_ok(&dir, &["title", "show"]).contains("Night shift <live>"));
    let info = get(addr, "/info?token=titletitletitle1").await.text();
    assert!(
        info.contains("Night shift &#60;live&#62;") || info.contains("Night shift &lt;live&gt;"),
        "{info}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("title.txt"))
            .unwrap()
            .trim(),
        "Night shift <live>"
    );

    // Chat: show, say, hide.
    say(addr, ALICE, "first from alice").await;
    say(addr, BOB, "bob here").await;
    let shown = ctl_json(&dir, &["chat", "show", "10"]);
    let msgs = shown["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["text"], "first from alice");
    assert!(ctl_ok(&dir, &["chat", "show"]).contains("bob here"));
    let alice_msg = msgs[0]["id"].as_u64().unwrap().to_string();
    ctl_ok(&dir, &["chat", "say", "hello from the console"]);
    let page = messages(addr, BOB).await;
    assert!(page.contains(">hello from the console</span>"));
    assert!(page.contains("<span class=\"insignia\" title=\"Broadcaster\">##</span>"));
    ctl_ok(&dir, &["chat", "hide", &alice_msg]);
    assert!(!messages(addr, BOB).await.contains("first from alice"));
    ctl_ok(&dir, &["chat", "hide", "--unhide", &alice_msg]);
    assert!(messages(addr, BOB).await.contains("first from alice"));
    let (code, _, err) = ctl(&dir, &["chat", "hide", "999999"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("999999"), "{err}");

    // Users: list, show, ban, unban, captcha. USER is the tag or id, never the token.
    let users = ctl_json(&dir, &["user", "list"]);
    let alice = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| msgs[0]["author"] == u["id"])
        .expect("alice listed")
        .clone();
    let alice_id = alice["id"].as_str().unwrap().to_string();
    assert!(!users.to_string().contains(ALICE), "no token in user list");
    let shown = ctl_json(&dir, &["user", "show", &alice_id[..8]]);
    assert_eq!(shown["user"]["id"], json!(alice_id));
    ctl_ok(&dir, &["user", "ban", &alice_id]);
    let form = get(addr, &format!("/chat/form?token={ALICE}")).await.text();
    assert!(form.contains("You are banned from the chat."));
    assert!(hidden_input(&form, "nonce").is_none());
    ctl_ok(&dir, &["user", "unban", &alice_id]);
    say(addr, ALICE, "back again").await;
    assert!(messages(addr, BOB).await.contains(">back again</span>"));
    ctl_ok(&dir, &["user", "captcha", &alice_id]);
    let form = get(addr, &format!("/chat/form?token={ALICE}")).await.text();
    assert!(
        hidden_input(&form, "captcha_id").is_some(),
        "a captcha is due"
    );
    let (code, _, err) = ctl(&dir, &["user", "show", "zzzzzz"]);
    assert_eq!(code, 1);
    assert!(err.contains("zzzzzz"), "{err}");

    // Word filters.
    ctl_ok(&dir, &["filter", "add", "block", "forbidden"]);
    assert!(ctl_ok(&dir, &["filter", "list"]).contains("forbidden"));
    say(addr, BOB, "a forbidden word").await;
    let form = get(addr, &format!("/chat/form?token={BOB}")).await.text();
    assert!(form.contains("blocked word"), "{form}");
    ctl_ok(&dir, &["filter", "remove", "block", "forbidden"]);
    say(addr, BOB, "a forbidden word").await;
    assert!(messages(addr, BOB)
        .await
        .contains(">a forbidden word</span>"));
    let (code, _, err) = ctl(&dir, &["filter", "add", "ban", "re:("]);
    assert_eq!(code, 1);
    assert!(err.contains("re:("), "{err}");

    // Emotes, reloaded while running.
    std::fs::create_dir_all(dir.join("emotes")).unwrap();
    std::fs::write(dir.join("emotes/cat.png"), b"\x89PNG fake").unwrap();
    std::fs::write(
        dir.join("emotes.json"),
        r#"[{"name": ":cat:", "file": "cat.png"}]"#,
    )
    .unwrap();
    assert_eq!(ctl_json(&dir, &["emote", "reload"])["emotes"], json!(1));
    say(addr, BOB, "look :cat:").await;
    assert!(messages(addr, BOB).await.contains(&format!(
        "<img class=\"emote\" src=\"/emote/0?token={BOB}\""
    )));

    // Viewers and source.
    server.wait_live(Duration::from_secs(20)).await;
    let mut video = open(addr, &format!("/stream.mp4?token={BOB}"), None).await;
    if video.status != 200 {
        let body = video.read_to_end().await;
        panic!(
            "{}: {}\n{}",
            video.status,
            String::from_utf8_lossy(&body),
            server.log()
        );
    }
    let _ = video.read_for(Duration::from_secs(2)).await;
    let v = ctl_json(&dir, &["viewers"]);
    assert_eq!(v["open_streams"], json!(1));
    assert_eq!(v["watching"], json!(1));
    let users = get(addr, &format!("/chat/users?token={ALICE}"))
        .await
        .text();
    let watching =
        &users[users.find("id=\"watching\"").unwrap()..users.find("id=\"not-watching\"").unwrap()];
    assert!(
        watching.contains("<span class=\"count\">1</span>"),
        "{users}"
    );
    drop(video);
    let s = ctl_json(&dir, &["source", "show"]);
    assert_eq!(s["spec"], json!("demo"));
    assert_eq!(s["online"], json!(true));
    let runs = s["runs"].as_u64().unwrap();
    ctl_ok(&dir, &["source", "restart"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        ctl_json(&dir, &["source", "show"])["runs"].as_u64(),
        Some(runs + 1)
    );
    server.wait_live(Duration::from_secs(10)).await;

    // Config and onion.
    assert_eq!(
        ctl_json(&dir, &["config", "show", "chat.max_message_chars"])["value"],
        json!(512)
    );
    let (code, out, err) = ctl(&dir, &["config", "show", "chat.broadcaster_password_hash"]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("secret"), "{err}");
    assert_eq!(
        ctl_json(&dir, &["onion", "address"])["address"],
        Value::Null
    );

    // Private mode: on, a listed tripcode gets in, off again; kept across a restart.
    ctl_ok(&dir, &["private", "on"]);
    let r = get(addr, "/?token=outsideroutsider1").await;
    assert_eq!(r.status, 403);
    assert_eq!(
        get(addr, &format!("/stream.mp4?token={BOB}")).await.status,
        403
    );
    let (code, _, err) = ctl(&dir, &["private", "allow", "nope"]);
    assert_eq!(code, 1, "{err}");
    server.stop().await;
    let server = Server::start(&["--data-dir", dir.to_str().unwrap()], Some(NO_CAPTCHA)).await;
    assert_eq!(
        get(server.addr, "/?token=outsideroutsider1").await.status,
        403,
        "a private stream stays private after a restart"
    );
    ctl_ok(&dir, &["private", "off"]);
    assert_eq!(
        get(server.addr, "/?token=outsideroutsider1").await.status,
        200
    );
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn events_stream_every_kind_of_change_without_secrets() {
    let server = Server::start(&[], Some(NO_CAPTCHA)).await;
    let (addr, dir) = (server.addr, server.data_dir.clone());
    let mut events = Console::open(&dir);
    let r = events.call("events", json!({}));
    assert_eq!(r["result"]["streaming"], json!(true));

    say(addr, ALICE, "evented message").await;
    let page = get(addr, &format!("/chat/appearance?token={ALICE}"))
        .await
        .text();
    let nonce = hidden_input(&page, "nonce").unwrap();
    let status = post_form(
        addr,
        &format!("/chat/appearance?token={ALICE}"),
        &format!("nonce={nonce}&name=Evented+Alice"),
    )
    .await
    .status;
    assert_eq!(status, 303);
    let mut console = Console::open(&dir);
    let shown = console.call("chat.show", json!({"count": 1}));
    let id = shown["result"]["messages"][0]["id"].as_u64().unwrap();
    let author = shown["result"]["messages"][0]["author"]
        .as_str()
        .unwrap()
        .to_string();
    console.call("chat.hide", json!({"ids": [id]}));
    console.call("title.set", json!({"title": "Evented title"}));
    console.call("user.ban", json!({"user": author, "purge": true}));
    server.wait_live(Duration::from_secs(20)).await;
    let mut video = open(addr, &format!("/stream.mp4?token={BOB}"), None).await;
    let _ = video.read_for(Duration::from_secs(2)).await;

    let wanted = [
        "user.joined",
        "message.posted",
        "message.hidden",
        "user.appearance",
        "title.changed",
        "user.banned",
        "viewers.changed",
    ];
    let mut seen: Vec<Value> = Vec::new();
    let start = Instant::now();
    while !wanted
        .iter()
        .all(|w| seen.iter().any(|e| e["event"] == json!(w)))
    {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "missing events; got {seen:#?}"
        );
        seen.push(events.line());
    }
    let all = serde_json::to_string(&seen).unwrap();
    assert!(
        !all.contains(ALICE) && !all.contains(BOB),
        "no token in events"
    );
    let posted = seen
        .iter()
        .find(|e| e["event"] == "message.posted")
        .unwrap();
    assert_eq!(posted["data"]["message"]["text"], json!("evented message"));
    let renamed = seen
        .iter()
        .find(|e| e["event"] == "user.appearance")
        .unwrap();
    assert_eq!(renamed["data"]["user"]["name"], json!("Evented Alice"));
    let title = seen.iter().find(|e| e["event"] == "title.changed").unwrap();
    assert_eq!(title["data"]["title"], json!("Evented title"));
    let banned = seen.iter().find(|e| e["event"] == "user.banned").unwrap();
    assert_eq!(banned["data"]["banned"], json!(true));
    drop(video);

    // The ctl client prints events too, as lines, until stopped.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_onionstream"))
        .arg("--data-dir")
        .arg(&dir)
        .args(["ctl", "--json", "events"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    console.call("title.set", json!({"title": "Seen by ctl events"}));
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("Seen by ctl events"), "{line}");
    let _ = child.kill();
    let _ = child.wait();
    server.stop().await;
}

#[tokio::test]
async fn a_slow_or_hostile_console_client_harms_nothing() {
    let server = Server::start(&[], Some(NO_CAPTCHA)).await;
    let dir = server.data_dir.clone();

    // Garbage, wrong shapes, wrong version, unknown commands: errors, and the connection lives.
    let mut c = Console::open(&dir);
    c.send_raw(b"this is not json\n");
    assert_eq!(c.line()["error"]["code"], json!("bad_request"));
    c.send_raw(b"[1,2,3]\n");
    assert_eq!(c.line()["error"]["code"], json!("bad_request"));
    c.send_raw(b"{\"v\": 9, \"cmd\": \"hello\"}\n");
    assert_eq!(c.line()["error"]["code"], json!("version"));
    assert_eq!(
        c.call("no.such", json!({}))["error"]["code"],
        json!("unknown_command")
    );
    assert_eq!(
        c.call("chat.say", json!({}))["error"]["code"],
        json!("bad_request")
    );
    assert_eq!(c.call("hello", json!({}))["ok"], json!(true));

    // A client that sends half a request and vanishes.
    let mut half = UnixStream::connect(dir.join("control.sock")).unwrap();
    half.write_all(b"{\"v\": 1, \"cmd\": \"title.se").unwrap();
    drop(half);

    // An oversized line is refused and that connection closed.
    let mut big = Console::open(&dir);
    let line = format!(
        "{{\"v\": 1, \"cmd\": \"chat.say\", \"args\": {{\"text\": \"{}\"}}}}\n",
        "x".repeat(70_000)
    );
    big.send_raw(line.as_bytes());
    assert_eq!(big.line()["error"]["code"], json!("too_large"));
    let mut rest = String::new();
    assert_eq!(big.reader.read_to_string(&mut rest).unwrap_or(0), 0);

    // An events reader that never reads: the server keeps answering others at once, and the
    // stuck reader is eventually cut off.
    let mut stuck = UnixStream::connect(dir.join("control.sock")).unwrap();
    stuck
        .write_all(b"{\"v\": 1, \"cmd\": \"events\"}\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..3000 {
        let t = format!("title number {i} {}", "padding ".repeat(20));
        let r = c.call("title.set", json!({ "title": t }));
        assert_eq!(r["ok"], json!(true));
    }
    // (A server held up by the stuck reader would not answer: the read times out and fails.)
    assert_eq!(c.call("hello", json!({}))["ok"], json!(true));
    stuck
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut all = Vec::new();
    let n = stuck.read_to_end(&mut all);
    assert!(n.is_ok(), "the stuck reader's connection was closed: {n:?}");
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.contains("\"event\":\"lagged\"") || text.lines().count() < 3000,
        "the stuck reader did not get everything"
    );

    // The web server never noticed.
    assert_eq!(
        get(server.addr, "/?token=stillfinestillfine").await.status,
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn ctl_without_a_running_server_says_so() {
    let dir = temp_dir("no-server");
    let (code, out, err) = ctl(&dir, &["viewers"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains(dir.to_str().unwrap()), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
