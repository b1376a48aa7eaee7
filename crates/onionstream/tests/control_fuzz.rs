//! Hostile console input against the real control socket of a running server: thousands of
//! random and mutated request lines (byte garbage, broken JSON, valid JSON with wrong types,
//! every command with mangled arguments), each of which must get exactly one JSON answer line,
//! with the server answering normally afterwards.
//!
//! The control socket lives in the binary crate (no library target), so this is the fuzzer for
//! it: a deterministic generator (fixed seed, printed on failure) rather than libFuzzer.
//! Must never: send `events` (it turns the connection into an event stream), send a line over
//! the request limit (that closes the connection by design; `ctl.rs` covers it), or touch
//! anything but the test's own server.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Request lines sent in all (spread over several connections).
const LINES: usize = 2_400;
/// A new connection every this many lines.
const LINES_PER_CONNECTION: usize = 400;
/// The generator's seed: a failure names the line number, and the same seed replays it.
const SEED: u64 = 0x5eed_c0de_0bad_f00d;

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Every command the console speaks but `events`, with plausible arguments.
fn valid_requests() -> Vec<Value> {
    let cmds = [
        ("hello", json!({})),
        ("title.show", json!({})),
        ("login", json!({})),
        ("overlay", json!({})),
        ("title.set", json!({"title": "fuzzed title"})),
        ("chat.show", json!({"n": 20, "hidden": true})),
        ("chat.hide", json!({"message": 1, "unhide": false})),
        ("chat.say", json!({"text": "hello from the console"})),
        ("user.list", json!({})),
        ("user.show", json!({"user": "abc"})),
        ("user.ban", json!({"user": "abc", "purge": true})),
        ("user.unban", json!({"user": "abc"})),
        ("user.captcha", json!({"user": "abc"})),
        ("private.show", json!({})),
        ("private.set", json!({"on": false})),
        ("private.allow", json!({"tripcode": "!abcdefgh"})),
        ("private.deny", json!({"tripcode": "!abcdefgh"})),
        ("filter.list", json!({})),
        ("filter.add", json!({"kind": "block", "pattern": "spam"})),
        ("filter.remove", json!({"kind": "block", "pattern": "spam"})),
        ("emote.reload", json!({})),
        ("source.show", json!({})),
        ("record.show", json!({})),
        ("record.set", json!({"on": false})),
        ("record.list", json!({})),
        ("record.delete", json!({"id": "20261207-162813"})),
        (
            "record.publish",
            json!({"id": "../index.json", "published": true}),
        ),
        ("viewers", json!({})),
        ("onion.address", json!({})),
        ("config.show", json!({"key": "chat.min_interval_ms"})),
        ("no.such.command", json!({})),
    ];
    cmds.iter()
        .enumerate()
        .map(|(i, (cmd, args))| json!({"v": 1, "id": i, "cmd": cmd, "args": args}))
        .collect()
}

/// Values of every JSON type, including ones no argument expects.
fn odd_value(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(-1),
        3 => json!(u64::MAX),
        4 => json!(1e300),
        5 => json!("x".repeat(rng.below(3000))),
        6 => json!(["a", 1, null]),
        7 => json!({"nested": {"deeper": [1, 2, 3]}}),
        8 => json!("\u{0}\u{1f}\u{202e}é\u{fffd}"),
        _ => json!(""),
    }
}

/// One hostile line (no newline inside) and whether it is certain to be refused.
fn hostile_line(rng: &mut Rng, valid: &[Value]) -> (Vec<u8>, bool) {
    match rng.below(4) {
        // Raw bytes, most not even UTF-8.
        0 => {
            let len = 1 + rng.below(200);
            let mut line: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            line.retain(|&b| b != b'\n');
            line.insert(0, b'\x01'); // never valid JSON, never all whitespace
            (line, true)
        }
        // A valid request with bytes flipped, inserted, deleted or repeated.
        1 => {
            let mut line = rng.pick(valid).to_string().into_bytes();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(line.len() + 1);
                match rng.below(4) {
                    0 if at < line.len() => line[at] = rng.next() as u8,
                    1 => line.insert(at, *rng.pick(b"{}[]\",:\\0-eE.tfn \x00\xff")),
                    2 if at < line.len() => {
                        line.remove(at);
                    }
                    _ => {
                        let end = (at + rng.below(16)).min(line.len());
                        let piece = line[at..end].to_vec();
                        line.splice(at..at, piece);
                    }
                }
            }
            line.retain(|&b| b != b'\n');
            (line, false)
        }
        // Well-formed JSON with wrong types in every field.
        2 => {
            let mut req = rng.pick(valid).clone();
            let field = *rng.pick(&["v", "id", "cmd", "args"]);
            req[field] = odd_value(rng);
            if let Some(args) = req.get_mut("args").and_then(Value::as_object_mut) {
                let keys: Vec<String> = args.keys().cloned().collect();
                for k in keys {
                    if rng.below(2) == 0 {
                        args.insert(k, odd_value(rng));
                    }
                }
            }
            (req.to_string().into_bytes(), false)
        }
        // JSON that is not a request object.
        _ => {
            let line = match rng.below(4) {
                0 => "[1,2,3]".to_string(),
                1 => "\"just a string\"".to_string(),
                2 => "{\"v\": 1".to_string(),
                _ => "{".repeat(1 + rng.below(5000)),
            };
            (line.into_bytes(), true)
        }
    }
}

