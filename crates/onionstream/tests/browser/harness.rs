//! A real Firefox driven through geckodriver (WebDriver), headless, JavaScript off unless asked
//! for ([`Browser::start_with`]), with every background service of the browser switched off
//! and a proxy "trap" for any host that is not loopback. Each [`Browser`] has its own
//! geckodriver, Firefox and profile, all killed by pid when it is dropped (also when a test
//! panics).
//!
//! Used by several test files (`#[path = "browser/harness.rs"] mod harness;`), each using a
//! part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Map, Value};
use testkit::http;
use testkit::proc::{descendants, kill};

const GECKODRIVER_HELP: &str = "geckodriver is needed for the browser tests and was not found \
     (looked at $GECKODRIVER, $PATH and ~/.cargo/bin). Install it with:\n    \
     cargo install geckodriver --locked\n(or set GECKODRIVER=/path/to/geckodriver)";

const FIREFOX_HELP: &str = "Firefox is needed for the browser tests and was not found \
     (looked at $FIREFOX, then firefox-esr and firefox in $PATH). Install it with:\n    \
     apt-get install firefox-esr\n(or set FIREFOX=/path/to/firefox)";

/// Where whole-page screenshots and other artifacts go: `target/browser-artifacts/`.
pub fn artifacts_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target>/tmp`.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .join("browser-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes an artifact and prints its path.
pub fn save_artifact(name: &str, bytes: &[u8]) -> PathBuf {
    let path = artifacts_dir().join(name);
    std::fs::write(&path, bytes).unwrap();
    println!("artifact: {}", path.display());
    path
}

fn find_in_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// geckodriver's path; panics (the test fails) with how to install it.
pub fn geckodriver_path() -> PathBuf {
    if let Some(p) = std::env::var_os("GECKODRIVER") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "GECKODRIVER={} is not a file.\n{GECKODRIVER_HELP}",
            p.display()
        );
        return p;
    }
    if let Some(p) = find_in_path(&["geckodriver"]) {
        return p;
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(p) = home.map(|h| h.join("bin/geckodriver")) {
        if p.is_file() {
            return p;
        }
    }
    panic!("{GECKODRIVER_HELP}");
}

/// Firefox's path; panics (the test fails) with how to install it.
pub fn firefox_path() -> PathBuf {
    if let Some(p) = std::env::var_os("FIREFOX") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "FIREFOX={} is not a file.\n{FIREFOX_HELP}",
            p.display()
        );
        return p;
    }
    find_in_path(&["firefox-esr", "firefox"]).unwrap_or_else(|| panic!("{FIREFOX_HELP}"))
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP listener that Firefox uses as its proxy for every host that is not loopback. Any
/// connection to it means the browser tried to reach some other host; it records the first
/// line the browser sent (`CONNECT host:443 HTTP/1.1`, `GET http://host/ ...`) and closes.
pub struct ProxyTrap {
    pub port: u16,
    hits: Arc<Mutex<Vec<String>>>,
}

impl ProxyTrap {
    pub fn start() -> ProxyTrap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits: Arc<Mutex<Vec<String>>> = Default::default();
        let keep = hits.clone();
        // The thread ends with the test process; it only ever holds this listener.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut first = String::new();
                let _ = BufReader::new(&stream).read_line(&mut first);
                let line = if first.trim().is_empty() {
                    "(a connection that sent no request line; SOCKS?)".to_string()
                } else {
                    first.trim().to_string()
                };
                keep.lock().unwrap().push(line);
            }
        });
        ProxyTrap { port, hits }
    }

    /// The request lines of every connection the trap received so far, each with its count.
    pub fn hits(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for line in self.hits.lock().unwrap().iter() {
            match out.iter_mut().find(|(l, _)| l == line) {
                Some((_, n)) => *n += 1,
                None => out.push((line.clone(), 1)),
            }
        }
        out
    }
}

/// How a test browser is set up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// JavaScript on. Off (the default) is like Tor Browser at "Safest". On, the console
    /// messages of pages also go to geckodriver's log (see [`Browser::console_errors`]).
    pub javascript: bool,
}

/// The Firefox prefs of a test browser with JavaScript off: autoplay allowed, and no
/// background networking of any kind; whatever still tries to reach a non-loopback host
/// goes to the proxy trap at `trap_port`.
pub fn prefs(trap_port: u16) -> Map<String, Value> {
    prefs_with(trap_port, Options::default())
}

