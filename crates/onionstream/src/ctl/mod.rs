//! `onionstream ctl`: the client of the control socket (`DATA_DIR/control.sock`; on Windows
//! loopback TCP with the token in `DATA_DIR/control.addr`; protocol version 1,
//! `docs/CONTROL.md`).
//!
//! Owns: one run of `ctl`: connecting, asking, showing the answer as readable text or, with
//! `--json`, as the server's JSON, and the exit status. Its parts: [`args`] (the command line
//! and the request each command sends), [`client`] (the connection), [`print`] (readable
//! text). The protocol's types are shared with the server (`crate::console::protocol`).
//!
//! Must never: print a secret (the one exception is `ctl login`, which exists to show the owner
//! their own broadcaster link, and warns that it is one); hang forever on a server that does not
//! answer (connecting and every answer time out; only `events` waits without limit, for as long
//! as the server keeps the connection open); let text from the chat steer the terminal (control
//! and bidirectional-override characters are shown escaped); panic when standard output goes
//! away (`ctl events | head -1`).

mod args;
mod client;
mod print;

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::console::protocol::ErrorCode;
use crate::console::transport;
pub use args::{CtlArgs, CtlCommand};
use client::{connect_error, Connection};

/// How long to wait for the server to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for an answer (every command but `events`).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Exit status: done.
const EXIT_OK: u8 = 0;
/// Exit status: the server refused or failed the command, or the conversation broke down.
const EXIT_FAILED: u8 = 1;
/// Exit status: no server to talk to.
const EXIT_NO_SERVER: u8 = 2;

/// Runs one ctl command against the server whose data directory is `data_dir` (socket
/// `data_dir/control.sock`). Returns the process exit code: 0 done, 1 the server answered an
/// error (printed as `onionstream: ctl: <message>`) or the conversation failed, 2 cannot
/// connect (no onionstream runs with that data directory).
pub fn run(args: &CtlArgs, data_dir: &Path) -> ExitCode {
    let stdout = io::stdout();
    let stderr = io::stderr();
    let code = run_with(
        args,
        data_dir,
        REPLY_TIMEOUT,
        &mut stdout.lock(),
        &mut stderr.lock(),
    );
    ExitCode::from(code)
}

/// What went wrong after connecting.
#[derive(Debug)]
enum Failed {
    /// The server answered with an error.
    Refused { code: ErrorCode, message: String },
    /// The conversation broke down: no answer, a closed connection, not the protocol.
    Broken(String),
    /// Standard output could not be written.
    Output(io::Error),
}

/// [`run`], with the answer timeout and the output streams given.
fn run_with(
    args: &CtlArgs,
    data_dir: &Path,
    reply_timeout: Duration,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let path = transport::endpoint(data_dir);
    let stream = match transport::connect(data_dir, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(
                err,
                "onionstream: ctl: {}",
                connect_error(data_dir, &path, &e)
            );
            return EXIT_NO_SERVER;
        }
    };
    let request = args.command.request();
    let result = Connection::new(stream, reply_timeout).and_then(|mut conn| {
        let result = conn.call(&request)?;
        if matches!(args.command, CtlCommand::Events) {
            conn.stream_events(args.json, out, err)
        } else {
            show_result(args, &result, out, err)
        }
    });
    match result {
        Ok(code) => code,
        Err(Failed::Refused { code, message }) => {
            let hint = match code {
                ErrorCode::UnknownCommand | ErrorCode::Version => {
                    " (the running onionstream is another version than this one: restart it)"
                }
                _ => "",
            };
            let _ = writeln!(err, "onionstream: ctl: {}{hint}", print::clean(&message));
            EXIT_FAILED
        }
        Err(Failed::Broken(message)) => {
            let _ = writeln!(err, "onionstream: ctl: {message}");
            EXIT_FAILED
        }
        // `ctl ... | head`: the reader has what it wanted.
        Err(Failed::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(Failed::Output(e)) => {
            let _ = writeln!(err, "onionstream: ctl: cannot write the output: {e}");
            EXIT_FAILED
        }
    }
}

