//! The queue: the pratiche of the enti the operator serves, 50 a page, filtered by ente, service,
//! status, area of need, assigned operator, age and days left on the legal term, sorted by urgency
//! by default; overdue and near-term items stand out, answers from citizens and unassigned new
//! pratiche are marked. Beside it, the waiting lists of the enti's offices.

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tera::Context;
use time::Duration;

use super::{audit_reads, served_enti};
use crate::applications::status::{Status, ALL};
use crate::appointments::agenda::AREAS;
use crate::auth::Principal;
use crate::domain::italian_time::{date_time, rome_date};
use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::templates::render;

pub const PAGE_SIZE: i64 = 50;

/// A citizen's message about the pratica waits for an answer.
const UNANSWERED: &str =
    " AND EXISTS (SELECT 1 FROM pratica_messages m WHERE m.application_id = a.id \
    AND m.from_office = 0 AND m.handled_at IS NULL)";

/// A standard form read from the pratica's documents has a field to check (it differs from the
/// pratica, is not valid for its kind, or was read with low confidence).
const FORM_TO_CHECK: &str =
    " AND EXISTS (SELECT 1 FROM documents d JOIN document_fields f ON f.document_id = d.id \
    WHERE d.application_id = a.id AND d.removed_at IS NULL AND f.problem IS NOT NULL)";

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct Filters {
    pub ente: Option<String>,
    pub servizio: Option<String>,
    /// A status, `aperte` (the default: not concluded) or `tutte`.
    pub stato: Option<String>,
    pub area: Option<String>,
    /// An operator's codice fiscale, `miei` or `nessuno`.
    pub operatore: Option<String>,
    /// Sent at least this many days ago.
    pub giorni_da_invio: Option<String>,
    /// At most this many days left on the legal term (0: due today, or overdue).
    pub giorni_al_termine: Option<String>,
    /// `si`: only pratiche with a citizen's message not yet answered.
    pub messaggi: Option<String>,
    /// `si`: only pratiche with a standard form whose reading needs checking.
    pub moduli: Option<String>,
    /// `scadenza` (default), `recenti`, `meno_recenti`.
    pub ordine: Option<String>,
    pub pagina: Option<String>,
}

fn number(v: &Option<String>) -> Option<i64> {
    nonempty(v).and_then(|s| s.parse().ok())
}

fn page_number(filters: &Filters) -> i64 {
    number(&filters.pagina).unwrap_or(1).max(1)
}

#[derive(Debug, Serialize)]
pub struct Item {
    pub id: String,
    pub numero: String,
    pub ente: String,
    pub service: String,
    pub status: String,
    pub status_label: &'static str,
    pub applicant: String,
    pub cf: String,
    pub submitted: String,
    pub due: Option<String>,
    pub days_left: Option<i64>,
    pub urgency: &'static str,
    pub assigned: Option<String>,
    pub area: Option<String>,
    pub marker: Option<&'static str>,
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
);

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The WHERE clause and its values for `filters` within `enti` (values are bound, never spliced).
fn condition(
    filters: &Filters,
    enti: &[String],
    me: &str,
    today: time::Date,
    now: i64,
) -> (String, Vec<String>, Vec<i64>) {
    let mut text_values: Vec<String> = Vec::new();
    let mut sql = String::from("a.numero IS NOT NULL");
    fn push(sql: &mut String, clause: &str, value: String, text_values: &mut Vec<String>) {
        text_values.push(value);
        sql.push_str(&clause.replace('?', &format!("${}", text_values.len())));
    }
    let wanted: Vec<&String> = match nonempty(&filters.ente) {
        Some(e) => enti.iter().filter(|x| x.as_str() == e).collect(),
        None => enti.iter().collect(),
    };
    if wanted.is_empty() {
        push(
            &mut sql,
            " AND a.ente_code = ?",
            String::new(),
            &mut text_values,
        );
    } else {
        let mut list = Vec::new();
        for e in wanted {
            text_values.push(e.clone());
            list.push(format!("${}", text_values.len()));
        }
        sql.push_str(&format!(" AND a.ente_code IN ({})", list.join(", ")));
    }
    if let Some(s) = nonempty(&filters.servizio) {
        push(
            &mut sql,
            " AND a.service_code = ?",
            s.to_string(),
            &mut text_values,
        );
    }
    match nonempty(&filters.stato) {
        Some("tutte") => {}
        Some(s) if Status::parse(s).is_some() => push(
            &mut sql,
            " AND a.status = ?",
            s.to_string(),
            &mut text_values,
        ),
        _ => sql.push_str(
            " AND a.status NOT IN ('bozza', 'accolta', 'respinta', 'ritirata', 'annullata')",
        ),
    }
    if let Some(area) = nonempty(&filters.area) {
        push(
            &mut sql,
            " AND a.need_area = ?",
            area.to_string(),
            &mut text_values,
        );
    }
    match nonempty(&filters.operatore) {
        Some("nessuno") => sql.push_str(" AND a.assigned_to IS NULL"),
        Some("miei") => push(
            &mut sql,
            " AND a.assigned_to = ?",
            me.to_string(),
            &mut text_values,
        ),
        Some(cf) => push(
            &mut sql,
            " AND a.assigned_to = ?",
            cf.to_string(),
            &mut text_values,
        ),
        None => {}
    }
    if let Some(days) = number(&filters.giorni_al_termine) {
        push(
            &mut sql,
            " AND a.due_date <= ?",
            (today + Duration::days(days)).to_string(),
            &mut text_values,
        );
    }
    if nonempty(&filters.messaggi) == Some("si") {
        sql.push_str(UNANSWERED);
    }
    if nonempty(&filters.moduli) == Some("si") {
        sql.push_str(FORM_TO_CHECK);
    }
    let mut numbers = Vec::new();
    if let Some(days) = number(&filters.giorni_da_invio) {
        numbers.push(now - days * 86_400_000);
        sql.push_str(&format!(
            " AND a.submitted_at <= ${}",
            text_values.len() + 1
        ));
    }
    (sql, text_values, numbers)
}

