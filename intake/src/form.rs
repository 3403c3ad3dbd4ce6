//! Reading back a standard paper form from a scan or a photo. The form carries a QR code (which
//! form, which version, which pratica) and four registration marks near the corners of the page.
//! The QR code is found and decoded first; its corners give a first estimate of where the page
//! lies in the image, which finds the four marks; the marks give the exact projective mapping from
//! the page to the image (rotation, scale, a phone's perspective). Each field's zone is then
//! straightened out of the image and read as one line with its character set, and the signature
//! box is checked for ink.
//!
//! Page coordinates are PDF points from the top-left corner of the page, y going down.

use image::GrayImage;
use serde::{Deserialize, Serialize};

use crate::ocr::{Engine, Mode, OcrError};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rect {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl Rect {
    pub fn center(&self) -> (f32, f32) {
        (self.x + self.w / 2.0, self.y + self.h / 2.0)
    }
}

/// Where things are on a form's page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Layout {
    /// The four registration marks (filled squares): top-left, top-right, bottom-right,
    /// bottom-left.
    pub marks: [Rect; 4],
    /// The QR code's square.
    pub qr: Rect,
    pub fields: Vec<Zone>,
    pub signature: Option<Rect>,
}

/// A field's box, and the characters it may hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Zone {
    pub id: String,
    pub rect: Rect,
    pub charset: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FieldReading {
    pub id: String,
    pub text: String,
    pub confidence: u8,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FormReading {
    /// The QR code's content.
    pub code: String,
    pub fields: Vec<FieldReading>,
    /// Whether the signature box holds ink (`None`: the form has no signature box).
    pub signed: Option<bool>,
    /// How much the page was turned in the image, in degrees.
    pub rotation: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum FormError {
    #[error("no QR code of a standard form was found")]
    NoCode,
    #[error("the QR code {0:?} is not of a form known here")]
    UnknownForm(String),
    #[error("the registration marks were not found")]
    NoMarks,
    #[error(transparent)]
    Ocr(#[from] OcrError),
}

/// A QR code found: content, corners, side in modules.
pub type FoundCode = (String, [(f32, f32); 4], usize);

/// The QR codes in `image`: their content, their corners (top-left, top-right, bottom-right,
/// bottom-left as the code sees them; half a module outside the code, as the detector gives them)
/// and their side in modules.
pub fn qr_codes(image: &GrayImage) -> Vec<FoundCode> {
    // As it is; then at half size, which averages away noise and JPEG blocks; then that
    // binarised. A photo that defeats one often gives way to the next.
    let found = decode_qr(image, 1.0);
    if !found.is_empty() {
        return found;
    }
    let half = half_size(image);
    let found = decode_qr(&half, 2.0);
    if !found.is_empty() {
        return found;
    }
    decode_qr(&binarise(&half), 2.0)
}

fn decode_qr(image: &GrayImage, scale: f32) -> Vec<FoundCode> {
    let (w, h) = image.dimensions();
    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(w as usize, h as usize, |x, y| {
            image.get_pixel(x as u32, y as u32).0[0]
        });
    prepared
        .detect_grids()
        .into_iter()
        .filter_map(|grid| {
            let corners = grid
                .bounds
                .map(|p| (p.x as f32 * scale, p.y as f32 * scale));
            grid.decode()
                .ok()
                .map(|(meta, content)| (content, corners, 17 + 4 * meta.version.0))
        })
        .collect()
}

/// The image at half its size, each pixel the mean of four.
fn half_size(image: &GrayImage) -> GrayImage {
    let (w, h) = (image.width() / 2, image.height() / 2);
    GrayImage::from_fn(w.max(1), h.max(1), |x, y| {
        let p = |dx: u32, dy: u32| {
            u32::from(
                image
                    .get_pixel(
                        (2 * x + dx).min(image.width() - 1),
                        (2 * y + dy).min(image.height() - 1),
                    )
                    .0[0],
            )
        };
        image::Luma([((p(0, 0) + p(1, 0) + p(0, 1) + p(1, 1)) / 4) as u8])
    })
}

/// The solution of the N linear equations whose augmented matrix is `a` (W = N + 1 columns), by
/// Gaussian elimination with partial pivoting; `None` when they have no single solution.
#[allow(clippy::needless_range_loop)] // row-and-column arithmetic reads best with indices
fn solve<const N: usize, const W: usize>(mut a: [[f64; W]; N]) -> Option<[f64; N]> {
    for col in 0..N {
        let pivot = (col..N).max_by(|&r, &s| a[r][col].abs().total_cmp(&a[s][col].abs()))?;
        if a[pivot][col].abs() < 1e-9 {
            return None;
        }
        a.swap(col, pivot);
        for row in 0..N {
            if row != col {
                let f = a[row][col] / a[col][col];
                for k in col..W {
                    a[row][k] -= f * a[col][k];
                }
            }
        }
    }
    let mut x = [0f64; N];
    for i in 0..N {
        x[i] = a[i][N] / a[i][i];
    }
    Some(x)
}

/// `image` in black and white at Otsu's threshold.
fn binarise(image: &GrayImage) -> GrayImage {
    let threshold = otsu(image);
    GrayImage::from_fn(image.width(), image.height(), |x, y| {
        image::Luma([if image.get_pixel(x, y).0[0] < threshold {
            0
        } else {
            255
        }])
    })
}

/// A projective mapping of the plane (the page to the image).
#[derive(Debug, Clone, Copy)]
pub struct Homography([f64; 9]);

impl Homography {
    /// The mapping that takes each `from` point to its `to` point; `None` when the points are
    /// degenerate (three in a line).
    pub fn from_points(from: [(f32, f32); 4], to: [(f32, f32); 4]) -> Option<Homography> {
        // h33 = 1; two equations per pair: 8 unknowns.
        let mut a = [[0f64; 9]; 8];
        for i in 0..4 {
            let (x, y) = (f64::from(from[i].0), f64::from(from[i].1));
            let (u, v) = (f64::from(to[i].0), f64::from(to[i].1));
            a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
            a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
        }
        let x = solve(a)?;
        Some(Homography([
            x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], 1.0,
        ]))
    }

    /// The affine mapping (no perspective) that best takes the `from` points to the `to` points,
    /// by least squares: steadier than [`Homography::from_points`] when the points are close
    /// together and the mapping is used far from them.
    #[allow(clippy::needless_range_loop)] // row-and-column arithmetic reads best with indices
    pub fn affine_from_points(from: &[(f32, f32)], to: &[(f32, f32)]) -> Option<Homography> {
        // Normal equations, the same for both rows: [Σxx Σxy Σx; Σxy Σyy Σy; Σx Σy n].
        let mut m = [[0f64; 3]; 3];
        let (mut bu, mut bv) = ([0f64; 3], [0f64; 3]);
        for (f, t) in from.iter().zip(to) {
            let p = [f64::from(f.0), f64::from(f.1), 1.0];
            for r in 0..3 {
                for c in 0..3 {
                    m[r][c] += p[r] * p[c];
                }
                bu[r] += p[r] * f64::from(t.0);
                bv[r] += p[r] * f64::from(t.1);
            }
        }
        let row = |b: [f64; 3]| {
            [
                [m[0][0], m[0][1], m[0][2], b[0]],
                [m[1][0], m[1][1], m[1][2], b[1]],
                [m[2][0], m[2][1], m[2][2], b[2]],
            ]
        };
        let u = solve(row(bu))?;
        let v = solve(row(bv))?;
        Some(Homography([
            u[0], u[1], u[2], v[0], v[1], v[2], 0.0, 0.0, 1.0,
        ]))
    }

    pub fn map(&self, (x, y): (f32, f32)) -> (f32, f32) {
        let h = &self.0;
        let (x, y) = (f64::from(x), f64::from(y));
        let d = h[6] * x + h[7] * y + h[8];
        (
            ((h[0] * x + h[1] * y + h[2]) / d) as f32,
            ((h[3] * x + h[4] * y + h[5]) / d) as f32,
        )
    }
}

fn sample(image: &GrayImage, (x, y): (f32, f32)) -> u8 {
    let (w, h) = image.dimensions();
    if x < 0.0 || y < 0.0 || x >= (w - 1) as f32 || y >= (h - 1) as f32 {
        return 255;
    }
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let p = |dx, dy| f32::from(image.get_pixel(x0 + dx, y0 + dy).0[0]);
    let top = p(0, 0) * (1.0 - fx) + p(1, 0) * fx;
    let bottom = p(0, 1) * (1.0 - fx) + p(1, 1) * fx;
    (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8
}

/// The page rectangle `rect`, straightened out of `image` at `scale` pixels per point, with a
/// white margin around it (Tesseract reads better with one).
pub fn rectify(image: &GrayImage, page_to_image: &Homography, rect: Rect, scale: f32) -> GrayImage {
    let margin = 12;
    let w = (rect.w * scale).round().max(1.0) as u32;
    let h = (rect.h * scale).round().max(1.0) as u32;
    let mut out = GrayImage::from_pixel(w + 2 * margin, h + 2 * margin, image::Luma([255]));
    for j in 0..h {
        for i in 0..w {
            let page = (
                rect.x + (i as f32 + 0.5) / scale,
                rect.y + (j as f32 + 0.5) / scale,
            );
            let v = sample(image, page_to_image.map(page));
            out.put_pixel(i + margin, j + margin, image::Luma([v]));
        }
    }
    out
}

/// Otsu's threshold of the image's histogram: what separates ink from paper.
fn otsu(image: &GrayImage) -> u8 {
    let mut histogram = [0u64; 256];
    for p in image.pixels() {
        histogram[usize::from(p.0[0])] += 1;
    }
    let total: u64 = histogram.iter().sum();
    let sum: f64 = histogram
        .iter()
        .enumerate()
        .map(|(i, &c)| i as f64 * c as f64)
        .sum();
    let (mut background, mut sum_background, mut best, mut threshold) = (0u64, 0f64, 0f64, 128u8);
    for (i, &count) in histogram.iter().enumerate() {
        background += count;
        if background == 0 {
            continue;
        }
        let foreground = total - background;
        if foreground == 0 {
            break;
        }
        sum_background += i as f64 * count as f64;
        let mean_b = sum_background / background as f64;
        let mean_f = (sum - sum_background) / foreground as f64;
        let between = background as f64 * foreground as f64 * (mean_b - mean_f).powi(2);
        if between > best {
            best = between;
            threshold = i as u8;
        }
    }
    threshold
}

/// The centre of the registration mark near `around`: among the blobs of dark pixels in the
/// square of side `2 * radius` around it, the one most like a filled square of `area` pixels
/// (text and noise nearby are other blobs); `None` when none is.
fn dark_centre(
    image: &GrayImage,
    around: (f32, f32),
    radius: f32,
    threshold: u8,
    area: f32,
) -> Option<(f32, f32)> {
    let (w, h) = image.dimensions();
    let x0 = (around.0 - radius).max(0.0) as u32;
    let y0 = (around.1 - radius).max(0.0) as u32;
    let x1 = ((around.0 + radius).max(0.0) as u32).min(w.saturating_sub(1));
    let y1 = ((around.1 + radius).max(0.0) as u32).min(h.saturating_sub(1));
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    let (ww, wh) = ((x1 - x0 + 1) as usize, (y1 - y0 + 1) as usize);
    let dark = |x: usize, y: usize| image.get_pixel(x0 + x as u32, y0 + y as u32).0[0] < threshold;
    let mut seen = vec![false; ww * wh];
    let mut best: Option<(f32, (f32, f32))> = None;
    let mut stack = Vec::new();
    for start in 0..ww * wh {
        if seen[start] || !dark(start % ww, start / ww) {
            continue;
        }
        // One blob: its pixel count, the sums of its coordinates, its bounding box.
        let (mut n, mut sx, mut sy) = (0f64, 0f64, 0f64);
        let (mut bx0, mut by0, mut bx1, mut by1) = (usize::MAX, usize::MAX, 0, 0);
        seen[start] = true;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % ww, i / ww);
            n += 1.0;
            sx += x as f64;
            sy += y as f64;
            (bx0, by0, bx1, by1) = (bx0.min(x), by0.min(y), bx1.max(x), by1.max(y));
            let neighbours = [
                (x > 0).then(|| i - 1),
                (x + 1 < ww).then(|| i + 1),
                (y > 0).then(|| i - ww),
                (y + 1 < wh).then(|| i + ww),
            ];
            for j in neighbours.into_iter().flatten() {
                if !seen[j] && dark(j % ww, j / ww) {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        let (bw, bh) = ((bx1 - bx0 + 1) as f32, (by1 - by0 + 1) as f32);
        let fill = n as f32 / (bw * bh);
        let squareness = bw.min(bh) / bw.max(bh);
        let size = (n as f32 / area).min(area / n as f32);
        // A filled square of about the right size: fill and squareness near 1, size near 1.
        if fill < 0.6 || squareness < 0.6 || size < 0.35 {
            continue;
        }
        let score = fill * squareness * size;
        let centre = (
            x0 as f32 + (sx / n) as f32 + 0.5,
            y0 as f32 + (sy / n) as f32 + 0.5,
        );
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, centre));
        }
    }
    best.map(|(_, c)| c)
}

/// Finds the page in `image` from its QR code and registration marks: the QR code's content and
/// the mapping from page points to image pixels. `layout_for` gives the layout of the form the
/// code names.
pub fn locate(
    image: &GrayImage,
    layout_for: &dyn Fn(&str) -> Option<Layout>,
) -> Result<(String, Layout, Homography), FormError> {
    let codes = qr_codes(image);
    let (code, corners, modules) = codes.into_iter().next().ok_or(FormError::NoCode)?;
    let layout = layout_for(&code).ok_or_else(|| FormError::UnknownForm(code.clone()))?;
    // The detector's corners are half a module outside the code.
    let half = layout.qr.w / modules.max(21) as f32 / 2.0;
    let q = Rect {
        x: layout.qr.x - half,
        y: layout.qr.y - half,
        w: layout.qr.w + 2.0 * half,
        h: layout.qr.h + 2.0 * half,
    };
    let qr_page = [
        (q.x, q.y),
        (q.x + q.w, q.y),
        (q.x + q.w, q.y + q.h),
        (q.x, q.y + q.h),
    ];
    let rough = Homography::affine_from_points(&qr_page, &corners).ok_or(FormError::NoMarks)?;
    // Pixels per point, roughly: the QR code's side in the image over its side on the page.
    let side = ((corners[1].0 - corners[0].0).hypot(corners[1].1 - corners[0].1)) / q.w;
    let threshold = otsu(image).clamp(60, 200);
    let mut found = [(0f32, 0f32); 4];
    let mut page = [(0f32, 0f32); 4];
    for (i, mark) in layout.marks.iter().enumerate() {
        let expected = rough.map(mark.center());
        // The QR code is small and far from the marks: its estimate of where they are can be off
        // by a few per cent of the page, hence the wide search.
        let radius = mark.w * side * 3.0;
        let area = (mark.w * side).powi(2);
        found[i] =
            dark_centre(image, expected, radius, threshold, area).ok_or(FormError::NoMarks)?;
        page[i] = mark.center();
    }
    let exact = Homography::from_points(page, found).ok_or(FormError::NoMarks)?;
    Ok((code, layout, exact))
}

/// Reads every field of the form in `image` with `engine`. `valid(field, text)` says whether a
/// value read can be right for its field (a codice fiscale's check character…): a field read
/// wrong is read again from a binarised copy of its zone, and the valid reading, or else the
/// surer one, is kept.
pub fn read(
    image: &GrayImage,
    layout_for: &dyn Fn(&str) -> Option<Layout>,
    engine: &mut Engine,
    valid: &dyn Fn(&str, &str) -> bool,
) -> Result<FormReading, FormError> {
    let (code, layout, h) = locate(image, layout_for)?;
    // 300 dpi: 300 / 72 pixels per point.
    let scale = 300.0 / 72.0;
    let mut fields = Vec::new();
    for zone in &layout.fields {
        let crop = rectify(image, &h, zone.rect, scale);
        let mode = Mode::Line {
            charset: zone.charset.as_deref(),
        };
        let mut reading = engine.read(&crop, 300, mode)?;
        if !valid(&zone.id, &reading.text) {
            let again = engine.read(&binarise(&crop), 300, mode)?;
            if valid(&zone.id, &again.text) || again.confidence > reading.confidence {
                reading = again;
            }
        }
        if !valid(&zone.id, &reading.text) {
            // Read as one word (a codice fiscale has no spaces).
            let word = engine.read(
                &crop,
                300,
                Mode::Word {
                    charset: zone.charset.as_deref(),
                },
            )?;
            if valid(&zone.id, &word.text) {
                reading = word;
            }
        }
        fields.push(FieldReading {
            id: zone.id.clone(),
            text: reading.text,
            confidence: reading.confidence,
        });
    }
    let signed = layout.signature.map(|r| {
        let inset = Rect {
            x: r.x + 4.0,
            y: r.y + 4.0,
            w: r.w - 8.0,
            h: r.h - 8.0,
        };
        let crop = rectify(image, &h, inset, 2.0);
        let dark = crop.pixels().filter(|p| p.0[0] < 110).count();
        dark as f32 / (crop.width() * crop.height()) as f32 > 0.004
    });
    let (ax, ay) = h.map((layout.marks[0].center().0, layout.marks[0].center().1));
    let (bx, by) = h.map(layout.marks[1].center());
    let rotation = (by - ay).atan2(bx - ax).to_degrees();
    Ok(FormReading {
        code,
        fields,
        signed,
        rotation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_homography_maps_its_four_points() {
        let from = [(0.0, 0.0), (100.0, 0.0), (100.0, 50.0), (0.0, 50.0)];
        let to = [(10.0, 20.0), (210.0, 30.0), (205.0, 130.0), (5.0, 118.0)];
        let h = Homography::from_points(from, to).unwrap();
        for (f, t) in from.iter().zip(to) {
            let (x, y) = h.map(*f);
            assert!(
                (x - t.0).abs() < 1e-3 && (y - t.1).abs() < 1e-3,
                "{x},{y} vs {t:?}"
            );
        }
        assert!(Homography::from_points(from, [(0.0, 0.0); 4]).is_none());
        let affine = Homography::affine_from_points(&from, &to).unwrap();
        let (x, y) = affine.map((50.0, 25.0));
        assert!((x - 107.5).abs() < 3.0 && (y - 74.5).abs() < 3.0, "{x},{y}");
    }

    #[test]
    fn otsu_splits_ink_from_paper() {
        let mut img = GrayImage::from_pixel(10, 10, image::Luma([240]));
        for x in 0..10 {
            img.put_pixel(x, 5, image::Luma([20]));
        }
        let t = otsu(&img);
        assert!((20..240).contains(&t), "{t}");
    }
}
