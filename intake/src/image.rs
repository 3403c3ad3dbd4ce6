//! Photos and scans (JPEG, PNG): decoded with limits on dimensions and memory, then re-encoded,
//! so that metadata (EXIF: place, device) is stripped and anything hidden after the image data
//! is destroyed. A file that is also a ZIP archive (a polyglot) is refused outright.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};

use crate::Kind;

/// The limits an image must respect.
#[derive(Debug, Clone, Copy)]
pub struct ImagePolicy {
    pub max_width: u32,
    pub max_height: u32,
    /// The most memory the decoder may allocate.
    pub max_alloc: u64,
}

impl Default for ImagePolicy {
    fn default() -> Self {
        ImagePolicy {
            max_width: 12_000,
            max_height: 12_000,
            max_alloc: 512 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRefusal {
    Unreadable,
    TooLarge { width: u32, height: u32 },
    Polyglot,
}

impl ImageRefusal {
    pub fn message(&self) -> String {
        match self {
            ImageRefusal::Unreadable => "L'immagine è danneggiata o incompleta e non si riesce a leggere. Scatta di nuovo la foto o salvala ancora, poi ricaricala.".into(),
            ImageRefusal::TooLarge { width, height } => format!("L'immagine è di {width}×{height} pixel, troppo grande. Riducila (per esempio a 4000 pixel di lato) e ricaricala."),
            ImageRefusal::Polyglot => "Il file contiene altri dati nascosti oltre all'immagine, che non accettiamo per sicurezza. Salva di nuovo la foto dall'app di galleria e ricaricala.".into(),
        }
    }
}

/// An accepted image, re-encoded in its own format.
#[derive(Debug, Clone)]
pub struct ImageReport {
    pub width: u32,
    pub height: u32,
    pub clean: Vec<u8>,
}

/// A ZIP local-file header anywhere: a JPEG or PNG has no reason to carry one.
fn carries_zip(bytes: &[u8]) -> bool {
    bytes.windows(4).any(|w| w == b"PK\x03\x04")
}

pub fn inspect(
    bytes: &[u8],
    kind: Kind,
    policy: &ImagePolicy,
) -> Result<ImageReport, ImageRefusal> {
    if carries_zip(bytes) {
        return Err(ImageRefusal::Polyglot);
    }
    let format = match kind {
        Kind::Png => ImageFormat::Png,
        _ => ImageFormat::Jpeg,
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(policy.max_width);
    limits.max_image_height = Some(policy.max_height);
    limits.max_alloc = Some(policy.max_alloc);
    reader.limits(limits);
    // The declared size first: a header that promises 100000×100000 is refused before decoding.
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|_| ImageRefusal::Unreadable)?;
    if width > policy.max_width || height > policy.max_height {
        return Err(ImageRefusal::TooLarge { width, height });
    }
    let decoded = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => ImageRefusal::TooLarge { width, height },
        _ => ImageRefusal::Unreadable,
    })?;
    let mut clean = Vec::new();
    decoded
        .write_to(&mut Cursor::new(&mut clean), format)
        .map_err(|_| ImageRefusal::Unreadable)?;
    Ok(ImageReport {
        width,
        height,
        clean,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(width, height, image::Rgb([200, 10, 10]));
        let mut out = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap_or_else(|_| unreachable!());
        out
    }

    #[test]
    fn a_clean_image_is_re_encoded() {
        let bytes = png(30, 20);
        let report = inspect(&bytes, Kind::Png, &ImagePolicy::default())
            .unwrap_or_else(|e| unreachable!("{e:?}"));
        assert_eq!((report.width, report.height), (30, 20));
        assert!(report.clean.starts_with(b"\x89PNG"));
    }

    #[test]
    fn a_polyglot_and_a_huge_declared_size_are_refused() {
        let mut bytes = png(4, 4);
        bytes.extend_from_slice(b"PK\x03\x04rest of an archive");
        assert_eq!(
            inspect(&bytes, Kind::Png, &ImagePolicy::default()).err(),
            Some(ImageRefusal::Polyglot)
        );
        // A PNG header declaring 100000×100000 pixels.
        let mut huge = png(1, 1);
        huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        assert!(matches!(
            inspect(&huge, Kind::Png, &ImagePolicy::default()),
            Err(ImageRefusal::TooLarge { .. }) | Err(ImageRefusal::Unreadable)
        ));
    }

    #[test]
    fn truncated_images_never_panic() {
        let bytes = png(50, 50);
        for cut in (0..bytes.len()).step_by(5) {
            let _ = inspect(&bytes[..cut], Kind::Png, &ImagePolicy::default());
        }
    }
}