pub struct Page {
    pub items: Vec<Item>,
    pub total: i64,
}

/// One page of the queue.
pub async fn page(
    state: &AppState,
    filters: &Filters,
    enti: &[String],
    me: &str,
) -> Result<Page, AppError> {
    let now = state.clock.now_ms();
    let today = rome_date(now);
    let (condition, texts, numbers) = condition(filters, enti, me, today, now);
    let order = match nonempty(&filters.ordine) {
        Some("recenti") => "a.submitted_at DESC, a.id DESC",
        Some("meno_recenti") => "a.submitted_at ASC, a.id ASC",
        _ => "a.due_date ASC, a.id ASC",
    };
    let offset = (page_number(filters) - 1) * PAGE_SIZE;
    let count_sql = format!("SELECT COUNT(*) FROM applications a WHERE {condition}");
    let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
    for t in &texts {
        count = count.bind(t);
    }
    for n in &numbers {
        count = count.bind(n);
    }
    let total = count.fetch_one(&state.db.pool).await?;
    let sql = format!(
        "SELECT a.id, a.numero, a.ente_code, a.service_code, a.status, a.submitted_at, a.due_date, \
         a.assigned_to, a.need_area, a.applicant_cf, p.given_name, p.family_name, \
         (SELECT COUNT(*) FROM pratica_messages m WHERE m.application_id = a.id AND m.from_office = 0 AND m.handled_at IS NULL), \
         (SELECT COUNT(*) FROM documents d JOIN document_fields f ON f.document_id = d.id \
          WHERE d.application_id = a.id AND d.removed_at IS NULL AND f.problem IS NOT NULL) \
         FROM applications a LEFT JOIN people p ON p.cf = a.applicant_cf \
         WHERE {condition} ORDER BY {order} LIMIT {PAGE_SIZE} OFFSET {offset}"
    );
    let mut query = sqlx::query_as::<_, Row>(&sql);
    for t in &texts {
        query = query.bind(t);
    }
    for n in &numbers {
        query = query.bind(n);
    }
    let rows = query.fetch_all(&state.db.pool).await?;
    let names = operator_names(state, enti).await?;
    let items = rows
        .into_iter()
        .map(
            |(
                id,
                numero,
                ente,
                service,
                status,
                submitted,
                due,
                assigned,
                area,
                cf,
                given,
                family,
                unanswered,
                to_check,
            )| {
                let status = Status::parse(&status).unwrap_or(Status::Inviata);
                let due_date = due
                    .as_deref()
                    .and_then(crate::applications::form::parse_date);
                let days_left = due_date.map(|d| (d - today).whole_days());
                let urgency = match days_left {
                    Some(d) if d < 0 && !status.is_final() => "scaduta",
                    Some(d) if d <= 5 && !status.is_final() => "vicina",
                    _ => "",
                };
                let marker = match status {
                    _ if unanswered > 0 => Some("Messaggio del cittadino"),
                    _ if to_check > 0 && !status.is_final() => Some("Modulo da controllare"),
                    Status::IntegrazioniRicevute => Some("Risposta del cittadino"),
                    Status::Inviata | Status::Protocollata if assigned.is_none() => Some("Nuova"),
                    _ => None,
                };
                Item {
                    numero,
                    service: state
                        .catalogue
                        .get(&service)
                        .map(|s| s.title.clone())
                        .unwrap_or(service),
                    ente,
                    status: status.as_str().into(),
                    status_label: status.label(),
                    applicant: format!(
                        "{} {}",
                        given.unwrap_or_default(),
                        family.unwrap_or_default()
                    )
                    .trim()
                    .to_string(),
                    cf,
                    submitted: date_time(submitted),
                    due: due_date.map(crate::domain::italian_time::long_date),
                    days_left,
                    urgency,
                    assigned: assigned.map(|a| {
                        names
                            .iter()
                            .find(|(cf, _)| *cf == a)
                            .map(|(_, n)| n.clone())
                            .unwrap_or(a)
                    }),
                    area,
                    marker,
                    id,
                }
            },
        )
        .collect();
    Ok(Page { items, total })
}

