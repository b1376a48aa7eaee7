//! The chat lines the bench posts (`--chat`, `--fanout`, the soak's posters and probe).
//!
//! Owns: [`CHAT_TEXTS`]. Must never: hold a line that changes a post's cost on purpose (no
//! emote names, no filtered words): the phases measure ordinary messages.

/// Chat lines of 40-120 characters, as people write them.
pub const CHAT_TEXTS: [&str; 16] = [
    "good evening everyone, the stream looks great tonight",
    "is the audio a bit behind the video for anyone else or is it just my circuit?",
    "lol that cat walking across the keyboard was the best part so far",
    "what software are you using to encode this? looks really clean at such a low bitrate",
    "first time here, found the link on a forum. very cool that it works without javascript",
    "brb making tea, don't do anything interesting while I'm gone",
    "the chat refresh is a bit slow over tor but honestly it's fine, works in tor browser safest",
    "can you play that song again from the beginning of the stream? <3",
    "@mira yes it's the same onion address as last week, bookmark it",
    "docs for the setup are at https://example.org/onionstream/guide if anyone wants to host one",
    "it's 3am here and I should be asleep but this is too good",
    "pretty sure the latency is about four seconds for me, not bad at all for onion routing",
    "thanks for streaming, see you all next friday",
    "does anyone know if it keeps the chat history after a restart? asking for a friend",
    "\"quotes\" & <angle brackets> should be escaped properly, just checking",
    "ok the timelapse of the garden over the whole summer is actually beautiful",
];