/// [`prefs`] for a browser set up as `options` says (with JavaScript on, pages' console
/// messages are printed to the log).
pub fn prefs_with(trap_port: u16, options: Options) -> Map<String, Value> {
    let p = json!({
        // What the tests are about: by default the page must work like Tor Browser at
        // "Safest" (JavaScript off).
        "javascript.enabled": options.javascript,
        // Pages' console messages (console.log, console.error, ...) are printed to Firefox's
        // stdout, which is geckodriver's log; see `Browser::console_errors`.
        "devtools.console.stdout.content": options.javascript,
        "media.autoplay.default": 0,
        "media.autoplay.blocking_policy": 0,
        // Every non-loopback host goes to the trap (HTTP, HTTPS, and SOCKS for the rest);
        // loopback stays direct (never hijacked).
        "network.proxy.type": 1,
        "network.proxy.http": "127.0.0.1",
        "network.proxy.http_port": trap_port,
        "network.proxy.ssl": "127.0.0.1",
        "network.proxy.ssl_port": trap_port,
        "network.proxy.socks": "127.0.0.1",
        "network.proxy.socks_port": trap_port,
        "network.proxy.socks_remote_dns": true,
        "network.proxy.share_proxy_settings": false,
        "network.proxy.no_proxies_on": "",
        "network.proxy.allow_hijacking_localhost": false,
        "network.proxy.failover_direct": false,
        // DNS: no DNS over HTTPS, no prefetching, no speculative connections.
        "network.trr.mode": 5,
        "network.dns.disablePrefetch": true,
        "network.dns.disablePrefetchFromHTTPS": true,
        "network.prefetch-next": false,
        "network.predictor.enabled": false,
        "network.http.speculative-parallel-limit": 0,
        "browser.urlbar.speculativeConnect.enabled": false,
        "browser.places.speculativeConnect.enabled": false,
        // Captive portal and connectivity checks.
        "network.captive-portal-service.enabled": false,
        "network.connectivity-service.enabled": false,
        // Updates (browser, add-ons, system add-ons, search engines, GMP plugins).
        "app.update.auto": false,
        "app.update.enabled": false,
        "app.update.disabledForTesting": true,
        "app.update.checkInstallTime": false,
        "extensions.update.enabled": false,
        "extensions.update.autoUpdateDefault": false,
        "extensions.getAddons.cache.enabled": false,
        "extensions.blocklist.enabled": false,
        "extensions.systemAddon.update.enabled": false,
        "extensions.systemAddon.update.url": "",
        "browser.search.update": false,
        "media.gmp-manager.url": "",
        "media.gmp-manager.updateEnabled": false,
        "media.gmp-gmpopenh264.enabled": false,
        "media.gmp-gmpopenh264.autoupdate": false,
        "media.gmp-widevinecdm.enabled": false,
        "media.eme.enabled": false,
        // Telemetry, health report, studies, Normandy, experiments, ping centre.
        "toolkit.telemetry.enabled": false,
        "toolkit.telemetry.unified": false,
        "toolkit.telemetry.archive.enabled": false,
        "toolkit.telemetry.server": "",
        "toolkit.telemetry.shutdownPingSender.enabled": false,
        "toolkit.telemetry.firstShutdownPing.enabled": false,
        "toolkit.telemetry.newProfilePing.enabled": false,
        "toolkit.telemetry.updatePing.enabled": false,
        "toolkit.telemetry.bhrPing.enabled": false,
        "datareporting.healthreport.uploadEnabled": false,
        "datareporting.policy.dataSubmissionEnabled": false,
        "datareporting.policy.dataSubmissionPolicyBypassNotification": true,
        "browser.crashReports.unsubmittedCheck.autoSubmit2": false,
        "app.shield.optoutstudies.enabled": false,
        "app.normandy.enabled": false,
        "app.normandy.api_url": "",
        "messaging-system.rsexperimentloader.enabled": false,
        "browser.ping-centre.telemetry": false,
        "browser.newtabpage.activity-stream.feeds.telemetry": false,
        "browser.newtabpage.activity-stream.telemetry": false,
        // Remote settings (what geckodriver's Marionette uses itself), region, geolocation.
        // (Release builds honour this only with MOZ_REMOTE_SETTINGS_DEVTOOLS=1, set below.)
        "services.settings.server": "data:,#remote-settings-dummy/v1",
        "browser.region.network.url": "",
        "browser.region.update.enabled": false,
        "geo.enabled": false,
        "geo.provider.network.url": "",
        "browser.search.geoip.url": "",
        // Safe Browsing (lists and remote lookups).
        "browser.safebrowsing.malware.enabled": false,
        "browser.safebrowsing.phishing.enabled": false,
        "browser.safebrowsing.blockedURIs.enabled": false,
        "browser.safebrowsing.downloads.enabled": false,
        "browser.safebrowsing.downloads.remote.enabled": false,
        "browser.safebrowsing.downloads.remote.url": "",
        "browser.safebrowsing.provider.google.updateURL": "",
        "browser.safebrowsing.provider.google.gethashURL": "",
        "browser.safebrowsing.provider.google4.updateURL": "",
        "browser.safebrowsing.provider.google4.gethashURL": "",
        "browser.safebrowsing.provider.mozilla.updateURL": "",
        "browser.safebrowsing.provider.mozilla.gethashURL": "",
        // Push, Firefox accounts and sync.
        "dom.push.enabled": false,
        "dom.push.connection.enabled": false,
        "dom.push.serverURL": "",
        "identity.fxaccounts.enabled": false,
        // Certificates: no OCSP, no CRLite or intermediate downloads.
        "security.OCSP.enabled": 0,
        "security.remote_settings.crlite_filters.enabled": false,
        "security.remote_settings.intermediates.enabled": false,
        // Start page, new tab, snippets, top sites, what's-new pages.
        "browser.startup.page": 0,
        "browser.startup.homepage": "about:blank",
        "browser.startup.homepage_override.mstone": "ignore",
        "startup.homepage_welcome_url": "about:blank",
        "startup.homepage_welcome_url.additional": "",
        "browser.newtabpage.enabled": false,
        "browser.newtabpage.activity-stream.feeds.topsites": false,
        "browser.newtabpage.activity-stream.feeds.section.topstories": false,
        "browser.newtabpage.activity-stream.feeds.snippets": false,
        "browser.topsites.contile.enabled": false,
        "browser.aboutHomeSnippets.updateUrl": "",
        "browser.shell.checkDefaultBrowser": false,
        "browser.uitour.enabled": false,
        "browser.discovery.enabled": false,
        "extensions.htmlaboutaddons.recommendations.enabled": false,
        "extensions.pocket.enabled": false,
        "browser.translations.enable": false,
        "browser.ml.enable": false,
    });
    let Value::Object(mut m) = p else {
        unreachable!()
    };
    if options.javascript {
        // geckodriver turns the browser's own console output on: off, the browser's errors
        // (e.g. about the dummy remote settings server above) stay out of the log, but for
        // its console instances (see `is_page_error`).
        m.insert("devtools.console.stdout.chrome".into(), json!(false));
    }
    m
}

