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

use crate::ocr::{Engine, Mode, OcrError, Reading};

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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FieldReading {
    pub id: String,
    pub text: String,
    pub confidence: u8,
    /// Other readings of the same box, from other preparations of its picture (light evened out,
    /// black and white, as photographed), for the checks to weigh against what is expected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<Reading>,
    /// The box holds no ink: nothing is written in it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blank: bool,
    /// The box's picture (PNG, base64, light evened out, at 150 dpi) when its reading is in doubt:
    /// for the person who checks it to see at a glance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
}

/// `image` as a PNG file, in base64.
fn png_base64(image: &GrayImage) -> Option<String> {
    use base64::Engine as _;
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
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
    /// The QR code of form `0` was read, but the page could not be straightened (its registration
    /// marks not found): the picture is the form, but its fields cannot be read.
    #[error("the registration marks of the form {0:?} were not found")]
    NoMarks(String),
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
    let found = decode_qr(&binarise(&half), 2.0);
    if !found.is_empty() {
        return found;
    }
    // A shadow across the code: each pixel against its own surroundings.
    let (w, h) = half.dimensions();
    if w < 2 || h < 2 {
        return Vec::new();
    }
    let dark = local_dark(&half, (0, 0, w - 1, h - 1), 31);
    let local = GrayImage::from_fn(w, h, |x, y| {
        image::Luma([if dark[(y * w + x) as usize] { 0 } else { 255 }])
    });
    decode_qr(&local, 2.0)
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

    /// The projective mapping that best takes the `from` points to the `to` points (four or more),
    /// by least squares on coordinates brought to about unit size; `None` when they are
    /// degenerate.
    #[allow(clippy::needless_range_loop)] // row-and-column arithmetic reads best with indices
    pub fn fit(from: &[(f32, f32)], to: &[(f32, f32)]) -> Option<Homography> {
        if from.len() < 4 || from.len() != to.len() {
            return None;
        }
        // Each side centred on its mean and scaled to a mean distance of 1 (Hartley).
        let normaliser = |points: &[(f32, f32)]| {
            let n = points.len() as f64;
            let (mx, my) = points.iter().fold((0.0, 0.0), |(a, b), p| {
                (a + f64::from(p.0) / n, b + f64::from(p.1) / n)
            });
            let d = points
                .iter()
                .map(|p| (f64::from(p.0) - mx).hypot(f64::from(p.1) - my))
                .sum::<f64>()
                / n;
            let k = if d > 0.0 { 1.0 / d } else { 1.0 };
            [k, 0.0, -k * mx, 0.0, k, -k * my, 0.0, 0.0, 1.0]
        };
        let (t1, t2) = (normaliser(from), normaliser(to));
        let apply = |t: &[f64; 9], p: &(f32, f32)| {
            (t[0] * f64::from(p.0) + t[2], t[4] * f64::from(p.1) + t[5])
        };
        let mut m = [[0f64; 9]; 8];
        for (f, t) in from.iter().zip(to) {
            let (x, y) = apply(&t1, f);
            let (u, v) = apply(&t2, t);
            for (row, b) in [
                ([x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y], u),
                ([0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y], v),
            ] {
                for r in 0..8 {
                    for c in 0..8 {
                        m[r][c] += row[r] * row[c];
                    }
                    m[r][8] += row[r] * b;
                }
            }
        }
        let h = solve(m)?;
        let hn = [h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], 1.0];
        // Back to pixels: T2⁻¹ · Hn · T1.
        let k2 = t2[0];
        let t2_inv = [
            1.0 / k2,
            0.0,
            -t2[2] / k2,
            0.0,
            1.0 / k2,
            -t2[5] / k2,
            0.0,
            0.0,
            1.0,
        ];
        let product = |a: &[f64; 9], b: &[f64; 9]| {
            let mut out = [0f64; 9];
            for r in 0..3 {
                for c in 0..3 {
                    out[r * 3 + c] = (0..3).map(|k| a[r * 3 + k] * b[k * 3 + c]).sum();
                }
            }
            out
        };
        let h = product(&t2_inv, &product(&hn, &t1));
        (h[8].abs() > 1e-12).then(|| Homography(h.map(|v| v / h[8])))
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
/// margin around it (Tesseract reads better with one) of the paper at its edge (so that the
/// light evened out later sees the same paper there).
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
    // The margin: the brightest of the nearest edge pixels around, as paper.
    let (ow, oh) = out.dimensions();
    let paper = |x: u32, y: u32, out: &GrayImage| {
        let (cx, cy) = (
            x.clamp(margin, margin + w - 1),
            y.clamp(margin, margin + h - 1),
        );
        let (x0, x1) = (
            cx.saturating_sub(6).max(margin),
            (cx + 6).min(margin + w - 1),
        );
        let (y0, y1) = (
            cy.saturating_sub(6).max(margin),
            (cy + 6).min(margin + h - 1),
        );
        (x0..=x1)
            .flat_map(|px| (y0..=y1).map(move |py| (px, py)))
            .map(|(px, py)| out.get_pixel(px, py).0[0])
            .max()
            .unwrap_or(255)
    };
    for y in 0..oh {
        for x in 0..ow {
            if x < margin || y < margin || x >= margin + w || y >= margin + h {
                let v = paper(x, y, &out);
                out.put_pixel(x, y, image::Luma([v]));
            }
        }
    }
    out
}

