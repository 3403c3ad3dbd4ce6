//! A small writer of text PDFs with lopdf: A4 pages, the standard Helvetica fonts (WinAnsi), wrapped
//! paragraphs, page breaks, a footer with page numbers, a QR code. The receipt of a pratica and the
//! export of a person's data are written with it; `pdftotext` and every reader read them.
//!
//! Pages meant to be read back by OCR (the standard paper forms, [`Writer::for_reading_back`])
//! are printed in DejaVu Sans Mono, regular and bold, both embedded in the file (`forms/fonts/`):
//! every glyph is the same on every machine and viewer, and I/l/1, O/0 and the accents stand
//! apart.

use lopdf::content::{Content, Operation};
use lopdf::{dictionary, Document, Object, Stream, StringFormat};
use qrcode::{Color, QrCode};

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("pdf: {0}")]
    Pdf(String),
}

pub const PAGE_W: f32 = 595.0;
pub const PAGE_H: f32 = 842.0;
pub const MARGIN: f32 = 50.0;

/// Text in the standard fonts' WinAnsi encoding (what `pdftotext` and every reader understand);
/// a character it lacks becomes "?".
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            '€' => 0x80,
            '‚' => 0x82,
            '„' => 0x84,
            '…' => 0x85,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            c if (c as u32) < 0x80 || ((c as u32) >= 0xA0 && (c as u32) <= 0xFF) => c as u32 as u8,
            _ => b'?',
        })
        .collect()
}

/// Splits `text` into lines of at most `width` characters, at spaces where it can.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word = word.to_string();
        while word.chars().count() > width {
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            lines.push(head);
        }
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    if lines.is_empty() {
        lines.push(String::new());
    }
    lines
}

pub struct Writer {
    pages: Vec<Vec<Operation>>,
    pub y: f32,
    /// Every font embedded (pages read back by OCR).
    embed_mono: bool,
}

/// The fixed-width faces embedded in pages read back by OCR (Bitstream Vera licence, see
/// `forms/fonts/LICENSE-DejaVu.txt`).
const MONO_BOLD_TTF: &[u8] = include_bytes!("../../forms/fonts/DejaVuSansMono-Bold.ttf");
const MONO_TTF: &[u8] = include_bytes!("../../forms/fonts/DejaVuSansMono.ttf");

/// Lays text out on A4 pages, top to bottom.
impl Writer {
    pub fn new() -> Writer {
        Writer {
            pages: vec![Vec::new()],
            y: PAGE_H - MARGIN,
            embed_mono: false,
        }
    }

    /// A writer whose every text is in the embedded fixed-width faces (see the module's note).
    pub fn for_reading_back() -> Writer {
        Writer {
            embed_mono: true,
            ..Writer::new()
        }
    }

    fn ops(&mut self) -> &mut Vec<Operation> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    pub fn room(&mut self, height: f32) {
        if self.y - height < MARGIN {
            self.pages.push(Vec::new());
            self.y = PAGE_H - MARGIN;
        }
    }

    fn text_at(&mut self, x: f32, y: f32, size: f32, bold: bool, text: &str) {
        self.text_in(if bold { "F2" } else { "F1" }, x, y, size, text);
    }

    /// Text in a fixed-width font (Courier Bold, or the embedded DejaVu Sans Mono Bold), at `y`
    /// points from the top: codes and numbers that are read back by OCR, where every character
    /// must stand apart.
    pub fn mono_top(&mut self, x: f32, y: f32, size: f32, text: &str) {
        self.text_in("F3", x, PAGE_H - y, size, text);
    }

    fn text_in(&mut self, font: &str, x: f32, y: f32, size: f32, text: &str) {
        self.ops().extend([
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec![font.into(), size.into()]),
            Operation::new("Td", vec![x.into(), y.into()]),
            Operation::new(
                "Tj",
                vec![Object::String(win_ansi(text), StringFormat::Literal)],
            ),
            Operation::new("ET", vec![]),
        ]);
    }

    /// A paragraph, wrapped to the page width.
    pub fn para(&mut self, size: f32, bold: bool, text: &str) {
        self.para_at(MARGIN, size, bold, text);
    }

    pub fn para_at(&mut self, x: f32, size: f32, bold: bool, text: &str) {
        // Helvetica averages about half an em per character; 0.55 leaves room for capitals.
        let width = ((PAGE_W - MARGIN - x) / (size * 0.55)) as usize;
        for line in wrap(text, width.max(10)) {
            self.room(size * 1.4);
            self.y -= size * 1.4;
            let y = self.y;
            self.text_at(x, y, size, bold, &line);
        }
    }

    pub fn gap(&mut self, h: f32) {
        self.y -= h;
    }

    /// Text with its baseline at `y` points from the top of the current page.
    pub fn text_top(&mut self, x: f32, y: f32, size: f32, bold: bool, text: &str) {
        self.text_at(x, PAGE_H - y, size, bold, text);
    }

    /// A rectangle whose top-left corner is (x, y) points from the top-left of the current page:
    /// filled black, or outlined.
    pub fn rect_top(&mut self, x: f32, y: f32, w: f32, h: f32, fill: bool) {
        let ops = self.ops();
        ops.push(Operation::new("q", vec![]));
        ops.push(Operation::new("w", vec![0.8.into()]));
        ops.push(Operation::new(
            "re",
            vec![x.into(), (PAGE_H - y - h).into(), w.into(), h.into()],
        ));
        ops.push(Operation::new(if fill { "f" } else { "S" }, vec![]));
        ops.push(Operation::new("Q", vec![]));
    }

    /// A QR code with its top-left corner at (x, y), `module` points per module.
    pub fn qr(&mut self, code: &QrCode, x: f32, y: f32, module: f32) {
        let width = code.width();
        let colors = code.to_colors();
        let ops = self.ops();
        ops.push(Operation::new("q", vec![]));
        ops.push(Operation::new("rg", vec![0.into(), 0.into(), 0.into()]));
        for (i, color) in colors.iter().enumerate() {
            if *color == Color::Dark {
                let col = (i % width) as f32;
                let row = (i / width) as f32;
                ops.push(Operation::new(
                    "re",
                    vec![
                        (x + col * module).into(),
                        (y - (row + 1.0) * module).into(),
                        module.into(),
                        module.into(),
                    ],
                ));
            }
        }
        ops.push(Operation::new("f", vec![]));
        ops.push(Operation::new("Q", vec![]));
    }
}

