//! The captcha picture: the answer drawn with the bundled font, warped and under noise, as a
//! small PNG.
//!
//! Owns: drawing ([`render_png`]) and encoding. Must never: read a system font, or draw the
//! same challenge twice differently (the picture is a pure function of the answer and seed).

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, PxScale};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{CAPTCHA_HEIGHT, CAPTCHA_WIDTH};

/// The bundled font (DejaVu Sans Mono Bold; licence in `assets/fonts/LICENSE-DejaVu.txt`).
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono-Bold.ttf");

const W: usize = CAPTCHA_WIDTH as usize;
const H: usize = CAPTCHA_HEIGHT as usize;

pub(super) fn font() -> Option<&'static FontRef<'static>> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).ok())
        .as_ref()
}

/// Coverage ("ink", 0..=1) of a W×H picture.
struct Canvas {
    ink: Vec<f32>,
}

impl Canvas {
    fn new() -> Self {
        Canvas {
            ink: vec![0.0; W * H],
        }
    }

    fn add(&mut self, x: i32, y: i32, c: f32) {
        if x >= 0 && y >= 0 && (x as usize) < W && (y as usize) < H {
            let p = &mut self.ink[y as usize * W + x as usize];
            *p = p.max(c);
        }
    }

    fn erase(&mut self, x: i32, y: i32, c: f32) {
        if x >= 0 && y >= 0 && (x as usize) < W && (y as usize) < H {
            let p = &mut self.ink[y as usize * W + x as usize];
            *p = p.min(1.0 - c);
        }
    }

    /// An antialiased disc of radius `r` centred on (`cx`, `cy`), inked or erased.
    fn disc(&mut self, cx: f32, cy: f32, r: f32, erase: bool) {
        let x0 = (cx - r - 1.0).floor() as i32;
        let x1 = (cx + r + 1.0).ceil() as i32;
        let y0 = (cy - r - 1.0).floor() as i32;
        let y1 = (cy + r + 1.0).ceil() as i32;
        for y in y0..=y1 {
            for x in x0..=x1 {
                let dx = x as f32 + 0.5 - cx;
                let dy = y as f32 + 0.5 - cy;
                let c = (r + 0.5 - (dx * dx + dy * dy).sqrt()).clamp(0.0, 1.0);
                if c > 0.0 {
                    if erase {
                        self.erase(x, y, c);
                    } else {
                        self.add(x, y, c);
                    }
                }
            }
        }
    }

    /// A quadratic Bézier stroke from `a` to `b` bent towards `c`.
    fn curve(&mut self, a: (f32, f32), c: (f32, f32), b: (f32, f32), r: f32) {
        let len = dist(a, c) + dist(c, b);
        let steps = (len * 1.5).ceil().max(1.0) as usize;
        for i in 0..=steps {
            let t = i as f32 / steps as f32;
            let u = 1.0 - t;
            let x = u * u * a.0 + 2.0 * u * t * c.0 + t * t * b.0;
            let y = u * u * a.1 + 2.0 * u * t * c.1 + t * t * b.1;
            self.disc(x, y, r, false);
        }
    }
}

fn dist(a: (f32, f32), b: (f32, f32)) -> f32 {
    ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
}

/// Bilinear sample of a `w`×`h` coverage buffer at (`x`, `y`) in pixel-centre coordinates
/// (pixel (i, j) has its centre at (i, j)); outside is empty.
fn sample(buf: &[f32], w: usize, h: usize, x: f32, y: f32) -> f32 {
    let x0 = x.floor();
    let y0 = y.floor();
    let tx = x - x0;
    let ty = y - y0;
    let (xi, yi) = (x0 as i64, y0 as i64);
    let at = |i: i64, j: i64| -> f32 {
        if i < 0 || j < 0 || i >= w as i64 || j >= h as i64 {
            0.0
        } else {
            buf[j as usize * w + i as usize]
        }
    };
    let top = at(xi, yi) * (1.0 - tx) + at(xi + 1, yi) * tx;
    let bottom = at(xi, yi + 1) * (1.0 - tx) + at(xi + 1, yi + 1) * tx;
    top * (1.0 - ty) + bottom * ty
}