/// The greatest value within `r` pixels along one axis (`horizontal` or not), for each pixel.
fn max_along(image: &GrayImage, r: u32, horizontal: bool) -> GrayImage {
    let (w, h) = image.dimensions();
    GrayImage::from_fn(w, h, |x, y| {
        let (from, to, at) = if horizontal {
            (x.saturating_sub(r), (x + r).min(w - 1), y)
        } else {
            (y.saturating_sub(r), (y + r).min(h - 1), x)
        };
        let v = (from..=to)
            .map(|k| {
                let (px, py) = if horizontal { (k, at) } else { (at, k) };
                image.get_pixel(px, py).0[0]
            })
            .max()
            .unwrap_or(255);
        image::Luma([v])
    })
}

/// `image` with its light evened out: each pixel divided by the paper's brightness around it (the
/// brightest value nearby, which strokes narrower than the window do not reach), so a shadow or a
/// light falling off across a box leaves the paper white and the ink dark.
pub fn even_light(image: &GrayImage) -> GrayImage {
    let r = (image.height() / 5).clamp(6, 24);
    let paper = max_along(&max_along(image, r, true), r, false);
    let paper = image::imageops::blur(&paper, r as f32 / 2.0);
    GrayImage::from_fn(image.width(), image.height(), |x, y| {
        let v = f32::from(image.get_pixel(x, y).0[0]);
        let p = f32::from(paper.get_pixel(x, y).0[0]).max(24.0);
        image::Luma([(v / p * 255.0).round().clamp(0.0, 255.0) as u8])
    })
}

/// Whether a box (with its light evened out) holds no writing: no blob of ink is as tall as a
/// sixth of the box (a character is; noise is not) without being a line of the box's border, if
/// a little of it shows (as tall as the box, or a long thin stroke across it).
pub fn blank(even: &GrayImage) -> bool {
    let (w, h) = even.dimensions();
    let edge = 4;
    let (x0, ww) = (edge as usize, w.saturating_sub(2 * edge) as usize);
    let hh = h as usize;
    if ww == 0 {
        return true;
    }
    let dark = |x: usize, y: usize| even.get_pixel((x0 + x) as u32, y as u32).0[0] < 170;
    !blobs(ww, hh, dark).into_iter().any(|b| {
        let (bw, bh) = (b.right - b.left + 1, b.bottom - b.top + 1);
        let border = bh * 10 >= hh * 8 || bw >= ww / 3;
        b.n >= 15 && bh >= hh / 6 && bw >= 3 && !border
    })
}

/// A blob of connected (4-neighbour) dark pixels: its pixel count, the sums of its coordinates,
/// its bounding box.
struct Blob {
    n: usize,
    sum_x: f64,
    sum_y: f64,
    left: usize,
    top: usize,
    right: usize,
    bottom: usize,
}