/// One geckodriver with one Firefox session; both (and every process below them) are killed
/// by pid on drop.
pub struct Browser {
    pub client: Client,
    driver: Driver,
    _sound: Sound,
}

/// A sound server of the browser's own whose only output discards everything (PulseAudio
/// with a null sink, on a unix socket in the profile folder): test machines have no sound
/// card, and without an output Firefox fails an unmuted <audio> with a decode error (a muted
/// <video> opens none). Killed on drop.
struct Sound {
    child: Child,
    socket: PathBuf,
}

impl Sound {
    async fn start(dir: &std::path::Path) -> Sound {
        let socket = dir.join("pulse.sock");
        let child = Command::new("pulseaudio")
            .args([
                "-n",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--disable-shm=yes",
            ])
            .args([
                "--use-pid-file=no",
                "--log-target=stderr",
                "--log-level=error",
            ])
            .arg("--load=module-null-sink sink_name=discard")
            .arg(format!(
                "--load=module-native-protocol-unix socket={} auth-anonymous=1",
                socket.display()
            ))
            .env("HOME", dir)
            .env("XDG_RUNTIME_DIR", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("pulseaudio does not start ({e}): apt-get install pulseaudio")
            });
        let mut sound = Sound { child, socket };
        let start = Instant::now();
        while !sound.socket.exists() {
            if let Ok(Some(status)) = sound.child.try_wait() {
                panic!("pulseaudio exited at start ({status})");
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "pulseaudio made no socket within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sound
    }
}

impl Drop for Sound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running geckodriver, its profile folder and log; killed with all below it on drop.
struct Driver {
    child: Child,
    profile_root: PathBuf,
    log: PathBuf,
}

impl Driver {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Browser {
    /// Starts geckodriver on a free port and a headless Firefox session through it, with
    /// JavaScript off.
    pub async fn start(name: &str, trap: &ProxyTrap) -> Browser {
        Browser::start_with(name, trap, Options::default()).await
    }