struct Console {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Console {
    fn open(data_dir: &Path) -> Console {
        let s = UnixStream::connect(data_dir.join("control.sock")).expect("control socket");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Console {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    /// Sends one line and reads the one answer line.
    fn ask(&mut self, line: &[u8]) -> String {
        self.writer.write_all(line).unwrap();
        self.writer.write_all(b"\n").unwrap();
        let mut answer = String::new();
        self.reader
            .read_line(&mut answer)
            .unwrap_or_else(|e| panic!("no answer: {e}"));
        answer
    }
}

fn is_events(line: &[u8]) -> bool {
    serde_json::from_slice::<Value>(line)
        .ok()
        .and_then(|v| v.get("cmd").and_then(Value::as_str).map(|c| c == "events"))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_hostile_console_lines_each_get_a_json_answer() {
    let server = Server::start(&[], None).await;
    let dir = server.data_dir.clone();
    let socket = dir.join("control.sock");
    let start = Instant::now();
    while !socket.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no control socket"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let result = tokio::task::spawn_blocking(move || {
        let valid = valid_requests();
        let mut rng = Rng(SEED);
        let mut console = Console::open(&dir);
        let (mut sent, mut refused, mut answered_ok) = (0, 0, 0);
        while sent < LINES {
            let (line, must_refuse) = hostile_line(&mut rng, &valid);
            if is_events(&line) || line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            sent += 1;
            let shown = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
            let answer = console.ask(&line);
            let a: Value = serde_json::from_str(&answer).unwrap_or_else(|e| {
                panic!("line {sent} (seed {SEED:#x}) got a non-JSON answer ({e}): {answer:?}\nsent: {shown:?}")
            });
            assert_eq!(a["v"], json!(1), "line {sent}: {answer}\nsent: {shown:?}");
            let ok = a["ok"].as_bool().unwrap_or_else(|| panic!("line {sent}: no ok: {answer}"));
            if ok {
                answered_ok += 1;
                assert!(!must_refuse, "line {sent} was accepted: {answer}\nsent: {shown:?}");
            } else {
                refused += 1;
                assert!(
                    a["error"]["code"].is_string() && a["error"]["message"].is_string(),
                    "line {sent}: an error without code and message: {answer}"
                );
            }
            // A request that is a JSON object with the right version gets its id back.
            if let Ok(req @ Value::Object(_)) = serde_json::from_slice::<Value>(&line) {
                if req.get("v").and_then(Value::as_u64) == Some(1) {
                    let id = req.get("id").cloned().unwrap_or(Value::Null);
                    assert_eq!(a["id"], id, "line {sent}: {answer}");
                }
            }
            if sent % LINES_PER_CONNECTION == 0 {
                // Still answering normally, on the old connection and on a new one.
                let hello = console.ask(br#"{"v":1,"id":"h","cmd":"hello"}"#);
                assert!(hello.contains(r#""ok":true"#), "after {sent} lines: {hello}");
                console = Console::open(&dir);
            }
        }
        (sent, refused, answered_ok)
    })
    .await;
    let (sent, refused, answered_ok) = match result {
        Ok(counts) => counts,
        Err(e) => panic!("{e}\nserver log:\n{}", server.log()),
    };
    assert!(sent >= 2_000);
    // Both kinds of answer were exercised: not everything was refused at the JSON parser.
    assert!(
        refused > sent / 4 && answered_ok > 0,
        "{refused} refused, {answered_ok} ok"
    );
    let mut console = Console::open(&server.data_dir);
    let hello: Value =
        serde_json::from_str(&console.ask(br#"{"v":1,"id":"end","cmd":"hello"}"#)).unwrap();
    assert_eq!(hello["ok"], json!(true), "{hello}");
    assert_eq!(hello["result"]["protocol"], json!(1));
    server.stop().await;
}