/// The operators and coordinators of `enti`, with their names: (cf, name).
pub async fn operator_names(
    state: &AppState,
    enti: &[String],
) -> Result<Vec<(String, String)>, AppError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for ente in enti {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT DISTINCT s.cf, p.given_name || ' ' || p.family_name FROM staff_roles s \
             LEFT JOIN people p ON p.cf = s.cf WHERE s.ente_code = $1 AND s.role IN ('operatore', 'coordinatore') ORDER BY s.cf",
        )
        .bind(ente)
        .fetch_all(&state.db.pool)
        .await?;
        for (cf, name) in rows {
            if !out.iter().any(|(c, _)| *c == cf) {
                out.push((cf.clone(), name.unwrap_or(cf)));
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Serialize)]
struct WaitingLine {
    office: String,
    topic: String,
    waiting: i64,
    since: String,
}

#[get("/ufficio/pratiche")]
async fn queue(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    filters: web::Query<Filters>,
) -> Result<HttpResponse, AppError> {
    let enti = served_enti(&req, &principal)?;
    let me = principal
        .person()
        .map(|p| p.cf.to_string())
        .unwrap_or_default();
    let page = page(&state, &filters, &enti, &me).await?;
    let reads: Vec<(String, String)> = page
        .items
        .iter()
        .map(|i| (i.cf.clone(), format!("pratica:{}", i.numero)))
        .collect();
    audit_reads(
        &state.db,
        state.clock.now_ms(),
        &req,
        &principal,
        &reads,
        "coda delle pratiche",
    )
    .await?;
    let mut waiting = Vec::new();
    for ente in &enti {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT o.name, t.title, COUNT(*), MIN(w.created_at) FROM waiting_list w \
             JOIN offices o ON o.id = w.office_id JOIN topics t ON t.id = w.topic_id \
             WHERE o.ente_code = $1 AND w.status = 'in_attesa' GROUP BY o.name, t.title ORDER BY MIN(w.created_at)",
        )
        .bind(ente)
        .fetch_all(&state.db.pool)
        .await?;
        waiting.extend(
            rows.into_iter()
                .map(|(office, topic, n, since)| WaitingLine {
                    office,
                    topic,
                    waiting: n,
                    since: date_time(since),
                }),
        );
    }
    let pages = (page.total + PAGE_SIZE - 1) / PAGE_SIZE;
    let current = page_number(&filters);
    let mut query = serde_urlencoded_query(&filters);
    if !query.is_empty() {
        query.push('&');
    }
    let services: Vec<(&str, &str)> = state
        .catalogue
        .services
        .iter()
        .map(|s| (s.code.as_str(), s.title.as_str()))
        .collect();
    let statuses: Vec<(&str, &str)> = ALL
        .iter()
        .filter(|s| **s != Status::Bozza)
        .map(|s| (s.as_str(), s.label()))
        .collect();
    let mut ctx = Context::new();
    ctx.insert("items", &page.items);
    ctx.insert("total", &page.total);
    ctx.insert("pages", &pages);
    ctx.insert("current", &current);
    ctx.insert("query", &query);
    ctx.insert("filters", &*filters);
    ctx.insert("enti", &crate::db::ente_names(&state.db, &enti).await?);
    ctx.insert("services", &services);
    ctx.insert("statuses", &statuses);
    ctx.insert("areas", &AREAS);
    ctx.insert("operators", &operator_names(&state, &enti).await?);
    ctx.insert("waiting", &waiting);
    render(&state, &req, "triage/queue.html", ctx)
}

/// The filters as a query string without the page, for the paging links.
fn serde_urlencoded_query(filters: &Filters) -> String {
    let mut pairs = url::form_urlencoded::Serializer::new(String::new());
    let text = [
        ("ente", &filters.ente),
        ("servizio", &filters.servizio),
        ("stato", &filters.stato),
        ("area", &filters.area),
        ("operatore", &filters.operatore),
        ("ordine", &filters.ordine),
        ("messaggi", &filters.messaggi),
        ("moduli", &filters.moduli),
        ("giorni_da_invio", &filters.giorni_da_invio),
        ("giorni_al_termine", &filters.giorni_al_termine),
    ];
    for (k, v) in text {
        if let Some(v) = nonempty(v) {
            pairs.append_pair(k, v);
        }
    }
    pairs.finish()
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(queue);
}