/// The blobs of pixels for which `dark(x, y)` holds, in a `w` × `h` grid.
fn blobs(w: usize, h: usize, dark: impl Fn(usize, usize) -> bool) -> Vec<Blob> {
    let mut seen = vec![false; w * h];
    let mut stack = Vec::new();
    let mut found = Vec::new();
    for start in 0..w * h {
        if seen[start] || !dark(start % w, start / w) {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let mut blob = Blob {
            n: 0,
            sum_x: 0.0,
            sum_y: 0.0,
            left: w,
            top: h,
            right: 0,
            bottom: 0,
        };
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            blob.n += 1;
            blob.sum_x += x as f64;
            blob.sum_y += y as f64;
            (blob.left, blob.top) = (blob.left.min(x), blob.top.min(y));
            (blob.right, blob.bottom) = (blob.right.max(x), blob.bottom.max(y));
            let neighbours = [
                (x > 0).then(|| i - 1),
                (x + 1 < w).then(|| i + 1),
                (y > 0).then(|| i - w),
                (y + 1 < h).then(|| i + w),
            ];
            for j in neighbours.into_iter().flatten() {
                if !seen[j] && dark(j % w, j / w) {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        found.push(blob);
    }
    found
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

/// Which pixels of the rectangle `(x0, y0, x1, y1)` (inclusive) of `image` are dark by a local
/// threshold: below 80% of the mean of the `window`-sided square around them (an integral image
/// makes each mean one sum), row by row.
fn local_dark(image: &GrayImage, (x0, y0, x1, y1): (u32, u32, u32, u32), window: u32) -> Vec<bool> {
    let (w, h) = image.dimensions();
    let half = window / 2;
    let (ax, ay) = (x0.saturating_sub(half), y0.saturating_sub(half));
    let (bx, by) = ((x1 + half).min(w - 1), (y1 + half).min(h - 1));
    let (iw, ih) = ((bx - ax + 2) as usize, (by - ay + 2) as usize);
    // sums[(y + 1) * iw + (x + 1)]: the sum of the pixels above and left of (x, y), inclusive.
    let mut sums = vec![0u64; iw * ih];
    for y in 0..ih - 1 {
        let mut row = 0u64;
        for x in 0..iw - 1 {
            row += u64::from(image.get_pixel(ax + x as u32, ay + y as u32).0[0]);
            sums[(y + 1) * iw + x + 1] = sums[y * iw + x + 1] + row;
        }
    }
    let mut dark = Vec::with_capacity(((x1 - x0 + 1) * (y1 - y0 + 1)) as usize);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let (lx, ly) = (
                (x.saturating_sub(half).max(ax) - ax) as usize,
                (y.saturating_sub(half).max(ay) - ay) as usize,
            );
            let (hx, hy) = (
                ((x + half).min(bx) - ax + 1) as usize,
                ((y + half).min(by) - ay + 1) as usize,
            );
            let total =
                sums[hy * iw + hx] + sums[ly * iw + lx] - sums[ly * iw + hx] - sums[hy * iw + lx];
            let count = ((hx - lx) * (hy - ly)) as u64;
            let mean = total as f32 / count.max(1) as f32;
            dark.push(f32::from(image.get_pixel(x, y).0[0]) < 0.8 * mean);
        }
    }
    dark
}

/// The centre of the registration mark near `around`: among the blobs of dark pixels in the
/// square of side `2 * radius` around it, the one most like a filled square of `area` pixels
/// (text and noise nearby are other blobs); `None` when none is.
fn dark_centre(
    image: &GrayImage,
    around: (f32, f32),
    radius: f32,
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
    // A local threshold: darker than its surroundings (a square about three marks wide), so that
    // under uneven light or a shadow a mark is dark and the shaded paper is not.
    let side = area.sqrt();
    let dark = local_dark(image, (x0, y0, x1, y1), (3.0 * side).max(9.0) as u32);
    let dark = |x: usize, y: usize| dark[y * ww + x];
    let mut best: Option<(f32, (f32, f32))> = None;
    for blob in blobs(ww, wh, dark) {
        let n = blob.n as f64;
        let (bw, bh) = (
            (blob.right - blob.left + 1) as f32,
            (blob.bottom - blob.top + 1) as f32,
        );
        let fill = n as f32 / (bw * bh);
        let squareness = bw.min(bh) / bw.max(bh);
        let size = (n as f32 / area).min(area / n as f32);
        // A filled square of about the right size: fill and squareness near 1, size near 1.
        if fill < 0.6 || squareness < 0.6 || size < 0.35 {
            continue;
        }
        let centre = (
            x0 as f32 + (blob.sum_x / n) as f32 + 0.5,
            y0 as f32 + (blob.sum_y / n) as f32 + 0.5,
        );
        // Of two such squares, the nearer to where the mark should be.
        let off = (centre.0 - around.0).hypot(centre.1 - around.1) / radius;
        let score = fill * squareness * size / (1.0 + off * off);
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
    let unplaced = || FormError::NoMarks(code.clone());
    let rough = Homography::affine_from_points(&qr_page, &corners).ok_or_else(unplaced)?;
    // Pixels per point, roughly: the QR code's side in the image over its side on the page.
    let side = ((corners[1].0 - corners[0].0).hypot(corners[1].1 - corners[0].1)) / q.w;
    let area = |mark: &Rect| (mark.w * side).powi(2);
    let mut found: Vec<Option<(f32, f32)>> = layout
        .marks
        .iter()
        .map(|mark| {
            // The QR code is small and far from the marks: its estimate of where they are can be
            // off by a few per cent of the page (more in a photo in perspective), hence the wide
            // search.
            dark_centre(
                image,
                rough.map(mark.center()),
                mark.w * side * 5.0,
                area(mark),
            )
        })
        .collect();
    let page: Vec<(f32, f32)> = layout.marks.iter().map(Rect::center).collect();
    // The QR code's corners and the marks found so far, page to picture.
    let fit = |found: &[Option<(f32, f32)>]| {
        let (mut from, mut to) = (qr_page.to_vec(), corners.to_vec());
        for (p, f) in page.iter().zip(found) {
            if let Some(f) = f {
                from.push(*p);
                to.push(*f);
            }
        }
        Homography::fit(&from, &to)
    };
    // Marks missed (the perspective put them further from the QR code's estimate than the
    // search went): looked for again where the QR code and the marks found put them.
    if found.iter().any(Option::is_none) && found.iter().flatten().count() >= 2 {
        let fitted = fit(&found).ok_or_else(unplaced)?;
        for (mark, f) in layout.marks.iter().zip(found.iter_mut()) {
            if f.is_none() {
                *f = dark_centre(
                    image,
                    fitted.map(mark.center()),
                    mark.w * side * 2.5,
                    area(mark),
                );
            }
        }
    }
    if let [Some(a), Some(b), Some(c), Some(d)] = found[..] {
        let exact = Homography::from_points([page[0], page[1], page[2], page[3]], [a, b, c, d])
            .ok_or_else(unplaced)?;
        return Ok((code, layout, exact));
    }
    // One mark missing, where the others put it at the picture's edge or beyond (the page not
    // all in the picture, but its fields are): the three and the QR code place the page.
    if found.iter().flatten().count() == 3 {
        let fitted = fit(&found).ok_or_else(unplaced)?;
        let missing = found.iter().position(Option::is_none).unwrap_or(0);
        let mark = &layout.marks[missing];
        let (x, y) = fitted.map(mark.center());
        let (w, h) = image.dimensions();
        let edge = mark.w * side;
        if x < edge || y < edge || x > w as f32 - edge || y > h as f32 - edge {
            return Ok((code, layout, fitted));
        }
    }
    Err(unplaced())
}

/// A reading this sure, and valid for its field, is not tried again on other preparations.
const SURE: u8 = 80;

/// Reads every field of the form in `image` with `engine`. `valid(field, text)` says whether a
/// value read can be right for its field (a codice fiscale's check character…);
/// `confirms(code, field, text)` whether it is what is expected there (the pratica's value, the
/// first hypothesis), `None` when nothing is. A box with no ink is blank. Otherwise it is read
/// from its picture with the light evened out; a reading that does not confirm what is expected,
/// or (nothing expected) is not valid or not sure, is read again from that picture in black and
/// white, from the picture as photographed and sharpened (and, for a code, as one word): the
/// confirming reading, or else the valid and surest, is kept, the others come along as
/// alternatives for the checks.
pub fn read(
    image: &GrayImage,
    layout_for: &dyn Fn(&str) -> Option<Layout>,
    engine: &mut Engine,
    valid: &dyn Fn(&str, &str) -> bool,
    confirms: &dyn Fn(&str, &str, &str) -> Option<bool>,
) -> Result<FormReading, FormError> {
    let (code, layout, h) = locate(image, layout_for)?;
    // 300 dpi: 300 / 72 pixels per point.
    let scale = 300.0 / 72.0;
    let mut fields = Vec::new();
    for zone in &layout.fields {
        let crop = rectify(image, &h, zone.rect, scale);
        let even = even_light(&crop);
        if blank(&even) {
            fields.push(FieldReading {
                id: zone.id.clone(),
                text: String::new(),
                confidence: 100,
                blank: true,
                ..FieldReading::default()
            });
            continue;
        }
        let charset = zone.charset.as_deref();
        let line = Mode::Line { charset };
        let mut readings: Vec<Reading> = Vec::new();
        let confirmed = |r: &Reading| confirms(&code, &zone.id, &r.text) == Some(true);
        let expecting = confirms(&code, &zone.id, "").is_some();
        let preparations: [&dyn Fn() -> GrayImage; 4] = [
            &|| even.clone(),
            &|| binarise(&even),
            &|| crop.clone(),
            &|| image::imageops::unsharpen(&even, 1.5, 8),
        ];
        for (k, prepare) in preparations.iter().enumerate() {
            // The sharpened picture only when a value is expected and not yet seen.
            if k == 3 && !expecting {
                break;
            }
            let reading = engine.read(&prepare(), 300, line)?;
            let done = if expecting {
                confirmed(&reading)
            } else {
                reading.confidence >= SURE && valid(&zone.id, &reading.text)
            };
            readings.push(reading);
            if done {
                break;
            }
        }
        if !readings
            .iter()
            .any(|r| valid(&zone.id, &r.text) || confirmed(r))
            && charset.is_some()
        {
            // A code has no spaces: read as one word.
            readings.push(engine.read(&even, 300, Mode::Word { charset })?);
        }
        let best = readings
            .iter()
            .enumerate()
            .max_by_key(|(_, r)| (confirmed(r), valid(&zone.id, &r.text), r.confidence))
            .map_or(0, |(i, _)| i);
        let chosen = readings.remove(best);
        let doubtful = if expecting {
            !confirmed(&chosen)
        } else {
            chosen.confidence < SURE || !valid(&zone.id, &chosen.text)
        };
        let mut alternatives: Vec<Reading> = Vec::new();
        for r in readings {
            if r.text != chosen.text && !alternatives.iter().any(|a| a.text == r.text) {
                alternatives.push(r);
            }
        }
        fields.push(FieldReading {
            id: zone.id.clone(),
            text: chosen.text,
            confidence: chosen.confidence,
            alternatives,
            blank: false,
            evidence: doubtful.then(|| png_base64(&half_size(&even))).flatten(),
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
        // Least squares over more points finds the same mapping, from page points to pixels.
        let page = [
            (24.0, 24.0),
            (571.0, 24.0),
            (571.0, 818.0),
            (440.0, 60.0),
            (530.0, 150.0),
            (300.0, 400.0),
            (24.0, 818.0),
        ];
        let true_h = Homography::from_points(
            [page[0], page[1], page[2], page[6]],
            [
                (180.0, 160.0),
                (1560.0, 240.0),
                (1540.0, 2080.0),
                (120.0, 1990.0),
            ],
        )
        .unwrap();
        let pixels: Vec<(f32, f32)> = page.iter().map(|p| true_h.map(*p)).collect();
        let fitted = Homography::fit(&page[..6], &pixels[..6]).unwrap();
        let (x, y) = fitted.map(page[6]);
        assert!(
            (x - pixels[6].0).abs() < 0.5 && (y - pixels[6].1).abs() < 0.5,
            "{x},{y} vs {:?}",
            pixels[6]
        );
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
