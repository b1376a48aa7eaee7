//! Where video comes from. Each source feeds the [`SegmentStore`] through
//! [`crate::store::Ingest`] sessions (one per run: one ffmpeg process, one playlist).
//!
//! Owns: parsing a `--source` spec, and starting the matching source task.
//! Must never: serve anything to viewers, or write video to disk.

pub mod demo;
pub mod ffmpeg;
pub mod folder;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use crate::rendition::Ladder;
use crate::store::SegmentStore;

/// Default address the RTMP listener binds (OBS: `rtmp://127.0.0.1:1935/live`).
pub const DEFAULT_RTMP_ADDR: &str = "127.0.0.1:1935";

/// A source, as named on the command line or in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// The built-in demo clip, looped forever.
    Demo,
    /// A folder where OBS or ffmpeg writes an HLS playlist with fMP4 segments.
    Folder(PathBuf),
    /// A supervised ffmpeg writing fragmented MP4 to its stdout.
    Ffmpeg(ffmpeg::Preset),
    /// A supervised ffmpeg listening for RTMP (OBS "Start Streaming") and remuxing it.
    Rtmp(SocketAddr),
}

impl FromStr for SourceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        match kind {
            "demo" if rest.is_empty() => Ok(SourceSpec::Demo),
            "folder" if !rest.is_empty() => Ok(SourceSpec::Folder(PathBuf::from(rest))),
            "ffmpeg" => match rest.split_once(':').unwrap_or((rest, "")) {
                ("test", "") => Ok(SourceSpec::Ffmpeg(ffmpeg::Preset::Test)),
                ("screen", "") => Ok(SourceSpec::Ffmpeg(ffmpeg::Preset::Screen)),
                ("file", path) if !path.is_empty() => {
                    Ok(SourceSpec::Ffmpeg(ffmpeg::Preset::File(PathBuf::from(path))))
                }
                ("args", "") => Ok(SourceSpec::Ffmpeg(ffmpeg::Preset::Custom)),
                _ => Err(format!(
                    "unknown ffmpeg source '{s}': expected ffmpeg:test, ffmpeg:screen, ffmpeg:file:PATH or ffmpeg:args"
                )),
            },
            "rtmp" => {
                let addr = if rest.is_empty() { DEFAULT_RTMP_ADDR } else { rest };
                addr.parse()
                    .map(SourceSpec::Rtmp)
                    .map_err(|_| format!("bad RTMP listen address '{addr}': expected IP:PORT such as {DEFAULT_RTMP_ADDR}"))
            }
            _ => Err(format!(
                "unknown source '{s}': expected demo, folder:DIR, ffmpeg:test, ffmpeg:screen, ffmpeg:file:PATH, ffmpeg:args, rtmp or rtmp:IP:PORT"
            )),
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Demo => write!(f, "demo"),
            SourceSpec::Folder(p) => write!(f, "folder:{}", p.display()),
            SourceSpec::Ffmpeg(p) => write!(f, "ffmpeg:{p}"),
            SourceSpec::Rtmp(a) => write!(f, "rtmp:{a}"),
        }
    }
}

/// Settings shared by the ffmpeg-based sources.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// The ffmpeg program to run.
    pub ffmpeg_program: Option<PathBuf>,
    /// Input arguments replacing the preset's (everything before the output arguments).
    pub ffmpeg_input_args: Option<Vec<String>>,
    /// Output arguments replacing the default fragmented-MP4-to-stdout ones.
    pub ffmpeg_output_args: Option<Vec<String>>,
}

/// Runs the source until the process ends. Failures are logged and retried inside; this
/// never returns an error. What a source can do at once happens before this returns (the
/// demo's head start: a fresh server is live from its first request).
pub fn run(
    spec: SourceSpec,
    store: SegmentStore,
    options: SourceOptions,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    match spec {
        SourceSpec::Demo => Box::pin(demo::run(store)),
        other => Box::pin(run_other(other, store, options)),
    }
}

/// Runs the source and every rendition of the ladder: the demo's from their bundled clips,
/// any other source's by an ffmpeg per rendition fed from the source's store
/// ([`crate::transcoder`]). Like [`run`], never returns.
pub fn run_ladder(
    spec: SourceSpec,
    ladder: Ladder,
    options: SourceOptions,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    let source = ladder.source().store.clone();
    let mut parts = vec![run(spec.clone(), source.clone(), options.clone())];
    for rendition in ladder.made() {
        let part: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = match spec {
            SourceSpec::Demo => match demo::clip_for(&rendition.recipe) {
                Some(clip) => Box::pin(demo::run_clip(clip, rendition.store.clone())),
                None => continue,
            },
            _ => Box::pin(crate::transcoder::run(
                rendition.clone(),
                source.clone(),
                options
                    .ffmpeg_program
                    .clone()
                    .unwrap_or_else(|| ffmpeg::DEFAULT_PROGRAM.into())
                    .into(),
            )),
        };
        parts.push(part);
    }
    Box::pin(async move {
        run_all(parts).await;
    })
}

/// Polls every future until all are done (they never are: sources run forever).
async fn run_all(parts: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>) {
    let mut set = tokio::task::JoinSet::new();
    for p in parts {
        set.spawn(p);
    }
    while set.join_next().await.is_some() {}
}

async fn run_other(spec: SourceSpec, store: SegmentStore, options: SourceOptions) {
    match spec {
        SourceSpec::Demo => demo::run(store).await,
        SourceSpec::Folder(dir) => folder::run(dir, store).await,
        SourceSpec::Ffmpeg(preset) => {
            ffmpeg::Supervisor::new(ffmpeg::Command::for_preset(&preset, &options))
                .run(store)
                .await
        }
        SourceSpec::Rtmp(addr) => {
            ffmpeg::Supervisor::new(ffmpeg::Command::for_rtmp(addr, &options))
                .run(store)
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_name_the_value() {
        assert_eq!("demo".parse::<SourceSpec>().unwrap(), SourceSpec::Demo);
        assert_eq!(
            "folder:/tmp/x".parse::<SourceSpec>().unwrap(),
            SourceSpec::Folder("/tmp/x".into())
        );
        assert_eq!(
            "rtmp".parse::<SourceSpec>().unwrap(),
            SourceSpec::Rtmp(DEFAULT_RTMP_ADDR.parse().unwrap())
        );
        assert_eq!(
            "ffmpeg:file:/a:b.mp4".parse::<SourceSpec>().unwrap(),
            SourceSpec::Ffmpeg(ffmpeg::Preset::File("/a:b.mp4".into()))
        );
        let e = "webcam".parse::<SourceSpec>().unwrap_err();
        assert!(e.contains("'webcam'"), "{e}");
        let e = "rtmp:nowhere".parse::<SourceSpec>().unwrap_err();
        assert!(e.contains("'nowhere'"), "{e}");
    }
}
