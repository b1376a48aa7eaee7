//! The quality ladder: the renditions of the stream a viewer can choose from — the source as
//! it comes, a low-bitrate video, sound only — each with a store of its own.
//!
//! Owns: which renditions exist, what each one promises (its recipe), its store, and why it
//! is not available (its health). Must never: make media (the transcoder and the demo do),
//! or offer a rendition that has nothing to play: a viewer asking for one gets the source.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::store::{SegmentStore, StoreConfig};

/// The name of the rendition that is the source itself (the default quality).
pub const SOURCE: &str = "source";
/// The low-bitrate video rendition.
pub const LOW: &str = "low";
/// The sound-only rendition.
pub const AUDIO: &str = "audio";

/// What a rendition is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipe {
    /// The source, untouched.
    Source,
    /// Video scaled to `height` lines (at most; never scaled up), with sound.
    Video {
        height: u32,
        video_kbps: u32,
        audio_kbps: u32,
    },
    /// Sound only (AAC).
    Audio { kbps: u32 },
}

impl Recipe {
    /// The most this rendition should send (kbit/s, media only), if it promises a cap.
    pub fn cap_kbps(&self) -> Option<u32> {
        match self {
            Recipe::Source => None,
            Recipe::Video {
                video_kbps,
                audio_kbps,
                ..
            } => Some(video_kbps + audio_kbps),
            Recipe::Audio { kbps } => Some(*kbps),
        }
    }
}

/// Which renditions to make besides the source (`[renditions]` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LadderConfig {
    /// The low video rendition: `Recipe::Video`, or `None` for none.
    pub low: Option<Recipe>,
    /// The sound-only rendition: `Recipe::Audio`, or `None` for none.
    pub audio: Option<Recipe>,
    /// The ffmpeg that makes them (the demo's are bundled and need none).
    pub ffmpeg_program: PathBuf,
}

impl Default for LadderConfig {
    fn default() -> Self {
        LadderConfig {
            low: Some(Recipe::Video {
                height: 240,
                video_kbps: 200,
                audio_kbps: 48,
            }),
            audio: Some(Recipe::Audio { kbps: 48 }),
            ffmpeg_program: PathBuf::from(crate::source::ffmpeg::DEFAULT_PROGRAM),
        }
    }
}

impl LadderConfig {
    /// No renditions but the source.
    pub fn none() -> Self {
        LadderConfig {
            low: None,
            audio: None,
            ..LadderConfig::default()
        }
    }
}

/// How a made rendition is doing (the source's is always empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    /// Why it is not being made, when it is not (ffmpeg missing, the source has no sound...).
    pub problem: Option<String>,
    /// What making it costs: CPU of its ffmpeg, percent of one core, over the last
    /// measurement (none yet, or made without ffmpeg).
    pub cpu_percent: Option<f32>,
    /// ffmpeg runs started for it.
    pub runs: u64,
}

/// One rendition: its name, recipe and store. Cheap to clone.
#[derive(Clone)]
pub struct Rendition {
    pub name: &'static str,
    pub recipe: Recipe,
    pub store: SegmentStore,
    health: Arc<Mutex<Health>>,
}

impl Rendition {
    fn new(name: &'static str, recipe: Recipe, store: SegmentStore) -> Self {
        Rendition {
            name,
            recipe,
            store,
            health: Arc::default(),
        }
    }

    pub fn is_source(&self) -> bool {
        self.recipe == Recipe::Source
    }

    pub fn audio_only(&self) -> bool {
        matches!(self.recipe, Recipe::Audio { .. })
    }

    /// Whether it has something to play now.
    pub fn available(&self) -> bool {
        self.store.status().online
    }

    /// A label for people: "Source (720p)", "Low (240p)", "Audio only". The height is read
    /// from the stream itself, never promised.
    pub fn label(&self) -> String {
        let height = self
            .store
            .current_epoch()
            .and_then(|e| e.init.video_size())
            .map(|(_, h)| format!(" ({h}p)"))
            .unwrap_or_default();
        match self.recipe {
            Recipe::Source => format!("Source{height}"),
            Recipe::Video { .. } => format!("Low{height}"),
            Recipe::Audio { .. } => "Audio only".to_string(),
        }
    }