/// Draws `answer` with the randomness of `seed` and encodes it as a grayscale PNG.
pub(super) fn render_png(answer: &str, seed: [u8; 32]) -> Option<Vec<u8>> {
    let font = font()?;
    let mut rng = StdRng::from_seed(seed);
    let mut canvas = Canvas::new();

    // A gentle wave over the whole text, so no two glyphs share one straight baseline: the
    // glyph at (x, y) is drawn from (x + ax·sin(y·fx + px), y + ay·sin(x·fy + py)).
    let ax: f32 = rng.random_range(1.0..2.5);
    let ay: f32 = rng.random_range(1.0..2.5);
    let fx = std::f32::consts::TAU / rng.random_range(24.0..44.0);
    let fy = std::f32::consts::TAU / rng.random_range(50.0..90.0);
    let (px, py) = (
        rng.random_range(0.0..std::f32::consts::TAU),
        rng.random_range(0.0..std::f32::consts::TAU),
    );
    let wave_pad = 3.0;

    // Glyphs: each at its own size, height, slant, rotation and width.
    let n = answer.chars().count().max(1);
    let margin = 6.0;
    let room = W as f32 - 2.0 * margin;
    let slot = room / n as f32;
    let spacing = slot * rng.random_range(0.80..0.95);
    let mut x = margin + rng.random_range(0.0..=(room - spacing * n as f32)) + spacing / 2.0;
    let base_size = (slot / 0.62).min(47.0);
    for ch in answer.chars() {
        let size = base_size * rng.random_range(0.85..1.0);
        let glyph = font
            .glyph_id(ch)
            .with_scale_and_position(PxScale::from(size), point(0.0, 0.0));
        let Some(outlined) = font.outline_glyph(glyph) else {
            x += spacing;
            continue;
        };
        let bounds = outlined.px_bounds();
        let (gw, gh) = (bounds.width() as usize, bounds.height() as usize);
        let mut buf = vec![0.0f32; gw * gh];
        outlined.draw(|px, py, c| {
            let (px, py) = (px as usize, py as usize);
            if px < gw && py < gh {
                buf[py * gw + px] = c;
            }
        });

        // Forward map (about the glyph's centre): rotate · (squash x, shear x by y).
        let angle: f32 = rng.random_range(-0.30..0.30);
        let shear: f32 = rng.random_range(-0.35..0.35);
        let squash: f32 = rng.random_range(0.85..1.10);
        let (s, c) = angle.sin_cos();
        let m = [[c * squash, c * shear - s], [s * squash, s * shear + c]];
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        let inv = [
            [m[1][1] / det, -m[0][1] / det],
            [-m[1][0] / det, m[0][0] / det],
        ];
        let (hw, hh) = (gw as f32 / 2.0, gh as f32 / 2.0);
        let ex = m[0][0].abs() * hw + m[0][1].abs() * hh;
        let ey = m[1][0].abs() * hw + m[1][1].abs() * hh;

        // Destination centre: on a jittered baseline, kept inside the picture.
        let baseline = H as f32 * 0.72 + rng.random_range(-5.0..5.0);
        let mut cx = x + rng.random_range(-2.0..2.0);
        let mut cy = baseline + bounds.min.y + hh;
        cy = cy.min(H as f32 - 1.0 - ey).max(1.0 + ey);
        cx = cx.min(W as f32 - 1.0 - ex).max(1.0 + ex);

        // One resampling for transform and wave together, so the glyph stays crisp.
        let x0 = (cx - ex - wave_pad).floor().max(0.0) as i32;
        let x1 = (cx + ex + wave_pad).ceil() as i32;
        let y0 = (cy - ey - wave_pad).floor().max(0.0) as i32;
        let y1 = (cy + ey + wave_pad).ceil() as i32;
        for dy in y0..=y1.min(H as i32 - 1) {
            for dx in x0..=x1.min(W as i32 - 1) {
                let (fdx, fdy) = (dx as f32, dy as f32);
                let wx = fdx + ax * (fdy * fx + px).sin();
                let wy = fdy + ay * (fdx * fy + py).sin();
                let rx = wx + 0.5 - cx;
                let ry = wy + 0.5 - cy;
                let sx = inv[0][0] * rx + inv[0][1] * ry + hw - 0.5;
                let sy = inv[1][0] * rx + inv[1][1] * ry + hh - 0.5;
                let v = sample(&buf, gw, gh, sx, sy);
                if v > 0.0 {
                    canvas.add(dx, dy, v);
                }
            }
        }
        x += spacing;
    }

    // Strokes across the text, in the same ink, thinner than the glyphs' stems.
    let (w, h) = (W as f32, H as f32);
    for _ in 0..2 {
        let a = (
            rng.random_range(0.0..w * 0.2),
            rng.random_range(h * 0.2..h * 0.8),
        );
        let b = (
            rng.random_range(w * 0.8..w),
            rng.random_range(h * 0.2..h * 0.8),
        );
        let c = (
            rng.random_range(w * 0.3..w * 0.7),
            rng.random_range(-h * 0.3..h * 1.3),
        );
        canvas.curve(a, c, b, rng.random_range(0.6..1.0));
    }
    // A short arc somewhere.
    {
        let a = (rng.random_range(0.0..w), rng.random_range(0.0..h));
        let b = (rng.random_range(0.0..w), rng.random_range(0.0..h));
        let c = (rng.random_range(0.0..w), rng.random_range(0.0..h));
        canvas.curve(a, c, b, rng.random_range(0.5..0.9));
    }
    // Noise: dots of ink, and a few holes.
    for _ in 0..rng.random_range(50..80) {
        let (x, y) = (rng.random_range(0.0..w), rng.random_range(0.0..h));
        canvas.disc(x, y, rng.random_range(0.4..1.1), false);
    }
    for _ in 0..rng.random_range(25..45) {
        let (x, y) = (rng.random_range(0.0..w), rng.random_range(0.0..h));
        canvas.disc(x, y, rng.random_range(0.4..0.9), true);
    }

    // Dark ink on a light ground.
    let bg: f32 = rng.random_range(228.0..250.0);
    let fg: f32 = rng.random_range(15.0..60.0);
    let pixels: Vec<u8> = canvas
        .ink
        .iter()
        .map(|&v| (bg + (fg - bg) * v.clamp(0.0, 1.0)).round() as u8)
        .collect();
    encode_png(&pixels)
}

fn encode_png(pixels: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(8 * 1024);
    let mut encoder = png::Encoder::new(&mut out, CAPTCHA_WIDTH, CAPTCHA_HEIGHT);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Balanced);
    let mut writer = encoder.write_header().ok()?;
    writer.write_image_data(pixels).ok()?;
    writer.finish().ok()?;
    Some(out)
}
