//! STUB — being written by a helper. Interface only.
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::SourceOptions;
use crate::store::SegmentStore;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preset {
    Test,
    Screen,
    File(PathBuf),
    Custom,
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Preset::Test => write!(f, "test"),
            Preset::Screen => write!(f, "screen"),
            Preset::File(p) => write!(f, "file:{}", p.display()),
            Preset::Custom => write!(f, "args"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Command {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl Command {
    pub fn for_preset(_preset: &Preset, _options: &SourceOptions) -> Self {
        Command {
            program: "ffmpeg".into(),
            args: vec![],
        }
    }
    pub fn display(&self) -> String {
        format!("{} {}", self.program.display(), self.args.join(" "))
    }
    pub fn for_rtmp(_addr: SocketAddr, _options: &SourceOptions) -> Self {
        Command {
            program: "ffmpeg".into(),
            args: vec![],
        }
    }
}

pub struct Supervisor {
    command: Command,
}

impl Supervisor {
    pub fn new(command: Command) -> Self {
        Supervisor { command }
    }
    pub async fn run(self, _store: SegmentStore) {
        let _ = self.command;
        std::future::pending::<()>().await
    }
}
