//! The "Documenti" and "Scadenze" sections of the area personale: every document the person sent
//! with its state, and the receipts; and the dates they must keep — answers due to the office,
//! drafts to send before a service closes, appointments, the latest date for each outcome.

use serde::Serialize;
use time::Date;

use crate::applications::status::Status;
use crate::applications::store;
use crate::domain::italian_time::{date_time, long_date, rome_date};
use crate::server::AppState;
use crate::web::error::AppError;

/// The service's title, or its code when it is no longer offered.
fn service_title(state: &AppState, code: &str) -> String {
    state
        .catalogue
        .get(code)
        .map_or_else(|| code.to_string(), |s| s.title.clone())
}

#[derive(Debug, Serialize)]
pub struct DocumentItem {
    /// Only for an accepted document (a refused one was never kept).
    pub href: Option<String>,
    pub label: String,
    pub pratica: String,
    pub pratica_href: String,
    pub state: &'static str,
    pub reason: Option<String>,
    pub size: String,
    pub uploaded: String,
    /// "In lettura", "Letto", "Non leggibile", and why it was not read.
    pub reading: Option<&'static str>,
    pub reading_reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ReceiptItem {
    pub href: String,
    pub numero: String,
    pub service: String,
}

type DocRow = (
    String,
    String,
    String,
    Option<String>,
    i64,
    i64,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// The person's documents (not removed), newest first, and the receipts of their sent pratiche.
pub async fn documents(
    state: &AppState,
    cf: &str,
) -> Result<(Vec<DocumentItem>, Vec<ReceiptItem>), AppError> {
    let rows: Vec<DocRow> = sqlx::query_as(
        "SELECT d.id, d.label, d.status, d.reason, d.size, d.created_at, a.id, a.numero, a.service_code, d.ocr_status, d.ocr_reason, d.purged_at \
         FROM documents d JOIN applications a ON a.id = d.application_id \
         WHERE a.applicant_cf = $1 AND d.removed_at IS NULL ORDER BY d.created_at DESC, d.id",
    )
    .bind(cf)
    .fetch_all(&state.db.pool)
    .await?;
    let title = |code: &str| service_title(state, code);
    let documents = rows
        .into_iter()
        .map(
            |(
                id,
                label,
                status,
                reason,
                size,
                at,
                app,
                numero,
                service,
                ocr,
                ocr_reason,
                purged,
            )| DocumentItem {
                href: (status == "accettato" && purged.is_none())
                    .then(|| format!("/documenti/{id}")),
                reading: crate::documents::reading_label(ocr.as_deref()),
                reading_reason: ocr_reason,
                label,
                pratica: match numero {
                    Some(n) => format!("Pratica {n} — {}", title(&service)),
                    None => format!("Bozza — {}", title(&service)),
                },
                pratica_href: format!("/domande/{app}"),
                state: crate::documents::status_label(&status),
                reason,
                size: crate::documents::size_label(size),
                uploaded: date_time(at),
            },
        )
        .collect();
    let receipts = store::list_for(&state.db, cf)
        .await?
        .into_iter()
        .filter_map(|a| {
            Some(ReceiptItem {
                href: format!("/domande/{}/ricevuta.pdf", a.id),
                numero: a.numero?,
                service: title(&a.service_code),
            })
        })
        .collect();
    Ok((documents, receipts))
}

#[derive(Debug, Serialize)]
pub struct Deadline {
    #[serde(skip)]
    pub date: Date,
    pub when: String,
    pub what: String,
    pub href: String,
    /// Something the person must do (not only a date to know).
    pub to_do: bool,
    pub overdue: bool,
}

/// The dates ahead for the person, soonest first (and what is already late).
pub async fn deadlines(state: &AppState, cf: &str) -> Result<Vec<Deadline>, AppError> {
    let now = state.clock.now_ms();
    let today = rome_date(now);
    let mut out = Vec::new();
    let title = |code: &str| service_title(state, code);
    let mut push = |date: Date, what: String, href: String, to_do: bool| {
        out.push(Deadline {
            date,
            when: long_date(date),
            what,
            href,
            to_do,
            overdue: date < today,
        })
    };
    for app in store::list_for(&state.db, cf).await? {
        let numero = app.numero.clone().unwrap_or_default();
        let service = title(&app.service_code);
        if app.status == Status::Bozza {
            if let Some(crate::applications::catalogue::Open::Yes {
                closes: Some(closes),
            }) = state
                .catalogue
                .get(&app.service_code)
                .map(|s| s.availability.on(today))
            {
                push(
                    closes,
                    format!("Invia la domanda in bozza ({service}): poi le domande si chiudono"),
                    format!("/domande/{}", app.id),
                    true,
                );
            }
            continue;
        }
        if app.status == Status::InAttesaDiIntegrazioni {
            for request in store::requests(&state.db, &app.id).await? {
                if let (None, Some(deadline)) = (request.answered_at, request.deadline) {
                    push(
                        deadline,
                        format!("Rispondi alla richiesta di documenti sulla pratica {numero}"),
                        format!("/domande/{}/integrazioni", app.id),
                        true,
                    );
                }
            }
        }
        if let Some(due) = app.due_date.filter(|_| !app.status.is_final()) {
            push(
                due,
                format!("Termine per l'esito della pratica {numero} ({service})"),
                format!("/domande/{}", app.id),
                false,
            );
        }
    }
    for a in crate::appointments::store::of_citizen(&state.db, cf).await? {
        if a.status == "prenotato" && a.starts_at >= now {
            let minute = crate::domain::italian_time::rome_minute(a.starts_at);
            push(
                rome_date(a.starts_at),
                format!(
                    "Appuntamento con il segretariato sociale alle {:02}:{:02}",
                    minute / 60,
                    minute % 60
                ),
                format!("/appuntamenti/{}", a.id),
                true,
            );
        }
    }
    out.sort_by_key(|d| d.date);
    Ok(out)
}