    pub fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes the health (the transcoder reports through this).
    pub fn set_health(&self, change: impl FnOnce(&mut Health)) {
        change(&mut self.health.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Every rendition, the source first. Cheap to clone.
#[derive(Clone)]
pub struct Ladder {
    renditions: Arc<Vec<Rendition>>,
}

impl Ladder {
    /// The source's store and a new store for each rendition the config asks for.
    pub fn new(source: SegmentStore, config: &LadderConfig, store_config: StoreConfig) -> Self {
        let mut renditions = vec![Rendition::new(SOURCE, Recipe::Source, source)];
        if let Some(low) = &config.low {
            renditions.push(Rendition::new(
                LOW,
                low.clone(),
                SegmentStore::new(store_config.clone()),
            ));
        }
        if let Some(audio) = &config.audio {
            renditions.push(Rendition::new(
                AUDIO,
                audio.clone(),
                SegmentStore::new(store_config),
            ));
        }
        Ladder {
            renditions: Arc::new(renditions),
        }
    }

    /// A ladder of the source alone.
    pub fn source_only(source: SegmentStore) -> Self {
        Ladder {
            renditions: Arc::new(vec![Rendition::new(SOURCE, Recipe::Source, source)]),
        }
    }

    pub fn source(&self) -> &Rendition {
        &self.renditions[0]
    }

    /// Every rendition, available or not, the source first.
    pub fn all(&self) -> &[Rendition] {
        &self.renditions
    }

    /// The renditions made from the source (all but the source).
    pub fn made(&self) -> impl Iterator<Item = &Rendition> {
        self.renditions.iter().skip(1)
    }

    pub fn get(&self, name: &str) -> Option<&Rendition> {
        self.renditions.iter().find(|r| r.name == name)
    }

    /// The renditions with something to play now, the source first.
    pub fn available(&self) -> Vec<&Rendition> {
        self.renditions.iter().filter(|r| r.available()).collect()
    }

    /// What a viewer asking for `q` gets: that rendition if it has something to play, else
    /// the source (an unknown or unavailable quality is never an error).
    pub fn choose(&self, q: Option<&str>) -> &Rendition {
        q.and_then(|q| self.get(q))
            .filter(|r| r.is_source() || r.available())
            .unwrap_or_else(|| self.source())
    }

    /// The next rendition down from `name` that a struggling viewer could switch to (low
    /// video, then sound only), if one is available.
    pub fn lower_than(&self, name: &str) -> Option<&Rendition> {
        let rank = |r: &Rendition| match r.recipe {
            Recipe::Source => 0,
            Recipe::Video { .. } => 1,
            Recipe::Audio { .. } => 2,
        };
        let from = self.get(name).map_or(0, rank);
        self.renditions
            .iter()
            .filter(|r| rank(r) > from && r.available())
            .min_by_key(|r| rank(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_or_unavailable_qualities_get_the_source() {
        let ladder = Ladder::new(
            SegmentStore::new(StoreConfig::default()),
            &LadderConfig::default(),
            StoreConfig::default(),
        );
        let names: Vec<_> = ladder.all().iter().map(|r| r.name).collect();
        assert_eq!(names, [SOURCE, LOW, AUDIO]);
        assert_eq!(ladder.choose(Some("nonsense")).name, SOURCE);
        assert_eq!(ladder.choose(None).name, SOURCE);
        // Nothing made yet: low is not offered.
        assert_eq!(ladder.choose(Some(LOW)).name, SOURCE);
        assert!(ladder.lower_than(SOURCE).is_none());
        let none = Ladder::new(
            SegmentStore::new(StoreConfig::default()),
            &LadderConfig::none(),
            StoreConfig::default(),
        );
        assert_eq!(none.all().len(), 1);
    }

    #[test]
    fn caps_add_up() {
        let low = LadderConfig::default().low.unwrap();
        assert_eq!(low.cap_kbps(), Some(248));
        assert_eq!(Recipe::Source.cap_kbps(), None);
    }
}
