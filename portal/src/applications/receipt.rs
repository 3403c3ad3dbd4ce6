//! The PDF receipt of a pratica, written with lopdf from the frozen snapshot alone: ente, service,
//! numero di pratica, date and time, applicant, answers, declarations, attachments with their
//! SHA-256, the snapshot's fingerprint, and a verification code with its QR code.

use qrcode::{EcLevel, QrCode};

use super::store::Snapshot;
use crate::domain::italian_time::{date_time, long_date};
use crate::pdf::{PdfError, Writer, MARGIN};

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
) -> Result<Vec<u8>, PdfError> {
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
    if let Some(d) = &snapshot.delegate {
        w.para(
            10.0,
            false,
            &format!(
                "Presentata per conto del richiedente da: {} (codice fiscale {}), {}",
                d.name, d.cf, d.role
            ),
        );
    }
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
        .map_err(|e| PdfError::Pdf(e.to_string()))?;
    let module = 2.0;
    let size = code.width() as f32 * module;
    w.room(size + 10.0);
    let top = w.y - 6.0;
    w.qr(&code, MARGIN, top, module);
    w.y = top - size;
    w.finish(
        &format!("Ricevuta pratica {}", snapshot.numero),
        &format!("Pratica {}", snapshot.numero),
    )
}
