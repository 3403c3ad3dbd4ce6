//! OCR with Tesseract (libtesseract 5, the Italian model). An [`Engine`] is one Tesseract instance,
//! kept by the thread that made it and reused for every page it reads (loading the model is the
//! slow part). Reads a whole page, or one line with a restricted character set (a field of a
//! standard form).

use image::GrayImage;
use tesseract::{PageSegMode, Tesseract};

#[derive(Debug, thiserror::Error)]
pub enum OcrError {
    #[error("Tesseract could not start with the model {0:?} (is tesseract-ocr-{0} installed?)")]
    Start(String),
    #[error("Tesseract: {0}")]
    Read(String),
}

/// What Tesseract read, with its mean word confidence (0–100).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reading {
    pub text: String,
    pub confidence: u8,
}

/// How to read an image.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    /// A page of a document: layout found by Tesseract.
    Page,
    /// One line, only these characters (e.g. a codice fiscale's letters and digits).
    Line { charset: Option<&'a str> },
    /// One word (no spaces), only these characters.
    Word { charset: Option<&'a str> },
}

pub struct Engine {
    language: String,
    inner: Option<Tesseract>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Engine {{ language: {} }}", self.language)
    }
}

fn start(language: &str) -> Result<Tesseract, OcrError> {
    Tesseract::new(None, Some(language)).map_err(|_| OcrError::Start(language.to_string()))
}

impl Engine {
    /// A Tesseract instance for `language` (e.g. `ita`). Set `OMP_THREAD_LIMIT=1` in the process
    /// before: one engine per thread, each single-threaded.
    pub fn new(language: &str) -> Result<Engine, OcrError> {
        Ok(Engine {
            language: language.to_string(),
            inner: Some(start(language)?),
        })
    }

    /// Reads `image` at `dpi`. After a failure the instance is made again for the next read.
    pub fn read(
        &mut self,
        image: &GrayImage,
        dpi: u32,
        mode: Mode<'_>,
    ) -> Result<Reading, OcrError> {
        let tess = match self.inner.take() {
            Some(t) => t,
            None => start(&self.language)?,
        };
        let err = |e: &dyn std::fmt::Display| OcrError::Read(e.to_string());
        let (width, height) = image.dimensions();
        let w = i32::try_from(width).map_err(|e| err(&e))?;
        let h = i32::try_from(height).map_err(|e| err(&e))?;
        let charset = match mode {
            Mode::Line { charset: Some(c) } | Mode::Word { charset: Some(c) } => c,
            _ => "",
        };
        let mut tess = tess
            .set_variable("tessedit_char_whitelist", charset)
            .map_err(|e| err(&e))?
            .set_frame(image.as_raw(), w, h, 1, w)
            .map_err(|e| err(&e))?
            .set_source_resolution(i32::try_from(dpi).unwrap_or(300));
        tess.set_page_seg_mode(match mode {
            Mode::Page => PageSegMode::PsmAuto,
            Mode::Line { .. } => PageSegMode::PsmSingleLine,
            Mode::Word { .. } => PageSegMode::PsmSingleWord,
        });
        let mut tess = tess.recognize().map_err(|e| err(&e))?;
        let text = tess.get_text().map_err(|e| err(&e))?;
        let confidence = tess.mean_text_conf().clamp(0, 100) as u8;
        self.inner = Some(tess);
        Ok(Reading {
            text: text.trim().to_string(),
            confidence,
        })
    }
}