    /// [`Browser::start`] with JavaScript on (and pages' console messages in [`Browser::log`]).
    pub async fn start_js(name: &str, trap: &ProxyTrap) -> Browser {
        Browser::start_with(name, trap, Options { javascript: true }).await
    }

    /// Starts geckodriver on a free port and a headless Firefox session through it, set up
    /// as `options` says.
    pub async fn start_with(name: &str, trap: &ProxyTrap, options: Options) -> Browser {
        let geckodriver = geckodriver_path();
        let firefox = firefox_path();
        let profile_root = std::env::temp_dir().join(format!(
            "onionstream-browser-{name}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&profile_root).unwrap();
        let sound = Sound::start(&profile_root).await;
        let pulse_server = format!("unix:{}", sound.socket.display());
        let log = profile_root.join("geckodriver.log");
        let mut last_error = String::new();
        // A free port can be taken between the check and geckodriver's bind: retry.
        for _ in 0..3 {
            let port = free_port();
            let log_file = std::fs::File::create(&log).unwrap();
            let driver = Command::new(&geckodriver)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .arg("--profile-root")
                .arg(&profile_root)
                .args(["--log", "info"])
                .env("MOZ_HEADLESS", "1")
                .env("PULSE_SERVER", &pulse_server)
                .env("MOZ_CRASHREPORTER_DISABLE", "1")
                .env("MOZ_REMOTE_SETTINGS_DEVTOOLS", "1")
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "{} does not start: {e}\n{GECKODRIVER_HELP}",
                        geckodriver.display()
                    )
                });
            let mut guard = Driver {
                child: driver,
                profile_root: profile_root.clone(),
                log: log.clone(),
            };
            // Wait for geckodriver to listen.
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let start = Instant::now();
            let mut listening = false;
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = guard.child.try_wait() {
                    break;
                }
                if TcpStream::connect(addr).is_ok() {
                    listening = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if !listening {
                last_error = format!("geckodriver did not listen on {addr}:\n{}", guard.log());
                drop(guard);
                continue;
            }
            let mut caps = Map::new();
            caps.insert("browserName".into(), json!("firefox"));
            caps.insert("acceptInsecureCerts".into(), json!(false));
            caps.insert(
                "moz:firefoxOptions".into(),
                json!({
                    "binary": firefox,
                    "args": ["-headless", "-no-remote"],
                    "prefs": prefs_with(trap.port, options),
                    "env": {
                        "MOZ_HEADLESS": "1",
                        "MOZ_CRASHREPORTER_DISABLE": "1",
                        // Release builds ignore `services.settings.server` without it.
                        "MOZ_REMOTE_SETTINGS_DEVTOOLS": "1",
                        // Sound goes to this browser's own sound server (see `Sound`).
                        "PULSE_SERVER": pulse_server,
                    },
                    "log": { "level": "warn" },
                }),
            );
            let client = tokio::time::timeout(
                Duration::from_secs(60),
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(caps)
                    .connect(&format!("http://{addr}")),
            )
            .await;
            match client {
                Ok(Ok(client)) => {
                    client.set_window_size(1280, 900).await.unwrap();
                    let browser = Browser {
                        client,
                        driver: guard,
                        _sound: sound,
                    };
                    if options.javascript {
                        browser.install_csp_reporter(addr).await;
                    }
                    return browser;
                }
                Ok(Err(e)) => {
                    panic!(
                        "no Firefox session ({}): {e}\n{}",
                        firefox.display(),
                        guard.log()
                    )
                }
                Err(_) => panic!("no Firefox session within 60 s:\n{}", guard.log()),
            }
        }
        panic!("{last_error}");
    }

    /// Installs (temporarily, unpacked) a tiny extension whose content script, in every page
    /// and frame from its very start, writes each `securitypolicyviolation` as a
    /// `console.error`. Firefox itself prints CSP violations only to the web console, never to
    /// stdout; this makes them reach geckodriver's log like the page's other errors.
    async fn install_csp_reporter(&self, driver: SocketAddr) {
        let dir = self.driver.profile_root.join("csp-reporter");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("manifest.json"), CSP_REPORTER_MANIFEST).unwrap();
        std::fs::write(dir.join("content.js"), CSP_REPORTER_SCRIPT).unwrap();
        let session = self
            .client
            .session_id()
            .await
            .unwrap()
            .expect("a session id");
        let body = json!({ "path": dir, "temporary": true }).to_string();
        let answer = http::exchange_within(
            driver,
            http::request(
                "POST",
                &format!("/session/{session}/moz/addon/install"),
                &driver.to_string(),
                &[
                    ("Content-Type", "application/json"),
                    ("Content-Length", &body.len().to_string()),
                ],
                body.as_bytes(),
            ),
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(
            answer.status,
            200,
            "geckodriver did not install the CSP reporter: {}\n{}",
            answer.text(),
            self.log()
        );
    }

