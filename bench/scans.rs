//! Scans and phone photos of printed forms, made from the form's PDF: rendered by `pdftoppm` at a
//! resolution, then turned, blurred, noised, seen in perspective and saved as JPEG, as a real scan
//! or photo would be. Shared by the tests (`tests/documents.rs`) and the OCR benchmark, each of
//! which uses part of it.

#![allow(dead_code)]

use image::{GrayImage, Luma};

/// The PDF's first page as a grey image at `dpi`.
pub fn render(pdf: &[u8], dpi: u32) -> GrayImage {
    let dir = tempfile::tempdir().expect("temporary folder");
    let input = dir.path().join("modulo.pdf");
    std::fs::write(&input, pdf).expect("PDF written");
    let out = dir.path().join("pagina");
    let status = std::process::Command::new("pdftoppm")
        .args(["-r", &dpi.to_string(), "-gray", "-png", "-singlefile"])
        .arg(&input)
        .arg(&out)
        .status()
        .expect("pdftoppm (poppler-utils, installed by .ci/setup --tests)");
    assert!(status.success(), "pdftoppm failed");
    image::open(out.with_extension("png"))
        .expect("rendered page")
        .to_luma8()
}

/// How a page is spoiled.
#[derive(Debug, Clone, Copy)]
pub struct Damage {
    /// Degrees, clockwise.
    pub rotation: f32,
    /// The standard deviation of the noise added to each pixel (0–255 scale).
    pub noise: f32,
    /// Box-blur radius in pixels (0: none).
    pub blur: u32,
    /// A phone held at an angle: the page tilted back by this many degrees about its horizontal
    /// axis, seen by a pinhole camera one and a half page heights away (the top comes out
    /// narrower and shorter, as in a real photo); 0: a flat scan.
    pub tilt: f32,
    /// Uneven light: how much darker the far corner is than the near one (0: even; 0.5: half as
    /// bright).
    pub light: f32,
    /// A soft shadow across the page (a hand, the phone): how much light it takes away (0: none).
    pub shadow: f32,
    /// A faded copy: how much of the ink's darkness is lost (0: none; 0.6: ink at a light grey).
    pub fade: f32,
    /// The page photographed on a desk: the fraction of the picture's width the page takes (1:
    /// the page fills it, as a scan).
    pub on_desk: f32,
    /// Saved as a colour photo (warm paper, blue-black ink) rather than a grey scan.
    pub colour: bool,
    /// JPEG quality of the file (1–100).
    pub jpeg_quality: u8,
    pub seed: u64,
}

impl Damage {
    pub const NONE: Damage = Damage {
        rotation: 0.0,
        noise: 0.0,
        blur: 0,
        tilt: 0.0,
        light: 0.0,
        shadow: 0.0,
        fade: 0.0,
        on_desk: 1.0,
        colour: false,
        jpeg_quality: 90,
        seed: 1,
    };
}

/// A dark scribble in the page rectangle `(x, y, w, h)` (points), as a signature, on a page
/// rendered at `dpi`.
pub fn sign(page: &mut GrayImage, (x, y, w, h): (f32, f32, f32, f32), dpi: u32) {
    let s = dpi as f32 / 72.0;
    let steps = 400;
    for i in 0..steps {
        let t = i as f32 / steps as f32;
        let px = (x + w * (0.1 + 0.8 * t)) * s;
        let py = (y + h * (0.5 + 0.3 * (t * 25.0).sin())) * s;
        for dx in -2i32..=2 {
            for dy in -2i32..=2 {
                let (qx, qy) = (px as i32 + dx, py as i32 + dy);
                if qx >= 0 && qy >= 0 && (qx as u32) < page.width() && (qy as u32) < page.height() {
                    page.put_pixel(qx as u32, qy as u32, Luma([20]));
                }
            }
        }
    }
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as f32) / (1u64 << 31) as f32
    }

    /// About normal, mean 0, deviation 1 (sum of uniforms).
    fn normal(&mut self) -> f32 {
        (0..6).map(|_| self.next()).sum::<f32>() - 3.0
    }
}

