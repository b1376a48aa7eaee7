//! Name colours: parsing `#rrggbb`, WCAG contrast, and the colour each user gets by default.
//!
//! Owns: colour arithmetic. Must never: search without a bound (the seed's colour search could
//! loop forever and cost seconds per new viewer); every function here is O(1).

use std::fmt;

/// A colour in sRGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Colour(pub u8, pub u8, pub u8);

/// The chat's background (the `--panel` colour of the stylesheet). Contrast is measured
/// against it.
pub const CHAT_BACKGROUND: Colour = Colour(0x18, 0x18, 0x1b);
/// Contrast a chosen name colour must have against [`CHAT_BACKGROUND`] (anonstream's figure).
pub const MIN_CUSTOM_CONTRAST: f64 = 3.0;
/// Contrast every derived (default) name colour has against [`CHAT_BACKGROUND`].
pub const DERIVED_CONTRAST: f64 = 4.5;
/// Contrast a tripcode's background has against [`CHAT_BACKGROUND`].
pub const TRIPCODE_CONTRAST: f64 = 5.0;

/// Why a colour was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ColourError {
    #[error("a colour is written #rrggbb (six hex digits)")]
    Format,
    #[error(
        "that colour is too hard to read on the chat background (contrast {found:.1}, at least {MIN_CUSTOM_CONTRAST:.1} needed)"
    )]
    LowContrast { found: f64 },
}

impl Colour {
    /// Parses `#rrggbb` (case-insensitive).
    pub fn parse(s: &str) -> Result<Colour, ColourError> {
        let hex = s.trim().strip_prefix('#').ok_or(ColourError::Format)?;
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ColourError::Format);
        }
        let byte =
            |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| ColourError::Format);
        Ok(Colour(byte(0)?, byte(2)?, byte(4)?))
    }

    /// Parses a colour a user chose, and checks it is readable on the chat background.
    pub fn parse_custom(s: &str) -> Result<Colour, ColourError> {
        let c = Colour::parse(s)?;
        let found = c.contrast(CHAT_BACKGROUND);
        if found < MIN_CUSTOM_CONTRAST {
            return Err(ColourError::LowContrast { found });
        }
        Ok(c)
    }

    /// WCAG relative luminance.
    pub fn luminance(self) -> f64 {
        fn channel(c: u8) -> f64 {
            let c = f64::from(c) / 255.0;
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        }
        0.2126 * channel(self.0) + 0.7152 * channel(self.1) + 0.0722 * channel(self.2)
    }

    /// WCAG contrast ratio (1 to 21).
    pub fn contrast(self, other: Colour) -> f64 {
        let (a, b) = (self.luminance(), other.luminance());
        let (hi, lo) = if a > b { (a, b) } else { (b, a) };
        (hi + 0.05) / (lo + 0.05)
    }

    /// A colour from hue (0..360), saturation and lightness (0..1).
    pub fn from_hsl(h: f64, s: f64, l: f64) -> Colour {
        let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
        let hp = (h.rem_euclid(360.0)) / 60.0;
        let x = c * (1.0 - (hp % 2.0 - 1.0).abs());
        let (r, g, b) = match hp as u32 {
            0 => (c, x, 0.0),
            1 => (x, c, 0.0),
            2 => (0.0, c, x),
            3 => (0.0, x, c),
            4 => (x, 0.0, c),
            _ => (c, 0.0, x),
        };
        let m = l - c / 2.0;
        let to = |v: f64| ((v + m).clamp(0.0, 1.0) * 255.0).round() as u8;
        Colour(to(r), to(g), to(b))
    }

    /// A colour derived from `seed` (e.g. a hash) with at least `contrast` against `background`
    /// (which must be dark, as the chat's is). Hue and saturation come from the seed; lightness
    /// rises in at most 12 fixed steps until the contrast is met, and white ends the search.
    pub fn derived(seed: &[u8], contrast: f64, background: Colour) -> Colour {
        let b = |i: usize| f64::from(seed.get(i).copied().unwrap_or(0));
        let hue = (b(0) * 256.0 + b(1)) / 65536.0 * 360.0;
        let saturation = 0.55 + b(2) / 255.0 * 0.4;
        let mut lightness = 0.5 + b(3) / 255.0 * 0.15;
        for _ in 0..12 {
            let c = Colour::from_hsl(hue, saturation, lightness);
            if c.contrast(background) >= contrast {
                return c;
            }
            lightness = (lightness + 0.04).min(1.0);
        }
        Colour(0xff, 0xff, 0xff)
    }

    /// Black or white, whichever reads better on `self`.
    pub fn best_text(self) -> Colour {
        let black = Colour(0, 0, 0);
        let white = Colour(0xff, 0xff, 0xff);
        if self.contrast(black) >= self.contrast(white) {
            black
        } else {
            white
        }
    }
}

impl fmt::Display for Colour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_parse_and_print_as_hex() {
        assert_eq!(Colour::parse("#A970ff").unwrap(), Colour(0xa9, 0x70, 0xff));
        assert_eq!(Colour(0xa9, 0x70, 0xff).to_string(), "#a970ff");
        for bad in ["a970ff", "#a970f", "#a970fff", "#g970ff", "", "#", "#ééé"] {
            assert_eq!(Colour::parse(bad), Err(ColourError::Format), "{bad}");
        }
    }

    #[test]
    fn contrast_matches_wcag() {
        let black = Colour(0, 0, 0);
        let white = Colour(255, 255, 255);
        assert!((black.contrast(white) - 21.0).abs() < 0.01);
        assert!((white.contrast(white) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_dark_custom_colour_is_refused_with_its_contrast() {
        match Colour::parse_custom("#202020") {
            Err(ColourError::LowContrast { found }) => assert!(found < MIN_CUSTOM_CONTRAST),
            other => panic!("{other:?}"),
        }
        assert!(Colour::parse_custom("#ffcc00").is_ok());
    }

    #[test]
    fn every_derived_colour_is_readable_and_the_search_is_bounded() {
        let mut distinct = std::collections::HashSet::new();
        for i in 0u32..5000 {
            let seed = blake3::hash(&i.to_le_bytes());
            let c = Colour::derived(seed.as_bytes(), DERIVED_CONTRAST, CHAT_BACKGROUND);
            assert!(c.contrast(CHAT_BACKGROUND) >= DERIVED_CONTRAST, "{c}");
            distinct.insert(c);
        }
        // Colours tell users apart: thousands of seeds give many different colours.
        assert!(distinct.len() > 1000, "{}", distinct.len());
        // Even a background no colour can beat ends the search (white), never loops.
        let white = Colour(255, 255, 255);
        assert_eq!(Colour::derived(&[1, 2, 3, 4], 30.0, white), white);
    }

    #[test]
    fn text_on_a_colour_is_black_or_white_whichever_reads_better() {
        assert_eq!(Colour(250, 250, 0).best_text(), Colour(0, 0, 0));
        assert_eq!(Colour(20, 20, 90).best_text(), Colour(255, 255, 255));
    }
}
