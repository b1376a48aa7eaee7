//! The running source as a restartable task: what `onionstream ctl source restart` stops and
//! starts again.
//!
//! Owns: the one task that runs the configured source and the renditions made from it (the
//! quality ladder: `media::source::run_ladder`). Must never: run two sources into the
//! store at once (the old task is aborted before the new one starts; aborting drops its
//! ffmpeg child, which is killed on drop).

use std::sync::{Arc, Mutex};

use media::source::{SourceOptions, SourceSpec};
use media::Ladder;
use tokio::task::JoinHandle;

struct Running {
    spec: SourceSpec,
    options: SourceOptions,
    ladder: Ladder,
    task: Option<JoinHandle<()>>,
}

/// Handle to the source task. Cheap to clone.
#[derive(Clone)]
pub struct SourceTask {
    running: Arc<Mutex<Running>>,
}

impl SourceTask {
    /// Starts `spec` feeding the ladder's source store, and the ladder's renditions. Must be
    /// called inside the tokio runtime.
    pub fn start(spec: SourceSpec, ladder: Ladder, options: SourceOptions) -> SourceTask {
        let task = tokio::spawn(media::source::run_ladder(
            spec.clone(),
            ladder.clone(),
            options.clone(),
        ));
        SourceTask {
            running: Arc::new(Mutex::new(Running {
                spec,
                options,
                ladder,
                task: Some(task),
            })),
        }
    }

    /// The source, as given on the command line or in the config.
    pub fn spec(&self) -> String {
        self.lock().spec.to_string()
    }

    /// Stops the source and starts it again (a new ingest session: viewers see a splice, or a
    /// new epoch if the codec settings changed).
    pub fn restart(&self) {
        let mut r = self.lock();
        if let Some(task) = r.task.take() {
            task.abort();
        }
        tracing::info!("source: restarting {} (asked by the console)", r.spec);
        r.task = Some(tokio::spawn(media::source::run_ladder(
            r.spec.clone(),
            r.ladder.clone(),
            r.options.clone(),
        )));
    }

    /// Stops the source for good (the server is stopping); an ffmpeg it ran is killed.
    pub fn stop(&self) {
        if let Some(task) = self.lock().task.take() {
            task.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}
