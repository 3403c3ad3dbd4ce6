//! The PDF receipt of a pratica, written with lopdf from the frozen snapshot alone: ente, service,
//! numero di pratica, date and time, applicant, answers, declarations, attachments with their
//! SHA-256, the snapshot's fingerprint, and a verification code with its QR code.

use lopdf::content::{Content, Operation};
use lopdf::{dictionary, Document, Object, Stream, StringFormat};
use qrcode::{Color, EcLevel, QrCode};

use super::store::Snapshot;
use crate::domain::italian_time::{date_time, long_date};

#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("receipt: {0}")]
    Pdf(String),
}

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 50.0;

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
fn wrap(text: &str, width: usize) -> Vec<String> {
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

/// Lays text out on A4 pages, top to bottom.
struct Writer {
    pages: Vec<Vec<Operation>>,
    y: f32,
}

impl Writer {
    fn new() -> Writer {
        Writer {
            pages: vec![Vec::new()],
            y: PAGE_H - MARGIN,
        }
    }

    fn ops(&mut self) -> &mut Vec<Operation> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn room(&mut self, height: f32) {
        if self.y - height < MARGIN {
            self.pages.push(Vec::new());
            self.y = PAGE_H - MARGIN;
        }
    }

    fn text_at(&mut self, x: f32, y: f32, size: f32, bold: bool, text: &str) {
        let font = if bold { "F2" } else { "F1" };
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
    fn para(&mut self, size: f32, bold: bool, text: &str) {
        self.para_at(MARGIN, size, bold, text);
    }

    fn para_at(&mut self, x: f32, size: f32, bold: bool, text: &str) {
        // Helvetica averages about half an em per character; 0.55 leaves room for capitals.
        let width = ((PAGE_W - MARGIN - x) / (size * 0.55)) as usize;
        for line in wrap(text, width.max(10)) {
            self.room(size * 1.4);
            self.y -= size * 1.4;
            let y = self.y;
            self.text_at(x, y, size, bold, &line);
        }
    }

    fn gap(&mut self, h: f32) {
        self.y -= h;
    }

    /// A QR code with its top-left corner at (x, y), `module` points per module.
    fn qr(&mut self, code: &QrCode, x: f32, y: f32, module: f32) {
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

/// The PDF receipt of a sent application and its file name; `public_url` is the portal's address
/// (the QR code leads to its verification page).
pub fn for_application(
    app: &super::store::Application,
    public_url: &str,
) -> Result<(Vec<u8>, String), crate::web::error::AppError> {
    use crate::web::error::AppError;
    let (Some(snapshot), Some(code), Some(text)) =
        (&app.snapshot, &app.verification_code, &app.snapshot_text)
    else {
        return Err(AppError::NotFound);
    };
    let verify = format!(
        "{}/verifica-ricevuta?codice={code}",
        public_url.trim_end_matches('/')
    );
    let pdf = render(snapshot, code, &verify, &super::store::fingerprint(text))
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok((
        pdf,
        format!("ricevuta-{}.pdf", snapshot.numero.replace('/', "-")),
    ))
}

/// The receipt for `snapshot`; `verify_url` is the public address the QR code leads to,
/// `fingerprint` the SHA-256 of the stored snapshot.
pub fn render(
    snapshot: &Snapshot,
    verification_code: &str,
    verify_url: &str,
    fingerprint: &str,
) -> Result<Vec<u8>, ReceiptError> {
    let mut w = Writer::new();
    w.para(10.0, false, &snapshot.ente_name);
    w.gap(6.0);
    w.para(16.0, true, "Ricevuta di presentazione della domanda");
    w.para(12.0, false, &snapshot.service_title);
    w.gap(8.0);
    w.para(
        12.0,
        true,
        &format!("Numero di pratica: {}", snapshot.numero),
    );
    w.para(
        10.0,
        false,
        &format!("Inviata il {}", date_time(snapshot.submitted_at)),
    );
    w.para(
        10.0,
        false,
        &format!(
            "Richiedente: {} (codice fiscale {})",
            snapshot.applicant_name, snapshot.applicant_cf
        ),
    );
    if let Some(due) = super::form::parse_date(&snapshot.due_date) {
        w.para(
            10.0,
            false,
            &format!("L'ufficio comunicherà l'esito entro il {}.", long_date(due)),
        );
    }
    for section in &snapshot.summary {
        w.gap(8.0);
        w.room(40.0);
        w.para(12.0, true, &section.title);
        for line in &section.lines {
            w.para_at(MARGIN, 9.0, true, &line.label);
            w.para_at(MARGIN + 12.0, 10.0, false, &line.value);
        }
    }
    w.gap(8.0);
    w.para(12.0, true, "Dichiarazioni sottoscritte (DPR 445/2000)");
    for text in &snapshot.declarations {
        w.para_at(MARGIN + 12.0, 9.0, false, &format!("• {text}"));
    }
    w.gap(8.0);
    w.para(12.0, true, "Allegati");
    if snapshot.attachments.is_empty() {
        w.para_at(MARGIN + 12.0, 10.0, false, "Nessun allegato.");
    }
    for a in &snapshot.attachments {
        w.para_at(
            MARGIN + 12.0,
            9.0,
            false,
            &format!(
                "{} — {} ({} byte)",
                if a.slot_label.is_empty() {
                    &a.slot
                } else {
                    &a.slot_label
                },
                a.name,
                a.size
            ),
        );
        w.para_at(MARGIN + 12.0, 8.0, false, &format!("SHA-256 {}", a.sha256));
    }
    w.gap(10.0);
    w.room(120.0);
    w.para(12.0, true, "Verifica della ricevuta");
    w.para(9.0, false, "Impronta dei dati inviati (SHA-256):");
    w.para(8.0, false, fingerprint);
    w.para(
        10.0,
        false,
        &format!("Codice di verifica: {verification_code}"),
    );
    w.para(
        9.0,
        false,
        &format!("Per verificare l'autenticità: {verify_url}"),
    );
    let code = QrCode::with_error_correction_level(verify_url.as_bytes(), EcLevel::M)
        .map_err(|e| ReceiptError::Pdf(e.to_string()))?;
    let module = 2.0;
    let size = code.width() as f32 * module;
    w.room(size + 10.0);
    let top = w.y - 6.0;
    w.qr(&code, MARGIN, top, module);
    w.y = top - size;
    build(w.pages, &snapshot.numero)
}

fn build(pages: Vec<Vec<Operation>>, numero: &str) -> Result<Vec<u8>, ReceiptError> {
    let err = |e: lopdf::Error| ReceiptError::Pdf(e.to_string());
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let regular = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
    });
    let bold = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica-Bold", "Encoding" => "WinAnsiEncoding",
    });
    let resources = doc.add_object(dictionary! {
        "Font" => dictionary! { "F1" => regular, "F2" => bold },
    });
    let total = pages.len();
    let mut kids: Vec<Object> = Vec::new();
    for (n, mut ops) in pages.into_iter().enumerate() {
        let footer = format!("Pratica {numero} — pagina {} di {total}", n + 1);
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
        "Title" => Object::string_literal(format!("Ricevuta pratica {numero}")),
        "Producer" => Object::string_literal("Sportello"),
    });
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    doc.trailer.set("Info", info);
    doc.compress();
    let mut out = Vec::new();
    doc.save_to(&mut out)
        .map_err(|e| ReceiptError::Pdf(e.to_string()))?;
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
    }
}
