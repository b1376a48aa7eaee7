//! The configuration file (`onionstream.toml`): every key, its default, and how CLI flags
//! override it. The shipped `onionstream.toml` documents each key; a test keeps the two equal.
//!
//! Owns: reading and checking the config. Must never: hold secrets in a form that `print`
//! would show, or accept an unknown key silently (a typo must be an error naming the key).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole configuration. Every field has a default; an empty file is a valid config.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the web server listens on. Loopback only unless `allow_non_loopback`.
    pub listen: SocketAddr,
    /// Serve on a non-loopback address. Off by default: over Tor, nothing else is needed.
    pub allow_non_loopback: bool,
    /// Where state lives (`title.txt`, later chat and keys). Empty: the platform default.
    pub data_dir: PathBuf,
    /// The video source: demo, folder:DIR, ffmpeg:test, ffmpeg:screen, ffmpeg:file:PATH,
    /// ffmpeg:args, rtmp, rtmp:IP:PORT.
    pub source: String,
    pub ffmpeg: FfmpegConfig,
    pub delivery: DeliveryConfig,
    pub limits: LimitsConfig,
    pub page: PageConfig,
    pub chat: ChatConfig,
    pub captcha: CaptchaConfig,
    pub private: PrivateConfig,
    pub onion: OnionConfig,
    pub metrics: MetricsConfig,
    pub origin: OriginSection,
    pub balance: BalanceConfig,
    pub renditions: RenditionsConfig,
    pub record: RecordConfig,
}

/// Recordings of live sessions (`media::recorder`): off by default. A recording is evidence
/// on disk (video and sound, never the chat) until deleted or capped.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordConfig {
    /// Record every live session. `onionstream ctl record on|off` overrides this, and is
    /// kept across restarts (`DATA_DIR/record-switch`).
    pub enabled: bool,
    /// Where recordings go. Empty: `DATA_DIR/recordings`.
    pub dir: PathBuf,
    /// Recordings together may take this many MB (10^6 bytes); the oldest are deleted beyond.
    pub max_total_mb: u64,
    /// Recordings older than this many days are deleted.
    pub max_age_days: u64,
    /// A "Past broadcasts" page for viewers (`/recordings`) listing the recordings the
    /// broadcaster published (`onionstream ctl record publish ID`).
    pub publish: bool,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            enabled: false,
            dir: PathBuf::new(),
            max_total_mb: 4096,
            max_age_days: 30,
            publish: false,
        }
    }
}

/// The quality ladder: renditions made from the source for slow circuits (`media::rendition`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenditionsConfig {
    /// Make renditions besides the source. Off: the source alone, and no ffmpeg runs for
    /// them (a weak machine; each costs CPU, see `onionstream sources`).
    pub enabled: bool,
    /// The low video rendition (`/?q=low`).
    pub low: bool,
    /// Its height in lines (never more than the source's).
    pub low_height: u32,
    /// Its video and sound bitrates, kbit/s.
    pub low_video_kbps: u32,
    pub low_audio_kbps: u32,
    /// The sound-only rendition (`/?q=audio`).
    pub audio: bool,
    /// Its bitrate, kbit/s.
    pub audio_kbps: u32,
    /// A viewer whose video was moved forward this many times (it could not keep up) within
    /// `suggest_within_secs` gets a lower quality suggested on its page. 0: never.
    pub suggest_after_skips: usize,
    pub suggest_within_secs: u64,
}

impl Default for RenditionsConfig {
    fn default() -> Self {
        RenditionsConfig {
            enabled: true,
            low: true,
            low_height: 240,
            low_video_kbps: 200,
            low_audio_kbps: 48,
            audio: true,
            audio_kbps: 48,
            suggest_after_skips: 2,
            suggest_within_secs: 120,
        }
    }
}

