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
    /// How much narrower the top of the page is than its bottom, as a fraction (a phone held
    /// at an angle); 0: a flat scan.
    pub perspective: f32,
    /// JPEG quality of the file (1–100).
    pub jpeg_quality: u8,
    pub seed: u64,
}

impl Damage {
    pub const NONE: Damage = Damage {
        rotation: 0.0,
        noise: 0.0,
        blur: 0,
        perspective: 0.0,
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
    // Each output pixel takes the page pixel it sees: turned about the centre, and with the top
    // squeezed towards the middle for the perspective.
    let mut out = GrayImage::from_pixel(w, h, Luma([235]));
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f32 - cx, y as f32 - cy);
            let (mut sx, sy) = (cos * dx + sin * dy, -sin * dx + cos * dy);
            let squeeze = 1.0 - damage.perspective * (0.5 - (sy + cy) / h as f32);
            sx /= squeeze.max(0.5);
            let (px, py) = (sx + cx, sy + cy);
            if px >= 0.0 && py >= 0.0 && px < (w - 1) as f32 && py < (h - 1) as f32 {
                out.put_pixel(x, y, *page.get_pixel(px as u32, py as u32));
            }
        }
    }
    if damage.blur > 0 {
        let r = damage.blur as i32;
        let src = out.clone();
        for y in 0..h as i32 {
            for x in 0..w as i32 {
                let (mut sum, mut n) = (0u32, 0u32);
                for dy in -r..=r {
                    for dx in -r..=r {
                        let (qx, qy) = (x + dx, y + dy);
                        if qx >= 0 && qy >= 0 && qx < w as i32 && qy < h as i32 {
                            sum += u32::from(src.get_pixel(qx as u32, qy as u32).0[0]);
                            n += 1;
                        }
                    }
                }
                out.put_pixel(x as u32, y as u32, Luma([(sum / n.max(1)) as u8]));
            }
        }
    }
    if damage.noise > 0.0 {
        let mut rng = Lcg(damage.seed);
        for p in out.pixels_mut() {
            let v = f32::from(p.0[0]) + rng.normal() * damage.noise;
            p.0[0] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, damage.jpeg_quality)
        .encode_image(&out)
        .expect("JPEG");
    bytes
}
