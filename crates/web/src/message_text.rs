//! Chat text as HTML: escaping, emotes, line breaks; and the dates and times shown beside
//! messages.
//!
//! Owns: turning user-written text into safe HTML. Must never: emit any user-written byte
//! without escaping it first (emotes are substituted after escaping, from our own list).

use room::emote::{Emotes, Piece};

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// A message's text as HTML: escaped, emotes as images, newlines as `<br>`. For the viewer
/// whose token is `token` (a no-JS page), emote addresses carry the token, so a private
/// stream's emotes are only served to those let in; with `None` (one rendering shared by every
/// JavaScript page), emote images have no address but `data-emote="N"`, and each page sets
/// `/emote/N?token=...` itself.
pub fn message_html(text: &str, emotes: &Emotes, token: Option<&str>) -> String {
    message_html_with(text, emotes, token.map(|t| ("token", t)))
}

/// [`message_html`] with emote addresses carrying `name=value` (`token=` for a viewer,
/// `key=` for the broadcaster's chat overlay), or none (`data-emote` only).
pub fn message_html_with(text: &str, emotes: &Emotes, access: Option<(&str, &str)>) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let pieces = emotes.split(text);
    for piece in pieces {
        match piece {
            Piece::Text(t) => {
                let mut lines = t.split('\n');
                if let Some(first) = lines.next() {
                    escape(first, &mut out);
                }
                for line in lines {
                    out.push_str("<br>");
                    escape(line, &mut out);
                }
            }
            Piece::Emote(e) => {
                let index = emotes.position(&e.name).unwrap_or(0);
                match access {
                    Some((name, value)) => {
                        out.push_str("<img class=\"emote\" src=\"/emote/");
                        out.push_str(&index.to_string());
                        out.push('?');
                        escape(name, &mut out);
                        out.push('=');
                        escape(value, &mut out);
                    }
                    None => {
                        out.push_str("<img class=\"emote\" data-emote=\"");
                        out.push_str(&index.to_string());
                    }
                }
                out.push_str("\" alt=\"");
                escape(&e.name, &mut out);
                out.push_str("\" title=\"");
                escape(&e.name, &mut out);
                out.push('"');
                if let Some(w) = e.width {
                    out.push_str(&format!(" width=\"{w}\""));
                }
                if let Some(h) = e.height {
                    out.push_str(&format!(" height=\"{h}\""));
                }
                out.push('>');
            }
        }
    }
    out
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The UTC day of a Unix time in ms (for date separators).
pub fn day_of(time_ms: i64) -> i64 {
    time_ms.div_euclid(86_400_000)
}

/// "2026-11-28" (UTC). UTC on purpose: the server's own time zone would identify it.
pub fn date_label(time_ms: i64) -> String {
    let (y, m, d) = civil_from_days(day_of(time_ms));
    format!("{y:04}-{m:02}-{d:02}")
}

/// "14:05" (UTC).
pub fn time_label(time_ms: i64) -> String {
    let secs = time_ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}", secs / 3600, (secs / 60) % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_special_character_is_escaped() {
        let html = message_html(
            "<script>alert('x')</script> & \"q\"",
            &Emotes::default(),
            Some("t"),
        );
        assert_eq!(
            html,
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn newlines_become_breaks() {
        assert_eq!(
            message_html("a\n<b>", &Emotes::default(), Some("t")),
            "a<br>&lt;b&gt;"
        );
    }

    #[test]
    fn emote_addresses_carry_the_token_only_when_rendered_for_one_viewer() {
        let dir =
            std::env::temp_dir().join(format!("onionstream-emote-html-{}", std::process::id()));
        testkit::emote::install_one(&dir, "cat");
        let emotes = Emotes::load(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let mine = message_html("hi :cat:", &emotes, Some("tok<en"));
        assert!(mine.contains("src=\"/emote/0?token=tok&lt;en\""), "{mine}");
        let overlay = message_html_with("hi :cat:", &emotes, Some(("key", "k3y")));
        assert!(overlay.contains("src=\"/emote/0?key=k3y\""), "{overlay}");
        let shared = message_html("hi :cat:", &emotes, None);
        assert!(shared.contains("data-emote=\"0\""), "{shared}");
        assert!(
            !shared.contains("src=") && !shared.contains("token"),
            "{shared}"
        );
    }

    #[test]
    fn dates_and_times_are_utc() {
        assert_eq!(date_label(0), "1970-01-01");
        // 2026-11-28 15:30:00 UTC
        let t = 1_795_879_800_000;
        assert_eq!(date_label(t), "2026-11-28");
        assert_eq!(time_label(t), "15:30");
        assert_eq!(date_label(951_782_400_000), "2000-02-29");
        assert_eq!(date_label(19_782 * 86_400_000), "2024-02-29");
        assert_eq!(date_label(20_785 * 86_400_000), "2026-11-28");
    }
}