/// Running as an edge: the origin whose stream this server relays (`--origin`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OriginSection {
    /// The origin's address, `http://HOST:PORT/` or `http://ADDRESS.onion/`. Empty: this
    /// server is an origin (it has a source and the room).
    pub url: String,
    /// A file holding the edge key `onionstream edge add` printed at the origin (keep it
    /// readable by this user only). `--origin-key` gives the key itself instead.
    pub key_file: PathBuf,
    /// The key given with `--origin-key`; never read from or written to a file.
    #[serde(skip)]
    pub key: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the Prometheus endpoint (`GET /metrics`), a listener of its own. Empty: off.
    /// Loopback only, whatever `allow_non_loopback` says.
    pub listen: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    /// Refresh interval of the chat messages frame without JavaScript.
    pub refresh_secs: u64,
    /// Longest message, in characters.
    pub max_message_chars: usize,
    /// Most lines in one message.
    pub max_lines: usize,
    /// Width of a chat line in characters, for counting how much room a message takes.
    pub line_width: usize,
    /// Window over which `max_linespan` (and the flood captcha) are counted.
    pub flood_window_secs: u64,
    /// Most screen lines one user may fill per window.
    pub max_linespan: usize,
    /// Shortest time between two messages of one user.
    pub min_interval_ms: u64,
    /// Longest name, in characters.
    pub max_name_chars: usize,
    pub default_name: String,
    pub broadcaster_name: String,
    /// Messages kept (memory and disk); older ones are deleted.
    pub storage_messages: usize,
    /// Messages shown in the chat.
    pub shown_messages: usize,
    /// Users seen this recently (but not watching) are listed as "not watching".
    pub presence_window_secs: u64,
    /// Slow mode at start: at most one message per this many seconds per user, the
    /// broadcaster excepted (0 = off). A change from the page or `ctl chat slow` is kept and
    /// wins over this.
    pub slow_mode_secs: u32,
    /// Keep nothing on disk: chat, names and bans vanish when onionstream stops.
    pub ephemeral: bool,
    /// Argon2 hash of the broadcaster's password (`onionstream hash-password`); empty: a new
    /// random password is printed at every start.
    pub broadcaster_password_hash: String,
    pub filters: room::filter::FilterConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptchaConfig {
    /// A captcha before the page itself, once per visitor.
    pub access: bool,
    /// A captcha before a visitor's first message.
    pub first_message: bool,
    /// Posting this many messages within `chat.flood_window_secs` asks for a captcha.
    pub flood_messages: usize,
    /// A captcha again after this many messages (0 = never).
    pub every_messages: u32,
    /// Chance, in percent, that any message asks for a captcha first (0 = never).
    pub random_percent: u8,
    /// A captcha older than this is refused as expired.
    pub lifetime_secs: u64,
    /// Wrong answers allowed per visitor per `wrong_window_secs`.
    pub max_wrong: u32,
    pub wrong_window_secs: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivateConfig {
    /// Only visitors with a listed tripcode (and the broadcaster) may enter; everyone else
    /// gets the same 403 page, live or not.
    pub enabled: bool,
    /// Tripcodes allowed in (8 characters each, as the chat shows them after the `!`).
    pub tripcodes: Vec<String>,
}

impl Default for ChatConfig {
    fn default() -> Self {
        let r = room::flood::ChatRules::default();
        let c = room::RoomConfig::default();
        ChatConfig {
            refresh_secs: web::WebConfig::default().chat_refresh.as_secs(),
            max_message_chars: r.max_message_chars,
            max_lines: r.max_lines,
            line_width: r.line_width,
            flood_window_secs: r.flood_window.as_secs(),
            max_linespan: r.max_linespan,
            min_interval_ms: r.min_interval.as_millis() as u64,
            max_name_chars: r.max_name_chars,
            default_name: c.default_name,
            broadcaster_name: c.broadcaster_name,
            storage_messages: c.storage_messages,
            shown_messages: c.shown_messages,
            presence_window_secs: c.presence_window.as_secs(),
            slow_mode_secs: c.slow_mode_secs,
            ephemeral: false,
            broadcaster_password_hash: String::new(),
            filters: room::filter::FilterConfig::default(),
        }
    }
}

impl Default for CaptchaConfig {
    fn default() -> Self {
        let r = room::flood::ChatRules::default();
        let p = room::captcha::CaptchaPolicy::default();
        CaptchaConfig {
            access: false,
            first_message: r.captcha_first_message,
            flood_messages: r.flood_captcha_messages,
            every_messages: r.captcha_every_messages,
            random_percent: r.captcha_random_percent,
            lifetime_secs: p.lifetime.as_secs(),
            max_wrong: p.max_wrong,
            wrong_window_secs: p.wrong_window.as_secs(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnionConfig {
    /// Publish the site as an onion service with onionstream's own tor (same as `--onion`).
    pub enabled: bool,
    /// The tor program.
    pub tor_program: PathBuf,
    /// Proof-of-work defence against introduction floods.
    pub pow_defenses: bool,
    /// Rate limiting at the introduction points.
    pub intro_dos_defense: bool,
    pub intro_dos_rate_per_sec: u32,
    pub intro_dos_burst_per_sec: u32,
    /// Streams one Tor circuit may open to the site (0 = unlimited).
    pub max_streams_per_circuit: u32,
    /// Close a circuit that opens more.
    pub max_streams_close_circuit: bool,
    /// An edge's onion service answers for this Onionbalance front address too (the origin
    /// prints it when `balance.enabled`). Empty: no front.
    pub front: String,
}

/// Onionbalance at the origin: one front address for every edge.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BalanceConfig {
    /// Publish a front address whose descriptor merges the edges' (needs `onion.enabled`).
    pub enabled: bool,
    /// The Onionbalance program, and the generator that makes the front key once.
    pub program: PathBuf,
    pub config_program: PathBuf,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        let d = onion::balance::BalanceSettings::default();
        BalanceConfig {
            enabled: false,
            program: d.program,
            config_program: d.config_program,
        }
    }
}

impl Default for OnionConfig {
    fn default() -> Self {
        let d = onion::torrc::OnionSettings::default();
        OnionConfig {
            enabled: false,
            tor_program: d.tor_program,
            pow_defenses: d.pow_defenses,
            intro_dos_defense: d.intro_dos_defense,
            intro_dos_rate_per_sec: d.intro_dos_rate_per_sec,
            intro_dos_burst_per_sec: d.intro_dos_burst_per_sec,
            max_streams_per_circuit: d.max_streams_per_circuit,
            max_streams_close_circuit: d.max_streams_close_circuit,
            front: String::new(),
        }
    }
}

impl OnionConfig {
    pub fn settings(&self, extra_lines: Vec<String>) -> onion::torrc::OnionSettings {
        onion::torrc::OnionSettings {
            tor_program: self.tor_program.clone(),
            virtual_port: 80,
            pow_defenses: self.pow_defenses,
            intro_dos_defense: self.intro_dos_defense,
            intro_dos_rate_per_sec: self.intro_dos_rate_per_sec,
            intro_dos_burst_per_sec: self.intro_dos_burst_per_sec,
            max_streams_per_circuit: self.max_streams_per_circuit,
            max_streams_close_circuit: self.max_streams_close_circuit,
            socks: false,
            client_auth: false,
            balance_front: (!self.front.is_empty()).then(|| self.front.clone()),
            extra_lines,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FfmpegConfig {
    /// The ffmpeg program.
    pub program: PathBuf,
    /// Input and encoding arguments replacing the preset's (required by `ffmpeg:args`).
    pub input_args: Vec<String>,
    /// Output arguments replacing the default fragmented-MP4-to-stdout ones.
    pub output_args: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// A new viewer starts at the keyframe about this far behind the live edge.
    pub start_behind_ms: u64,
    /// A viewer further behind than this is moved forward.
    pub max_behind_ms: u64,
    /// A viewer that could be sent nothing for this long keeps a gap when moved forward.
    pub stall_gap_ms: u64,
    /// An open stream with nothing to send for this long ends.
    pub idle_end_secs: u64,
    /// A connection whose socket accepts nothing for this long is closed.
    pub write_stall_timeout_secs: u64,
    /// Kernel send buffer per connection, in KiB (0: the OS default).
    pub socket_send_buffer_kib: u64,
    /// Media kept in memory behind the live edge.
    pub retention_secs: u64,
    /// Upper bound on media kept in memory.
    pub max_buffer_mib: u64,
    /// The stream counts as offline when nothing arrived for this long.
    pub offline_after_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Open `/stream.mp4` responses one visitor (token) may hold.
    pub max_streams_per_token: usize,
    /// New `/stream.mp4` responses one visitor may open per minute.
    pub stream_opens_per_minute: usize,
    /// Open `/stream.mp4` responses in all.
    pub max_streams: usize,
    /// Open connections in all.
    pub max_connections: usize,
    /// Time a client has to send request headers.
    pub header_read_timeout_secs: u64,
    /// Open WebSockets (`/live`, pages running JavaScript) in all; beyond, pages fall back
    /// to the refreshing frames. Each visitor may hold at most
    /// `web::live::MAX_SOCKETS_PER_VISITOR` (4).
    pub max_live_sockets: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PageConfig {
    /// Refresh interval of the info panel without JavaScript.
    pub info_refresh_secs: u64,
    /// A visitor counts as a viewer while video reached them this recently.
    pub watching_window_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            allow_non_loopback: false,
            data_dir: PathBuf::new(),
            source: "demo".into(),
            ffmpeg: FfmpegConfig::default(),
            delivery: DeliveryConfig::default(),
            limits: LimitsConfig::default(),
            page: PageConfig::default(),
            chat: ChatConfig::default(),
            captcha: CaptchaConfig::default(),
            private: PrivateConfig::default(),
            onion: OnionConfig::default(),
            metrics: MetricsConfig::default(),
            origin: OriginSection::default(),
            balance: BalanceConfig::default(),
            renditions: RenditionsConfig::default(),
            record: RecordConfig::default(),
        }
    }
}

impl Default for FfmpegConfig {
    fn default() -> Self {
        FfmpegConfig {
            program: "ffmpeg".into(),
            input_args: Vec::new(),
            output_args: Vec::new(),
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let cursor = media::CursorPolicy::default();
        let store = media::StoreConfig::default();
        DeliveryConfig {
            start_behind_ms: cursor.start_behind.as_millis() as u64,
            max_behind_ms: cursor.max_behind.as_millis() as u64,
            stall_gap_ms: cursor.stall_gap.as_millis() as u64,
            idle_end_secs: cursor.idle_end.as_secs(),
            write_stall_timeout_secs: web::ServerLimits::default().write_stall_timeout.as_secs(),
            socket_send_buffer_kib: web::ServerLimits::default()
                .socket_send_buffer
                .map_or(0, |b| (b / 1024) as u64),
            retention_secs: store.retention.as_secs(),
            max_buffer_mib: (store.max_buffer_bytes / (1024 * 1024)) as u64,
            offline_after_secs: store.offline_after.as_secs(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let s = room::StreamLimits::default();
        let server = web::ServerLimits::default();
        LimitsConfig {
            max_streams_per_token: s.max_per_token,
            stream_opens_per_minute: s.opens_per_minute,
            max_streams: s.max_total,
            max_connections: server.max_connections,
            header_read_timeout_secs: server.header_read_timeout.as_secs(),
            max_live_sockets: 5000,
        }
    }
}

impl Default for PageConfig {
    fn default() -> Self {
        PageConfig {
            info_refresh_secs: web::WebConfig::default().info_refresh.as_secs(),
            watching_window_secs: room::StreamLimits::default().watching_window.as_secs(),
        }
    }
}

impl Config {
    /// Reads a config file; errors name the file, the line and the key.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| format!("config file {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn check(&self) -> Result<(), String> {
        let r = &self.renditions;
        for (key, v, range) in [
            ("renditions.low_height", r.low_height, 90..=1080),
            ("renditions.low_video_kbps", r.low_video_kbps, 32..=8000),
            ("renditions.low_audio_kbps", r.low_audio_kbps, 16..=320),
            ("renditions.audio_kbps", r.audio_kbps, 16..=320),
        ] {
            if !range.contains(&v) {
                return Err(format!(
                    "{key} ({v}) must be between {} and {}",
                    range.start(),
                    range.end()
                ));
            }
        }
        for (key, v, range) in [
            (
                "record.max_total_mb",
                self.record.max_total_mb,
                10..=100_000_000,
            ),
            ("record.max_age_days", self.record.max_age_days, 1..=36_500),
        ] {
            if !range.contains(&v) {
                return Err(format!(
                    "{key} ({v}) must be between {} and {}",
                    range.start(),
                    range.end()
                ));
            }
        }
        if r.suggest_after_skips > 0 && r.suggest_within_secs == 0 {
            return Err("renditions.suggest_within_secs must be more than 0".into());
        }
        let d = &self.delivery;
        if d.start_behind_ms >= d.max_behind_ms {
            return Err(format!(
                "delivery.start_behind_ms ({}) must be less than delivery.max_behind_ms ({})",
                d.start_behind_ms, d.max_behind_ms
            ));
        }
        if d.retention_secs * 1000 < d.max_behind_ms {
            return Err(format!(
                "delivery.retention_secs ({}) must cover delivery.max_behind_ms ({})",
                d.retention_secs, d.max_behind_ms
            ));
        }
        for (key, v) in [
            ("delivery.idle_end_secs", d.idle_end_secs),
            (
                "delivery.write_stall_timeout_secs",
                d.write_stall_timeout_secs,
            ),
            ("delivery.offline_after_secs", d.offline_after_secs),
            ("delivery.max_buffer_mib", d.max_buffer_mib),
            (
                "limits.header_read_timeout_secs",
                self.limits.header_read_timeout_secs,
            ),
            ("page.info_refresh_secs", self.page.info_refresh_secs),
            ("page.watching_window_secs", self.page.watching_window_secs),
            (
                "limits.max_streams_per_token",
                self.limits.max_streams_per_token as u64,
            ),
            (
                "limits.stream_opens_per_minute",
                self.limits.stream_opens_per_minute as u64,
            ),
            ("limits.max_streams", self.limits.max_streams as u64),
            ("limits.max_connections", self.limits.max_connections as u64),
            (
                "limits.max_live_sockets",
                self.limits.max_live_sockets as u64,
            ),
            ("chat.refresh_secs", self.chat.refresh_secs),
            ("chat.max_message_chars", self.chat.max_message_chars as u64),
            ("chat.max_lines", self.chat.max_lines as u64),
            ("chat.line_width", self.chat.line_width as u64),
            ("chat.flood_window_secs", self.chat.flood_window_secs),
            ("chat.max_linespan", self.chat.max_linespan as u64),
            ("chat.max_name_chars", self.chat.max_name_chars as u64),
            ("chat.storage_messages", self.chat.storage_messages as u64),
            ("chat.shown_messages", self.chat.shown_messages as u64),
            ("chat.presence_window_secs", self.chat.presence_window_secs),
            ("captcha.lifetime_secs", self.captcha.lifetime_secs),
            ("captcha.max_wrong", u64::from(self.captcha.max_wrong)),
            ("captcha.wrong_window_secs", self.captcha.wrong_window_secs),
        ] {
            if v == 0 {
                return Err(format!("{key} must be greater than 0"));
            }
        }
        if self.chat.slow_mode_secs > room::MAX_SLOW_MODE_SECS {
            return Err(format!(
                "chat.slow_mode_secs ({}) must be between 0 (off) and {}",
                self.chat.slow_mode_secs,
                room::MAX_SLOW_MODE_SECS
            ));
        }
        if self.captcha.random_percent > 100 {
            return Err(format!(
                "captcha.random_percent ({}) must be between 0 and 100",
                self.captcha.random_percent
            ));
        }
        if !self.chat.broadcaster_password_hash.is_empty() {
            room::tripcode::BroadcasterPassword::from_hash(&self.chat.broadcaster_password_hash)
                .map_err(|e| format!("chat.broadcaster_password_hash: {e}"))?;
        }
        room::filter::WordFilters::new(&self.chat.filters)
            .map_err(|e| format!("chat.filters: {e}"))?;
        self.source
            .parse::<media::source::SourceSpec>()
            .map_err(|e| format!("source: {e}"))?;
        if !self.allow_non_loopback && !self.listen.ip().is_loopback() {
            return Err(format!(
                "listen address {} is not a loopback address; onionstream serves on loopback and \
                 lets tor publish it. Set allow_non_loopback = true to serve on it anyway",
                self.listen
            ));
        }
        if !self.origin.url.is_empty() {
            self.origin_config()?;
        }
        if !self.onion.front.is_empty() && !onion::balance::is_onion_address(&self.onion.front) {
            return Err(format!(
                "onion.front {:?} is not an onion address (56 letters and digits, then .onion)",
                self.onion.front
            ));
        }
        if self.balance.enabled && !self.origin.url.is_empty() {
            return Err(
                "balance.enabled is for the origin, not an edge (origin.url is set)".into(),
            );
        }
        let metrics = self.metrics.listen.trim();
        if !metrics.is_empty() {
            let Some(addr) = self.metrics_listen() else {
                return Err(format!(
                    "metrics.listen {metrics:?} is not a socket address such as \"127.0.0.1:9464\" \
                     (empty turns metrics off)"
                ));
            };
            if !addr.ip().is_loopback() {
                return Err(format!(
                    "metrics.listen address {metrics} is not a loopback address; the metrics \
                     endpoint is only ever served on loopback (allow_non_loopback does not apply \
                     to it)"
                ));
            }
            // Port 0 (a free port for each) cannot clash.
            if addr == self.listen && addr.port() != 0 {
                return Err(format!(
                    "metrics.listen ({metrics}) must differ from listen ({})",
                    self.listen
                ));
            }
        }
        Ok(())
    }

    /// The origin this server relays, when it is an edge (`origin.url` set): its address and
    /// the edge key (`--origin-key`, else read from `origin.key_file`).
    pub fn origin_config(&self) -> Result<Option<web::upstream::OriginConfig>, String> {
        if self.origin.url.is_empty() {
            return Ok(None);
        }
        let key = if !self.origin.key.is_empty() {
            self.origin.key.clone()
        } else if !self.origin.key_file.as_os_str().is_empty() {
            std::fs::read_to_string(&self.origin.key_file)
                .map_err(|e| format!("origin.key_file {}: {e}", self.origin.key_file.display()))?
        } else {
            return Err(format!(
                "origin {} needs an edge key: --origin-key KEY or origin.key_file (the key \
                 `onionstream edge add NAME` printed at the origin)",
                self.origin.url
            ));
        };
        web::upstream::OriginConfig::parse(&self.origin.url, &key)
            .map(Some)
            .map_err(|e| format!("origin: {e}"))
    }

    /// Where the metrics endpoint listens: `None` when it is off (`metrics.listen` empty).
    /// [`Config::check`] has made sure any address is a valid loopback one; an unparsable
    /// value (only possible when `check` was skipped) also gives `None`.
    pub fn metrics_listen(&self) -> Option<SocketAddr> {
        self.metrics.listen.trim().parse().ok()
    }

    /// The data directory: the configured one, else (Windows) `%LOCALAPPDATA%\onionstream`,
    /// else `$XDG_DATA_HOME/onionstream`, else `~/.local/share/onionstream`, else
    /// `./onionstream-data`.
    pub fn data_dir(&self) -> PathBuf {
        if !self.data_dir.as_os_str().is_empty() {
            return self.data_dir.clone();
        }
        // Windows: inside the user's profile, whose permissions are the data's only privacy
        // there (no file modes; docs/SECURITY.md).
        #[cfg(windows)]
        if let Some(x) = std::env::var_os("LOCALAPPDATA").filter(|v| !v.is_empty()) {
            return PathBuf::from(x).join("onionstream");
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(x).join("onionstream");
        }
        if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(h).join(".local/share/onionstream");
        }
        PathBuf::from("onionstream-data")
    }

    /// The renditions to make besides the source.
    pub fn ladder_config(&self) -> media::LadderConfig {
        let r = &self.renditions;
        media::LadderConfig {
            low: (r.enabled && r.low).then_some(media::Recipe::Video {
                height: r.low_height,
                video_kbps: r.low_video_kbps,
                audio_kbps: r.low_audio_kbps,
            }),
            audio: (r.enabled && r.audio).then_some(media::Recipe::Audio { kbps: r.audio_kbps }),
            ffmpeg_program: self.ffmpeg.program.clone(),
        }
    }

    pub fn store_config(&self) -> media::StoreConfig {
        let d = &self.delivery;
        media::StoreConfig {
            retention: Duration::from_secs(d.retention_secs),
            max_buffer_bytes: (d.max_buffer_mib as usize).saturating_mul(1024 * 1024),
            offline_after: Duration::from_secs(d.offline_after_secs),
        }
    }

    pub fn web_config(&self) -> web::WebConfig {
        let d = &self.delivery;
        web::WebConfig {
            info_refresh: Duration::from_secs(self.page.info_refresh_secs),
            chat_refresh: Duration::from_secs(self.chat.refresh_secs),
            cursor: media::CursorPolicy {
                start_behind: Duration::from_millis(d.start_behind_ms),
                max_behind: Duration::from_millis(d.max_behind_ms),
                stall_gap: Duration::from_millis(d.stall_gap_ms),
                idle_end: Duration::from_secs(d.idle_end_secs),
            },
        }
    }

    /// The chat room's settings. `data_dir` is where its database lives (None: ephemeral).
    pub fn room_config(&self, data_dir: Option<PathBuf>) -> room::RoomConfig {
        let c = &self.chat;
        let p = &self.captcha;
        room::RoomConfig {
            rules: room::flood::ChatRules {
                max_message_chars: c.max_message_chars,
                max_lines: c.max_lines,
                line_width: c.line_width,
                flood_window: Duration::from_secs(c.flood_window_secs),
                max_linespan: c.max_linespan,
                min_interval: Duration::from_millis(c.min_interval_ms),
                flood_captcha_messages: p.flood_messages,
                captcha_first_message: p.first_message,
                captcha_every_messages: p.every_messages,
                captcha_random_percent: p.random_percent,
                max_name_chars: c.max_name_chars,
            },
            captcha: room::captcha::CaptchaPolicy {
                lifetime: Duration::from_secs(p.lifetime_secs),
                max_wrong: p.max_wrong,
                wrong_window: Duration::from_secs(p.wrong_window_secs),
                ..room::captcha::CaptchaPolicy::default()
            },
            access_captcha: p.access,
            filters: c.filters.clone(),
            private_mode: self.private.enabled,
            private_tripcodes: self.private.tripcodes.clone(),
            storage_messages: c.storage_messages,
            shown_messages: c.shown_messages,
            presence_window: Duration::from_secs(c.presence_window_secs),
            slow_mode_secs: c.slow_mode_secs,
            default_name: c.default_name.clone(),
            broadcaster_name: c.broadcaster_name.clone(),
            broadcaster_password: if c.broadcaster_password_hash.is_empty() {
                room::tripcode::BroadcasterPassword::generate()
            } else {
                room::tripcode::BroadcasterPassword::Hash(c.broadcaster_password_hash.clone())
            },
            data_dir: if c.ephemeral { None } else { data_dir },
            test_captcha_answers: None,
        }
    }

    pub fn stream_limits(&self) -> room::StreamLimits {
        room::StreamLimits {
            max_per_token: self.limits.max_streams_per_token,
            opens_per_minute: self.limits.stream_opens_per_minute,
            max_total: self.limits.max_streams,
            watching_window: Duration::from_secs(self.page.watching_window_secs),
            struggle_skips: self.renditions.suggest_after_skips,
            struggle_window: Duration::from_secs(self.renditions.suggest_within_secs),
        }
    }

    pub fn server_limits(&self) -> web::ServerLimits {
        web::ServerLimits {
            max_connections: self.limits.max_connections,
            header_read_timeout: Duration::from_secs(self.limits.header_read_timeout_secs),
            write_stall_timeout: Duration::from_secs(self.delivery.write_stall_timeout_secs),
            socket_send_buffer: (self.delivery.socket_send_buffer_kib > 0)
                .then(|| self.delivery.socket_send_buffer_kib as usize * 1024),
            ..web::ServerLimits::default()
        }
    }

    /// Where recordings go: `record.dir`, else `DATA_DIR/recordings`.
    pub fn recordings_dir(&self) -> PathBuf {
        if self.record.dir.as_os_str().is_empty() {
            self.data_dir().join("recordings")
        } else {
            self.record.dir.clone()
        }
    }

    pub fn recordings_config(&self) -> media::recording::RecordingsConfig {
        media::recording::RecordingsConfig {
            dir: self.recordings_dir(),
            max_total_bytes: self.record.max_total_mb.saturating_mul(1_000_000),
            max_age: Duration::from_secs(self.record.max_age_days.saturating_mul(86_400)),
            ffmpeg_program: self.ffmpeg.program.clone(),
        }
    }

    pub fn source_options(&self) -> media::source::SourceOptions {
        media::source::SourceOptions {
            ffmpeg_program: Some(self.ffmpeg.program.clone()),
            ffmpeg_input_args: (!self.ffmpeg.input_args.is_empty())
                .then(|| self.ffmpeg.input_args.clone()),
            ffmpeg_output_args: (!self.ffmpeg.output_args.is_empty())
                .then(|| self.ffmpeg.output_args.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../../onionstream.toml");

    #[test]
    fn the_shipped_example_is_the_defaults() {
        let shipped = Config::parse(SHIPPED).expect("shipped config parses");
        assert_eq!(shipped, Config::default());
    }

    #[test]
    fn every_key_is_documented_in_the_shipped_example() {
        let defaults = toml::to_string(&Config::default()).unwrap();
        let table: toml::Table = toml::from_str(&defaults).unwrap();
        fn keys(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
            for (k, v) in t {
                match v {
                    toml::Value::Table(sub) => keys(&format!("{prefix}{k}."), sub, out),
                    _ => out.push(format!("{prefix}{k}")),
                }
            }
        }
        let mut all = Vec::new();
        keys("", &table, &mut all);
        for key in all {
            let leaf = key.rsplit('.').next().unwrap();
            assert!(
                SHIPPED
                    .lines()
                    .any(|l| l.trim_start().starts_with(&format!("{leaf} ="))),
                "{key} is not in onionstream.toml"
            );
        }
    }

    #[test]
    fn a_typo_is_an_error_naming_the_key() {
        let e = Config::parse("[delivery]\nstart_behind_msec = 3\n").unwrap_err();
        assert!(e.contains("start_behind_msec"), "{e}");
        let e = Config::parse("listen = \"0.0.0.0:80\"\n").unwrap_err();
        assert!(e.contains("0.0.0.0:80"), "{e}");
        let e = Config::parse("source = \"webcam\"\n").unwrap_err();
        assert!(e.contains("webcam"), "{e}");
        let e = Config::parse("[delivery]\nstart_behind_ms = 9000\n").unwrap_err();
        assert!(e.contains("max_behind_ms"), "{e}");
        let e = Config::parse("[record]\nmax_total_mb = 1\n").unwrap_err();
        assert!(
            e.contains("record.max_total_mb (1) must be between 10"),
            "{e}"
        );
        let e = Config::parse("[record]\nmax_age_days = 0\n").unwrap_err();
        assert!(e.contains("record.max_age_days"), "{e}");
    }

    #[test]
    fn metrics_are_off_by_default_and_only_ever_on_loopback() {
        assert_eq!(Config::default().metrics_listen(), None);
        let c = Config::parse("[metrics]\nlisten = \"127.0.0.1:9464\"\n").unwrap();
        assert_eq!(c.metrics_listen(), Some("127.0.0.1:9464".parse().unwrap()));
        let c = Config::parse("[metrics]\nlisten = \"[::1]:9464\"\n").unwrap();
        assert_eq!(c.metrics_listen(), Some("[::1]:9464".parse().unwrap()));
        for addr in ["0.0.0.0:9464", "192.0.2.7:9464", "[::]:9464"] {
            let text = format!("[metrics]\nlisten = \"{addr}\"\n");
            let e = Config::parse(&text).unwrap_err();
            assert!(e.contains(addr) && e.contains("loopback"), "{e}");
            // Even where the web server itself may leave loopback.
            let text = format!("allow_non_loopback = true\n{text}");
            let e = Config::parse(&text).unwrap_err();
            assert!(e.contains(addr) && e.contains("loopback"), "{e}");
        }
        let e = Config::parse("[metrics]\nlisten = \"localhost:9464\"\n").unwrap_err();
        assert!(e.contains("localhost:9464"), "{e}");
        let e = Config::parse("[metrics]\nlisten = \"127.0.0.1:8080\"\n").unwrap_err();
        assert!(e.contains("must differ"), "{e}");
        let e = Config::parse("[metrics]\nport = 9464\n").unwrap_err();
        assert!(e.contains("port"), "{e}");
    }
}