/// `page` spoiled by `damage`, as the bytes of a JPEG file.
pub fn spoil(page: &GrayImage, damage: Damage) -> Vec<u8> {
    let (w, h) = page.dimensions();
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let (sin, cos) = damage.rotation.to_radians().sin_cos();
    let mut rng = Lcg(damage.seed);
    // On a desk the page is smaller than the picture and a little off centre.
    let scale = damage.on_desk.clamp(0.3, 1.0);
    let (offset_x, offset_y) = if scale < 1.0 {
        (
            (rng.next() - 0.5) * (1.0 - scale) * w as f32 * 0.6,
            (rng.next() - 0.5) * (1.0 - scale) * h as f32 * 0.6,
        )
    } else {
        (0.0, 0.0)
    };
    // A shadow: a band of a random direction, through a random point, with soft edges.
    let shadow_angle = rng.next() * std::f32::consts::PI;
    let (shadow_x, shadow_y) = (rng.next() * w as f32, rng.next() * h as f32);
    let shadow_width = (0.15 + 0.25 * rng.next()) * w as f32;
    // Uneven light: brightest at a random corner, darkest at the opposite one.
    let (near_x, near_y) = (
        if rng.next() < 0.5 { 0.0 } else { w as f32 },
        if rng.next() < 0.5 { 0.0 } else { h as f32 },
    );
    let diagonal = (w as f32).hypot(h as f32);
    let desk = |x: u32, y: u32, rng: &mut Lcg| {
        // Wood-like: stripes and grain, darker than paper.
        let stripe = ((y as f32 / 23.0 + (x as f32 / 140.0).sin() * 2.0).sin() + 1.0) * 14.0;
        80.0 + stripe + rng.normal() * 6.0
    };
    let mut out = vec![0f32; (w * h) as usize];
    for y in 0..h {
        for x in 0..w {
            // Back to the page: off the desk offset and scale, turned about the centre, and out of
            // the perspective.
            let (dx, dy) = (
                (x as f32 - cx - offset_x) / scale,
                (y as f32 - cy - offset_y) / scale,
            );
            let (tx, ty) = (cos * dx + sin * dy, -sin * dx + cos * dy);
            // The tilt, undone: the image point (tx, ty) sees the page point (sx, sy) of the plane
            // turned by `tilt` about the horizontal axis, from a distance `d`.
            let (ts, tc) = damage.tilt.to_radians().sin_cos();
            let d = 1.5 * h as f32;
            let sy = ty * d / (d * tc + ty * ts);
            let sx = tx * (d - sy * ts) / d;
            let (px, py) = (sx + cx, sy + cy);
            let inside = px >= 0.0 && py >= 0.0 && px < (w - 1) as f32 && py < (h - 1) as f32;
            let mut v = if inside {
                let ink = f32::from(page.get_pixel(px as u32, py as u32).0[0]);
                // A faded copy: the ink lighter, the paper a little grey.
                let paper = 235.0 - 15.0 * damage.fade;
                paper - (paper - ink) * (1.0 - damage.fade)
            } else if scale < 1.0 {
                desk(x, y, &mut rng)
            } else {
                235.0
            };
            let near = ((x as f32 - near_x).hypot(y as f32 - near_y) / diagonal).min(1.0);
            v *= 1.0 - damage.light * near;
            if damage.shadow > 0.0 {
                let (ux, uy) = (shadow_angle.cos(), shadow_angle.sin());
                let distance = ((x as f32 - shadow_x) * uy - (y as f32 - shadow_y) * ux).abs();
                let edge = ((shadow_width - distance) / (0.2 * shadow_width)).clamp(0.0, 1.0);
                v *= 1.0 - damage.shadow * edge;
            }
            out[(y * w + x) as usize] = v;
        }
    }
    if damage.blur > 0 {
        let r = damage.blur as i32;
        let src = out.clone();
        for y in 0..h as i32 {
            for x in 0..w as i32 {
                let (mut sum, mut n) = (0f32, 0f32);
                for dy in -r..=r {
                    for dx in -r..=r {
                        let (qx, qy) = (x + dx, y + dy);
                        if qx >= 0 && qy >= 0 && qx < w as i32 && qy < h as i32 {
                            sum += src[(qy as u32 * w + qx as u32) as usize];
                            n += 1.0;
                        }
                    }
                }
                out[(y as u32 * w + x as u32) as usize] = sum / n.max(1.0);
            }
        }
    }
    if damage.noise > 0.0 {
        for v in out.iter_mut() {
            *v += rng.normal() * damage.noise;
        }
    }
    let grey = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    let mut bytes = Vec::new();
    let mut encoder =
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, damage.jpeg_quality);
    if damage.colour {
        // Warm paper, blue-black ink: the darker a pixel, the bluer.
        let rgb = image::RgbImage::from_fn(w, h, |x, y| {
            let v = out[(y * w + x) as usize];
            let dark = (1.0 - v / 235.0).clamp(0.0, 1.0);
            image::Rgb([
                grey(v * 1.02 - 10.0 * dark),
                grey(v * 0.97),
                grey(v * 0.86 + 40.0 * dark),
            ])
        });
        encoder.encode_image(&rgb).expect("JPEG");
    } else {
        let img = GrayImage::from_fn(w, h, |x, y| Luma([grey(out[(y * w + x) as usize])]));
        encoder.encode_image(&img).expect("JPEG");
    }
    bytes
}
