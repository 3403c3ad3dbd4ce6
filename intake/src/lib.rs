//! Sportello intake: untrusted documents in, typed verdicts out.
//!
//! The code that touches hostile input, knowing nothing of HTTP or the database: the type decided
//! by the content (`sniff`), PDF inspection (`pdf`), images decoded with limits and re-encoded
//! (`image`), and `inspect`, which the portal runs in a child process with time and memory
//! limits (`sportello intake <in> <out>`, see `child`); OCR with Tesseract (`ocr`) and the reading
//! back of the standard paper forms (`form`: QR code, registration marks, zones, signature ink).

pub mod form;
pub mod image;
pub mod ocr;
pub mod pdf;
pub mod scan;

use serde::{Deserialize, Serialize};

/// The kinds of document accepted, decided by their first bytes, never by name or declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Pdf,
    Jpeg,
    Png,
}

impl Kind {
    pub fn content_type(self) -> &'static str {
        match self {
            Kind::Pdf => "application/pdf",
            Kind::Jpeg => "image/jpeg",
            Kind::Png => "image/png",
        }
    }

    /// The kind stored as its extension (`pdf`, `jpg`, `png`).
    pub fn from_extension(ext: &str) -> Option<Kind> {
        [Kind::Pdf, Kind::Jpeg, Kind::Png]
            .into_iter()
            .find(|k| k.extension() == ext)
    }

    pub fn extension(self) -> &'static str {
        match self {
            Kind::Pdf => "pdf",
            Kind::Jpeg => "jpg",
            Kind::Png => "png",
        }
    }
}

/// The kind of `bytes` by their signature.
pub fn sniff(bytes: &[u8]) -> Option<Kind> {
    if bytes.starts_with(b"%PDF-") {
        Some(Kind::Pdf)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Kind::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Kind::Png)
    } else {
        None
    }
}

/// The limits of one inspection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    pub pdf: pdf::PdfPolicy,
    pub image: image::ImagePolicy,
}

/// What became of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "esito", rename_all = "lowercase")]
pub enum Verdict {
    Accettato {
        kind: Kind,
        /// Pages of a PDF; 1 for an image.
        pages: usize,
        /// The text layer of a PDF, when it has one.
        text: Option<String>,
        /// True when the stored file is a re-encoded copy (images), not the original bytes.
        reencoded: bool,
        /// A scanned PDF's pages whose picture was taken out for OCR (see `scan_path`).
        #[serde(default)]
        scans: Vec<u32>,
    },
    Rifiutato {
        /// For the citizen, in Italian: what was wrong and what to do.
        motivo: String,
    },
}

pub const EMPTY: &str = "Il file è vuoto. Scegli di nuovo il documento e ricaricalo.";
pub const UNKNOWN: &str = "Il file non è un PDF, un JPEG o un PNG. Salva il documento in PDF, o fotografalo, e ricaricalo.";

/// What the inspection gives back besides the verdict.
#[derive(Debug, Default)]
pub struct Extracted {
    /// An image's clean copy, to store instead of the original.
    pub clean: Option<Vec<u8>>,
    /// A scanned PDF's page pictures (page number, grey PNG).
    pub scans: Vec<(u32, Vec<u8>)>,
}

/// Inspects `bytes`.
pub fn inspect(bytes: &[u8], policy: &Policy) -> (Verdict, Extracted) {
    let refuse = |motivo: String| (Verdict::Rifiutato { motivo }, Extracted::default());
    if bytes.is_empty() {
        return refuse(EMPTY.into());
    }
    match sniff(bytes) {
        None => refuse(UNKNOWN.into()),
        Some(Kind::Pdf) => match pdf::inspect(bytes, &policy.pdf, &policy.image) {
            Ok(report) => (
                Verdict::Accettato {
                    kind: Kind::Pdf,
                    pages: report.pages,
                    text: report.text,
                    reencoded: false,
                    scans: report.scans.iter().map(|(page, _)| *page).collect(),
                },
                Extracted {
                    clean: None,
                    scans: report.scans,
                },
            ),
            Err(refusal) => refuse(refusal.message()),
        },
        Some(kind) => match image::inspect(bytes, kind, &policy.image) {
            Ok(report) => (
                Verdict::Accettato {
                    kind,
                    pages: 1,
                    text: None,
                    reencoded: true,
                    scans: Vec::new(),
                },
                Extracted {
                    clean: Some(report.clean),
                    scans: Vec::new(),
                },
            ),
            Err(refusal) => refuse(refusal.message()),
        },
    }
}

/// Where the child writes the picture of a scanned PDF's `page`, beside `output`.
pub fn scan_path(output: &std::path::Path, page: u32) -> std::path::PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(format!("-pagina-{page}.png"));
    name.into()
}

/// The child process's work: reads `input`, writes the clean copy (if any) to `output` and a
/// scan's page pictures beside it (`scan_path`), and returns the verdict as one line of JSON for
/// the parent to read from stdout.
pub fn child(
    input: &std::path::Path,
    output: &std::path::Path,
    max_pages: usize,
) -> std::io::Result<String> {
    let bytes = std::fs::read(input)?;
    let mut policy = Policy::default();
    policy.pdf.max_pages = max_pages;
    let (verdict, extracted) = inspect(&bytes, &policy);
    if let Some(clean) = extracted.clean {
        std::fs::write(output, clean)?;
    }
    for (page, png) in extracted.scans {
        std::fs::write(scan_path(output, page), png)?;
    }
    serde_json::to_string(&verdict).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_comes_from_the_content() {
        assert_eq!(sniff(b"%PDF-1.7\n"), Some(Kind::Pdf));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(Kind::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nxxxx"), Some(Kind::Png));
        assert_eq!(sniff(b"MZ\x90\x00"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn empty_and_unknown_files_are_refused_with_a_message() {
        let (v, _) = inspect(b"", &Policy::default());
        assert_eq!(
            v,
            Verdict::Rifiutato {
                motivo: EMPTY.into()
            }
        );
        let (v, _) = inspect(b"<html>", &Policy::default());
        assert_eq!(
            v,
            Verdict::Rifiutato {
                motivo: UNKNOWN.into()
            }
        );
    }
}