impl Writer {
    /// The document, titled `title`, each page's footer starting with `footer`.
    pub fn finish(self, title: &str, footer: &str) -> Result<Vec<u8>, PdfError> {
        build(self.pages, title, footer, self.embed_mono)
    }
}

impl Default for Writer {
    fn default() -> Self {
        Writer::new()
    }
}

/// A PDF text string readable in every viewer: UTF-16BE with its byte-order mark.
pub fn text_string(text: &str) -> Object {
    let mut bytes = vec![0xFE, 0xFF];
    for unit in text.encode_utf16() {
        bytes.extend_from_slice(&unit.to_be_bytes());
    }
    Object::String(bytes, StringFormat::Hexadecimal)
}

/// An embedded DejaVu Sans Mono TrueType font, regular or bold (WinAnsi; every glyph 602/1000
/// wide).
fn embedded_mono(doc: &mut Document, bold: bool) -> lopdf::ObjectId {
    let (bytes, name, stem) = if bold {
        (MONO_BOLD_TTF, "DejaVuSansMono-Bold", 120)
    } else {
        (MONO_TTF, "DejaVuSansMono", 80)
    };
    let file = doc.add_object(Stream::new(
        dictionary! { "Length1" => bytes.len() as i64 },
        bytes.to_vec(),
    ));
    let descriptor = doc.add_object(dictionary! {
        "Type" => "FontDescriptor", "FontName" => name,
        // Fixed pitch, non-symbolic.
        "Flags" => 33, "FontBBox" => vec![(-557).into(), (-394).into(), 732.into(), 1042.into()],
        "ItalicAngle" => 0, "Ascent" => 928, "Descent" => -236, "CapHeight" => 729,
        "StemV" => stem, "FontFile2" => file,
    });
    let widths: Vec<Object> = (32..=255).map(|_| Object::Integer(602)).collect();
    doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "TrueType", "BaseFont" => name,
        "FirstChar" => 32, "LastChar" => 255, "Widths" => widths,
        "Encoding" => "WinAnsiEncoding", "FontDescriptor" => descriptor,
    })
}

fn build(
    pages: Vec<Vec<Operation>>,
    title: &str,
    footer: &str,
    embed_mono: bool,
) -> Result<Vec<u8>, PdfError> {
    let err = |e: lopdf::Error| PdfError::Pdf(e.to_string());
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let standard = |doc: &mut Document, name: &str| {
        doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => name, "Encoding" => "WinAnsiEncoding",
        })
    };
    let (regular, bold, mono) = if embed_mono {
        let bold = embedded_mono(&mut doc, true);
        (embedded_mono(&mut doc, false), bold, bold)
    } else {
        (
            standard(&mut doc, "Helvetica"),
            standard(&mut doc, "Helvetica-Bold"),
            standard(&mut doc, "Courier-Bold"),
        )
    };
    let resources = doc.add_object(dictionary! {
        "Font" => dictionary! { "F1" => regular, "F2" => bold, "F3" => mono },
    });
    let total = pages.len();
    let mut kids: Vec<Object> = Vec::new();
    for (n, mut ops) in pages.into_iter().enumerate() {
        let footer = format!("{footer} — pagina {} di {total}", n + 1);
        ops.extend([
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 8.0.into()]),
            Operation::new("Td", vec![MARGIN.into(), 25.0.into()]),
            Operation::new(
                "Tj",
                vec![Object::String(win_ansi(&footer), StringFormat::Literal)],
            ),
            Operation::new("ET", vec![]),
        ]);
        let content = Content { operations: ops }.encode().map_err(err)?;
        let content_id = doc.add_object(Stream::new(dictionary! {}, content));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
        });
        kids.push(page_id.into());
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => kids, "Count" => count, "Resources" => resources,
            "MediaBox" => vec![0.into(), 0.into(), PAGE_W.into(), PAGE_H.into()],
        }),
    );
    let info = doc.add_object(dictionary! {
        "Title" => text_string(title),
        "Producer" => Object::string_literal("Sportello"),
    });
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    doc.trailer.set("Info", info);
    doc.compress();
    let mut out = Vec::new();
    doc.save_to(&mut out)
        .map_err(|e| PdfError::Pdf(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_words_and_lines_wrap() {
        assert_eq!(wrap("uno due tre", 7), vec!["uno due", "tre"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(win_ansi("è €"), vec![0xE8, b' ', 0x80]);
        assert_eq!(
            text_string("è"),
            Object::String(vec![0xFE, 0xFF, 0x00, 0xE8], StringFormat::Hexadecimal)
        );
    }
}