/// Prints an ordinary command's result.
fn show_result(
    args: &CtlArgs,
    result: &serde_json::Value,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, Failed> {
    if args.json {
        let mut line = print::escape_for_terminal(&result.to_string());
        line.push('\n');
        print::write_flush(out, &line)?;
    } else {
        let text =
            print::format_result(&args.command, result, print::now_ms()).map_err(Failed::Broken)?;
        print::write_flush(out, &text)?;
    }
    if matches!(args.command, CtlCommand::Login) {
        // The one secret ctl prints: said so where a person sees it, apart from the link.
        let _ = writeln!(
            err,
            "onionstream: ctl: this link logs in as the broadcaster: keep it to yourself"
        );
    }
    Ok(EXIT_OK)
}

// Against fake servers on the unix socket (the loopback transport has its own tests).
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::console::transport::ENDPOINT_NAME as SOCKET_NAME;
    use serde_json::{json, Value};
    use std::io::{BufRead, BufReader, Read};
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;

    fn parse(args: &[&str]) -> CtlArgs {
        use clap::Parser;
        #[derive(Debug, Parser)]
        #[command(name = "ctl")]
        struct T {
            #[command(flatten)]
            a: CtlArgs,
        }
        let mut argv = vec!["ctl"];
        argv.extend_from_slice(args);
        T::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .a
    }

    // ---- against a fake server -----------------------------------------------------------

    fn temp_dir() -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("onionstream-ctl-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A server that reads one request line, answers `lines`, then closes. Joining gives the
    /// request it read.
    fn fake_server(dir: &Path, lines: &[&str]) -> std::thread::JoinHandle<String> {
        let listener = UnixListener::bind(dir.join(SOCKET_NAME)).unwrap();
        let lines: Vec<String> = lines.iter().map(|l| format!("{l}\n")).collect();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            let mut w = stream;
            for l in lines {
                w.write_all(l.as_bytes()).unwrap();
            }
            request
        })
    }

    /// Runs `ctl args` against `dir`: (exit code, stdout, stderr).
    fn run_ctl(dir: &Path, args: &[&str], timeout: Duration) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_with(&parse(args), dir, timeout, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn a_command_sends_its_request_and_prints_the_answer() {
        let dir = temp_dir();
        let server = fake_server(
            &dir,
            &[r#"{"v": 1, "id": 1, "ok": true, "result": {"watching": 2, "open_streams": 3}}"#],
        );
        let (code, out, err) = run_ctl(&dir, &["viewers"], REPLY_TIMEOUT);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (0, "2 watching, 3 streams open\n", "")
        );
        let request: Value = serde_json::from_str(&server.join().unwrap()).unwrap();
        assert_eq!(request, json!({"v": 1, "id": 1, "cmd": "viewers"}));

        std::fs::remove_file(dir.join(SOCKET_NAME)).unwrap();
        let server = fake_server(
            &dir,
            &[r#"{"v": 1, "id": 1, "ok": true, "result": {"changed": [42]}}"#],
        );
        let (code, out, _) = run_ctl(&dir, &["--json", "chat", "hide", "42"], REPLY_TIMEOUT);
        assert_eq!((code, out.as_str()), (0, "{\"changed\":[42]}\n"));
        let request: Value = serde_json::from_str(&server.join().unwrap()).unwrap();
        assert_eq!(
            request,
            json!({"v": 1, "id": 1, "cmd": "chat.hide", "args": {"ids": [42], "unhide": false}})
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_refusal_exits_1_with_the_servers_message() {
        let dir = temp_dir();
        let server = fake_server(
            &dir,
            &[concat!(
                r#"{"v": 1, "id": 1, "ok": false, "#,
                r#""error": {"code": "not_found", "message": "no user \"zzz\""}}"#
            )],
        );
        let (code, out, err) = run_ctl(&dir, &["user", "show", "zzz"], REPLY_TIMEOUT);
        assert_eq!(code, 1);
        assert_eq!(out, "");
        assert_eq!(err, "onionstream: ctl: no user \"zzz\"\n");
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn no_server_exits_2_naming_the_data_directory() {
        let dir = temp_dir();
        let (code, out, err) = run_ctl(&dir, &["viewers"], REPLY_TIMEOUT);
        assert_eq!(code, 2);
        assert_eq!(out, "");
        assert!(err.contains(&dir.display().to_string()), "{err}");
        assert!(err.contains("no onionstream is running"), "{err}");
        assert!(err.contains("--data-dir"), "{err}");

        // A socket left behind by a server that is gone.
        drop(UnixListener::bind(dir.join(SOCKET_NAME)).unwrap());
        let (code, _, err) = run_ctl(&dir, &["viewers"], REPLY_TIMEOUT);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("no onionstream is running"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_silent_or_broken_server_does_not_hang_the_client() {
        let dir = temp_dir();
        // Accepts, reads, never answers.
        let listener = UnixListener::bind(dir.join(SOCKET_NAME)).unwrap();
        let silent = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut sink = [0u8; 1024];
            while s.read(&mut sink).map(|n| n > 0).unwrap_or(false) {}
        });
        let start = std::time::Instant::now();
        let (code, _, err) = run_ctl(&dir, &["viewers"], Duration::from_millis(300));
        assert_eq!(code, 1);
        assert!(err.contains("did not answer"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
        silent.join().unwrap();
        std::fs::remove_file(dir.join(SOCKET_NAME)).unwrap();

        // Closes without a word (as when 16 consoles are already connected).
        let server = fake_server(&dir, &[]);
        let (code, _, err) = run_ctl(&dir, &["viewers"], REPLY_TIMEOUT);
        assert_eq!(code, 1);
        assert!(err.contains("closed the connection"), "{err}");
        server.join().unwrap();
        std::fs::remove_file(dir.join(SOCKET_NAME)).unwrap();

        // Answers garbage.
        let server = fake_server(&dir, &["HTTP/1.1 400 Bad Request"]);
        let (code, _, err) = run_ctl(&dir, &["viewers"], REPLY_TIMEOUT);
        assert_eq!(code, 1);
        assert!(err.contains("not JSON"), "{err}");
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    const ACK: &str = r#"{"v": 1, "id": 1, "ok": true, "result": {"streaming": true}}"#;
    const TITLE_EVENT: &str = r#"{"v":1,"event":"title.changed","data":{"title":"Hi"}}"#;
    const VIEWERS_EVENT: &str = r#"{"v":1,"event":"viewers.changed","data":{"watching":4}}"#;

    #[test]
    fn events_print_until_the_server_closes() {
        let dir = temp_dir();
        let server = fake_server(&dir, &[ACK, TITLE_EVENT, VIEWERS_EVENT]);
        let (code, out, err) = run_ctl(&dir, &["events"], Duration::from_millis(200));
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, "title.changed Hi\nviewers.changed 4 watching\n");
        let request: Value = serde_json::from_str(&server.join().unwrap()).unwrap();
        assert_eq!(request["cmd"], json!("events"));
        std::fs::remove_file(dir.join(SOCKET_NAME)).unwrap();

        // --json: the event lines as sent, and not the acknowledgement.
        let server = fake_server(&dir, &[ACK, TITLE_EVENT, VIEWERS_EVENT]);
        let (code, out, _) = run_ctl(&dir, &["--json", "events"], REPLY_TIMEOUT);
        assert_eq!(code, 0);
        assert_eq!(out, format!("{TITLE_EVENT}\n{VIEWERS_EVENT}\n"));
        server.join().unwrap();
        std::fs::remove_file(dir.join(SOCKET_NAME)).unwrap();

        // Cut off for lagging: said so, status 1.
        let lagged = r#"{"v":1,"event":"lagged","data":{"missed":1500}}"#;
        let server = fake_server(&dir, &[ACK, TITLE_EVENT, lagged]);
        let (code, out, err) = run_ctl(&dir, &["events"], REPLY_TIMEOUT);
        assert_eq!(code, 1);
        assert!(out.ends_with("lagged 1500 events missed; the server disconnected\n"));
        assert!(err.contains("1500 events were missed"), "{err}");
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_closed_output_ends_quietly() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let dir = temp_dir();
        let server = fake_server(&dir, &[ACK, TITLE_EVENT]);
        let mut err = Vec::new();
        let code = run_with(
            &parse(&["events"]),
            &dir,
            REPLY_TIMEOUT,
            &mut Closed,
            &mut err,
        );
        assert_eq!(code, 0);
        assert!(err.is_empty());
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}
