//! The client side of the console: connecting (through [`crate::console::transport`]: the
//! socket, or on Windows loopback TCP and its token), sending one request, reading its answer,
//! and following the event stream.
//!
//! Owns: the connection and its timeouts, and telling a refusal from a broken conversation.
//! Must never: wait without limit for an answer (only the event stream waits, for as long as
//! the server keeps the connection open), or print anything but through [`super::print`].

use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::print::{clean, escape_for_terminal, event_text, shorten, write_flush};
use super::{Failed, CONNECT_TIMEOUT, EXIT_FAILED, EXIT_OK};
use crate::console::protocol::{ErrorCode, Event, EventLine, Request, Response, MAX_CONNECTIONS};
use crate::console::transport::ClientStream;

/// Why there is no server to talk to, and what to do about it.
pub(super) fn connect_error(data_dir: &Path, path: &Path, e: &io::Error) -> String {
    let (dir, sock) = (data_dir.display(), path.display());
    let advice = "start it, or give ctl the same --data-dir or --config as the server \
                  (before `ctl`)";
    match e.kind() {
        io::ErrorKind::NotFound => format!(
            "no onionstream is running with data directory {dir} (there is no {sock}): {advice}"
        ),
        io::ErrorKind::ConnectionRefused => format!(
            "no onionstream is running with data directory {dir} ({sock} is left from one \
             that stopped): {advice}"
        ),
        io::ErrorKind::PermissionDenied => format!(
            "cannot use {sock}: permission denied (only the user running the onionstream with \
             data directory {dir} can use its control socket)"
        ),
        io::ErrorKind::TimedOut => format!(
            "the onionstream with data directory {dir} did not accept a connection on {sock} \
             within {} s: is it stuck?",
            CONNECT_TIMEOUT.as_secs()
        ),
        _ => format!("cannot connect to {sock} (data directory {dir}): {e}"),
    }
}

/// One connection to the control socket.
pub(super) struct Connection {
    reader: BufReader<ClientStream>,
    writer: ClientStream,
    timeout: Duration,
}

impl Connection {
    pub(super) fn new(stream: ClientStream, timeout: Duration) -> Result<Connection, Failed> {
        let broken = |e: io::Error| Failed::Broken(format!("cannot use the connection: {e}"));
        stream.set_read_timeout(Some(timeout)).map_err(broken)?;
        stream.set_write_timeout(Some(timeout)).map_err(broken)?;
        let reader = BufReader::new(stream.try_clone().map_err(broken)?);
        Ok(Connection {
            reader,
            writer: stream,
            timeout,
        })
    }

    /// Sends `request` and returns the `result` of a successful answer.
    pub(super) fn call(&mut self, request: &Request) -> Result<Value, Failed> {
        if let Err(e) = self.writer.write_all(request.line(1).as_bytes()) {
            return Err(self.io_failure(e, "sending the request"));
        }
        match self.read_line() {
            Ok(Some(line)) => parse_response(&line),
            Ok(None) => Err(closed_unanswered()),
            Err(e) => Err(self.io_failure(e, "reading the answer")),
        }
    }

    /// The next line, without its newline; `None` when the server closed the connection.
    fn read_line(&mut self) -> io::Result<Option<String>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let trimmed = line.trim_end_matches(['\n', '\r']).len();
        line.truncate(trimmed);
        Ok(Some(line))
    }

    fn io_failure(&self, e: io::Error, doing: &str) -> Failed {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failed::Broken(format!(
                "the server did not answer within {} s",
                self.timeout.as_secs_f64()
            )),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => closed_unanswered(),
            io::ErrorKind::InvalidData => {
                Failed::Broken("the server sent something that is not UTF-8 text".into())
            }
            _ => Failed::Broken(format!("{doing} failed: {e}")),
        }
    }

    /// After `events` was accepted: prints each event until the server closes the connection.
    pub(super) fn stream_events(
        &mut self,
        json: bool,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<u8, Failed> {
        // Events come when they come; a dead server closes the socket, ending the read.
        if let Err(e) = self.reader.get_ref().set_read_timeout(None) {
            return Err(Failed::Broken(format!("cannot use the connection: {e}")));
        }
        loop {
            let line = match self.read_line() {
                Ok(Some(line)) => line,
                // The server stopped (or dropped us): the stream is over.
                Ok(None) => return Ok(EXIT_OK),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(EXIT_OK),
                Err(e) => return Err(self.io_failure(e, "reading events")),
            };
            if line.trim().is_empty() {
                continue;
            }
            let event: Option<Value> = serde_json::from_str(&line).ok();
            let lagged =
                serde_json::from_str::<EventLine>(&line)
                    .ok()
                    .and_then(|e| match e.event {
                        Event::Lagged { missed } => Some(missed),
                        _ => None,
                    });
            let mut text = if json {
                escape_for_terminal(&line)
            } else {
                match &event {
                    Some(e) => event_text(e),
                    None => format!("(not an event) {}", clean(&line)),
                }
            };
            text.push('\n');
            write_flush(out, &text)?;
            if let Some(missed) = lagged {
                let _ = writeln!(
                    err,
                    "onionstream: ctl: fell behind and was disconnected by the server; {missed} \
                     events were missed"
                );
                return Ok(EXIT_FAILED);
            }
        }
    }
}

/// The server hung up before answering.
fn closed_unanswered() -> Failed {
    Failed::Broken(format!(
        "the server closed the connection without answering (it serves at most {} console \
         connections at once: try again)",
        MAX_CONNECTIONS
    ))
}

/// The `result` of a successful answer, or the error it carries.
fn parse_response(line: &str) -> Result<Value, Failed> {
    let not_protocol = |why: String| {
        Failed::Broken(format!(
            "the server's answer is {why}: {}",
            clean(&shorten(line, 200))
        ))
    };
    let value: Value =
        serde_json::from_str(line).map_err(|e| not_protocol(format!("not JSON ({e})")))?;
    let response: Response = serde_json::from_value(value)
        .map_err(|e| not_protocol(format!("not a protocol-1 response ({e})")))?;
    if response.ok {
        return Ok(response.result.unwrap_or(Value::Null));
    }
    Err(match response.error {
        Some(error) => {
            let message = if error.message.is_empty() {
                "the server refused, giving no reason".to_owned()
            } else {
                error.message
            };
            Failed::Refused {
                code: error.code,
                message,
            }
        }
        None => Failed::Refused {
            code: ErrorCode::Other,
            message: "the server refused, giving no reason".to_owned(),
        },
    })
}