    /// geckodriver's (and Firefox's) log so far.
    pub fn log(&self) -> String {
        self.driver.log()
    }

    /// The lines of [`Browser::log`] that are errors of the pages (see [`is_page_error`]):
    /// uncaught exceptions and unhandled rejections, `console.error` calls, and (in a browser
    /// with JavaScript on) Content-Security-Policy violations. Empty for a browser with
    /// JavaScript off, whose pages print nothing.
    pub fn console_errors(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| is_page_error(l))
            .map(str::to_string)
            .collect()
    }

    /// A PNG of the whole viewport, saved under `target/browser-artifacts/`.
    pub async fn save_screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        save_artifact(name, &png)
    }

    /// Ends the session (Firefox quits) and geckodriver; Drop does the killing either way.
    pub async fn quit(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.clone().close()).await;
        drop(self);
    }
}

/// Whether a line of geckodriver's log is an error of a page. What Firefox ESR prints:
///
/// - an uncaught exception or unhandled rejection (`browser.dom.window.dump.enabled`, on by
///   geckodriver): `JavaScript error: http://127.0.0.1:8080/static/app.js, line 3: TypeError:
///   x is undefined` (the browser's own scripts have `resource://`, `chrome://` or `moz-src:`
///   addresses there, and are left out);
/// - `console.error("boom", 42)` (`devtools.console.stdout.content`): `console.error: "boom"
///   42` (strings quoted, arguments separated by spaces; an object or a stack may continue on
///   the next lines, which are not returned). The browser's own console instances print even
///   with `devtools.console.stdout.chrome` off, as `console.error: RSLoader: ` + lines (a bare
///   name, then a colon): left out;
/// - a CSP violation, which Firefox prints nowhere but the web console: written by the
///   harness's reporter extension as `console.error: "Content-Security-Policy: enforce
///   img-src blocked http://other.example/x.png in http://127.0.0.1:8080/ line 2; policy:
///   default-src 'none'; ..."` (`blocked inline` for an inline script or style; `report`
///   instead of `enforce` for a report-only policy; `; sample: ...` at the end when the
///   policy has `'report-sample'`).
pub fn is_page_error(line: &str) -> bool {
    if let Some(rest) = line.strip_prefix("JavaScript error: ") {
        return !["resource://", "chrome://", "moz-src:", "jar:"]
            .iter()
            .any(|p| rest.starts_with(p));
    }
    let Some(rest) = line.strip_prefix("console.error: ") else {
        return false;
    };
    // The browser's own console instances always print, as `console.error: RSLoader: ...`:
    // a bare name and a colon, which a page's arguments (strings quoted) never start with.
    let prefix_len = rest
        .find(|ch: char| !(ch.is_ascii_alphanumeric() || "_.-".contains(ch)))
        .unwrap_or(rest.len());
    !(prefix_len > 0 && rest[prefix_len..].starts_with(':'))
}

const CSP_REPORTER_MANIFEST: &str = r#"{
  "manifest_version": 2,
  "name": "CSP violations to the console (onionstream tests)",
  "version": "1.0",
  "browser_specific_settings": { "gecko": { "id": "csp-reporter@onionstream.test" } },
  "content_scripts": [{
    "matches": ["<all_urls>"],
    "js": ["content.js"],
    "run_at": "document_start",
    "all_frames": true,
    "match_about_blank": true
  }]
}
"#;

const CSP_REPORTER_SCRIPT: &str = r#"document.addEventListener("securitypolicyviolation", (e) => {
  console.error("Content-Security-Policy: " + e.disposition + " " + e.effectiveDirective +
    " blocked " + (e.blockedURI || "(none)") + " in " + e.documentURI + " line " + e.lineNumber +
    "; policy: " + e.originalPolicy + (e.sample ? "; sample: " + e.sample : ""));
}, true);
"#;

impl Drop for Driver {
    fn drop(&mut self) {
        // Firefox and its content processes are below geckodriver; kill them all by pid.
        for pid in descendants(self.child.id()) {
            kill(pid);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile_root);
    }
}
