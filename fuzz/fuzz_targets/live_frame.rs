//! Fuzzes the decoding of a `/live` WebSocket client text frame (`web::live::decode_client_frame`,
//! the function the server itself calls on every frame).
//!
//! Checks, besides "never panics": a frame that decodes is a JSON object whose `type` names one
//! of the protocol's messages; text that is not JSON never decodes. Must never: depend on
//! anything but the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use web::live::{decode_client_frame, ClientFrame};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let decoded = decode_client_frame(text);
    let json: Result<serde_json::Value, _> = serde_json::from_str(text);
    let Ok(frame) = decoded else {
        return;
    };
    let json = json.expect("a decoded frame is JSON");
    let kind = json
        .get("type")
        .and_then(|t| t.as_str())
        .expect("a decoded frame has a string type");
    let expected = match frame {
        ClientFrame::Ping {} => "ping",
        ClientFrame::Pong {} => "pong",
        ClientFrame::Form {} => "form",
        ClientFrame::Users { .. } => "users",
        ClientFrame::Post { .. } => "post",
        ClientFrame::Appearance { .. } => "appearance",
        ClientFrame::Moderate { .. } => "moderate",
    };
    assert_eq!(kind, expected);
});
