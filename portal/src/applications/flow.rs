//! The application flow a citizen follows: service page → login at the service's level → privacy
//! consent → steps (prefilled, saved at every step) → summary → "Conferma e invia".

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::Value;
use tera::Context;

use super::catalogue::{Open, Service};
use super::form::{self, Answers, Field, FieldError, FieldKind, Prefill, Step, Submitted};
use super::status::Status;
use super::store::{self, Application, NewDraft, Submission};
use crate::auth::{person_at_level, see_other, Person, Principal, LOGIN_LEVEL};
use crate::delegations::{self, Scope, Subject};
use crate::domain::italian_time::{long_date, rome_date};
use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::templates::{render, render_status};

/// The service's availability as the pages say it.
fn open_text(open: Open) -> (bool, String) {
    match open {
        Open::Yes { closes: None } => (true, "Il servizio è attivo.".into()),
        Open::Yes {
            closes: Some(closes),
        } => (
            true,
            format!(
                "Le domande si presentano fino al {} compreso.",
                long_date(closes)
            ),
        ),
        Open::Suspended => (
            false,
            "Il servizio è sospeso: al momento non si possono presentare domande.".into(),
        ),
        Open::NotYet { opens } => (
            false,
            format!(
                "Le domande si potranno presentare dal {}.",
                long_date(opens)
            ),
        ),
        Open::Closed { closed } => (
            false,
            format!(
                "Il termine per presentare le domande è scaduto il {}.",
                long_date(closed)
            ),
        ),
    }
}

fn service_of<'a>(state: &'a AppState, code: &str) -> Result<&'a Service, AppError> {
    state.catalogue.get(code).ok_or(AppError::NotFound)
}

#[get("/servizi/{code}")]
async fn service_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    code: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let service = service_of(&state, &code)?;
    let (open, availability) = open_text(service.availability.on(rome_date(state.clock.now_ms())));
    let mut ctx = Context::new();
    ctx.insert("service", service);
    ctx.insert("sections", &service.page.sections());
    ctx.insert("open", &open);
    ctx.insert("availability", &availability);
    ctx.insert(
        "enti",
        &crate::db::ente_names(&state.db, &service.enti).await?,
    );
    render(&state, &req, "applications/service.html", ctx)
}

/// The step list shown on every page of the flow: 0 is the privacy notice, then the form's steps,
/// then the summary.
#[derive(Debug, Serialize)]
struct StepLink {
    number: usize,
    title: String,
    href: Option<String>,
    current: bool,
    done: bool,
}

fn step_links(service: &Service, app: Option<&Application>, current: usize) -> Vec<StepLink> {
    let reached = app.map(|a| a.current_step as usize).unwrap_or(0);
    let base = app.map(|a| format!("/domande/{}", a.id));
    let count = service.form.steps.len();
    let mut links = vec![StepLink {
        number: 0,
        title: "Informativa privacy".into(),
        href: None,
        current: current == 0,
        done: app.is_some(),
    }];
    for (i, step) in service.form.steps.iter().enumerate() {
        let n = i + 1;
        links.push(StepLink {
            number: n,
            title: step.title.clone(),
            href: base
                .as_ref()
                .filter(|_| n <= reached && n != current)
                .map(|b| format!("{b}/passo/{n}")),
            current: current == n,
            done: n < reached,
        });
    }
    links.push(StepLink {
        number: count + 1,
        title: "Riepilogo".into(),
        href: base
            .as_ref()
            .filter(|_| reached > count && current != count + 1)
            .map(|b| format!("{b}/riepilogo")),
        current: current == count + 1,
        done: false,
    });
    links
}

#[get("/servizi/{code}/domanda")]
async fn start_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    code: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let service = service_of(&state, &code)?;
    let subject = delegations::subject(
        &state,
        &req,
        &principal,
        service.spid_level,
        &[Scope::Domande],
    )
    .await?;
    if let Some(id) = store::draft_for(&state.db, subject.cf(), &service.code).await? {
        return Ok(see_other(&format!("/domande/{id}?ripresa=1")));
    }
    // The comune they applied to before, if it offers this service; otherwise nothing is ticked and
    // the choice is required (a preselected first comune sent pratiche to the wrong one).
    let last = store::last_ente(&state.db, subject.cf()).await?;
    consent_page(&state, &req, service, last.as_deref(), None, StatusCode::OK).await
}

async fn consent_page(
    state: &AppState,
    req: &HttpRequest,
    service: &Service,
    chosen_ente: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let (open, availability) = open_text(service.availability.on(rome_date(state.clock.now_ms())));
    let enti = crate::db::ente_names(&state.db, &service.enti).await?;
    let mut ctx = Context::new();
    ctx.insert("service", service);
    ctx.insert("open", &open);
    ctx.insert("availability", &availability);
    ctx.insert(
        "chosen_ente",
        &chosen_ente.filter(|c| enti.iter().any(|(code, _)| code == c)),
    );
    ctx.insert("enti", &enti);
    ctx.insert("error", &error);
    ctx.insert("steps", &step_links(service, None, 0));
    render_status(state, req, "applications/consent.html", ctx, status)
}

/// The first values of a new draft: what the portal knows of the person, and their answers to the
/// same questions in earlier applications.
async fn prefill(
    state: &AppState,
    service: &Service,
    person: &Person,
) -> Result<Answers, AppError> {
    let row: Option<(Option<String>, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT birth_date, email, phone FROM people WHERE cf = $1")
            .bind(person.cf.as_str())
            .fetch_optional(&state.db.pool)
            .await?;
    let (birth, email, phone) = row.unwrap_or_default();
    let previous = store::previous_answers(&state.db, person.cf.as_str()).await?;
    let mut answers = Answers::new();
    for field in service.form.fields() {
        let value = match field.prefill {
            None => None,
            Some(Prefill::Nome) => Some(person.given_name.clone()),
            Some(Prefill::Cognome) => Some(person.family_name.clone()),
            Some(Prefill::CodiceFiscale) => Some(person.cf.to_string()),
            Some(Prefill::DataNascita) => birth.clone(),
            Some(Prefill::Email) => email.clone(),
            Some(Prefill::Telefono) => phone.clone(),
            Some(Prefill::Precedente) => match previous.get(&field.id) {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            },
        };
        if let Some(value) = value {
            answers.insert(field.id.clone(), Value::String(value));
        }
    }
    Ok(answers)
}

#[post("/servizi/{code}/domanda")]
async fn start(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    code: web::Path<String>,
    sent: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let service = service_of(&state, &code)?;
    let subject = delegations::subject(
        &state,
        &req,
        &principal,
        service.spid_level,
        &[Scope::Domande],
    )
    .await?;
    let person = &subject.person;
    let field = |name: &str| {
        sent.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let ente = field("ente").unwrap_or_default();
    if !matches!(
        service.availability.on(rome_date(state.clock.now_ms())),
        Open::Yes { .. }
    ) {
        return consent_page(
            &state,
            &req,
            service,
            Some(ente),
            None,
            StatusCode::CONFLICT,
        )
        .await;
    }
    let enti = crate::db::ente_names(&state.db, &service.enti).await?;
    if !enti.iter().any(|(c, _)| c == ente) {
        return consent_page(
            &state,
            &req,
            service,
            None,
            Some("Scegli l'ente a cui presenti la domanda."),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    if field("privacy") != Some("si") {
        return consent_page(
            &state,
            &req,
            service,
            Some(ente),
            Some("Per continuare devi dichiarare di aver letto l'informativa sul trattamento dei dati personali."),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    // A second click on "Inizia" resumes the draft the first one made.
    if let Some(id) = store::draft_for(&state.db, person.cf.as_str(), &service.code).await? {
        return Ok(see_other(&format!("/domande/{id}?ripresa=1")));
    }
    let answers = prefill(&state, service, person).await?;
    let id = store::create_draft(
        &state.db,
        state.clock.now_ms(),
        &NewDraft {
            ente_code: ente,
            service_code: &service.code,
            form_version: service.form.version,
            applicant_cf: person.cf.as_str(),
            answers: &answers,
        },
    )
    .await?;
    Ok(see_other(&format!("/domande/{id}/passo/1")))
}

/// The application `id` of the request's subject (the signed-in person, or whoever they act for
/// with a mandate covering `scopes`), with its service; anyone else's is "not found".
pub(crate) async fn owned<'a, 'p>(
    state: &'a AppState,
    req: &HttpRequest,
    principal: &'p Principal,
    id: &str,
    scopes: &[Scope],
) -> Result<(Subject<'p>, Application, &'a Service), AppError> {
    let subject = delegations::subject(state, req, principal, LOGIN_LEVEL, scopes).await?;
    let app = store::get(&state.db, id)
        .await?
        .filter(|a| a.applicant_cf == subject.cf())
        .ok_or(AppError::NotFound)?;
    let service = service_of(state, &app.service_code)?;
    person_at_level(req, principal, service.spid_level)?;
    Ok((subject, app, service))
}

/// One input of a step, ready for the template.
#[derive(Debug, Serialize)]
struct FieldView {
    name: String,
    input_id: String,
    label: String,
    kind: FieldKind,
    required: bool,
    help: Option<String>,
    value: String,
    checked: bool,
    options: Vec<OptionView>,
    error: Option<String>,
    /// Shown only for some answers to another field of the same page: the page says so, and the
    /// script hides it until then.
    show_if: Option<ShowIf>,
    documents: Vec<String>,
    rows: Vec<Vec<FieldView>>,
    item_label: String,
    can_add: bool,
    autocomplete: Option<form::Autocomplete>,
}

#[derive(Debug, Serialize)]
struct OptionView {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Debug, Serialize)]
struct ShowIf {
    field: String,
    values: String,
    hint: String,
}

fn input_id(name: &str) -> String {
    format!("f-{}", name.replace('.', "-"))
}

fn field_view(
    field: &Field,
    name: String,
    value: Option<&Value>,
    errors: &HashMap<String, String>,
    step: &Step,
) -> FieldView {
    let text = form::input_value(field, value);
    let show_if = field.show_if.as_ref().and_then(|c| {
        let controller = step.fields.iter().find(|f| f.id == c.field)?;
        let shown: Vec<String> = c
            .any_of
            .iter()
            .map(|v| {
                controller
                    .options
                    .iter()
                    .find(|o| &o.value == v)
                    .map(|o| o.label.clone())
                    .unwrap_or_else(|| if v == "si" { "sì".into() } else { v.clone() })
            })
            .collect();
        Some(ShowIf {
            field: input_id(&controller.id),
            values: c.any_of.join(","),
            hint: format!(
                "Da compilare solo se hai risposto «{}» a «{}».",
                shown.join("» o «"),
                controller.label
            ),
        })
    });
    let rows = match (field.kind, value) {
        (FieldKind::Group, Some(Value::Array(rows))) => rows
            .iter()
            .enumerate()
            .map(|(n, row)| {
                field
                    .fields
                    .iter()
                    .map(|sub| {
                        field_view(
                            sub,
                            format!("{}.{n}.{}", field.id, sub.id),
                            row.get(&sub.id),
                            errors,
                            step,
                        )
                    })
                    .collect()
            })
            .collect(),
        _ => Vec::new(),
    };
    let row_count = rows.len();
    FieldView {
        input_id: input_id(&name),
        error: errors.get(&name).cloned(),
        label: field.label.clone(),
        kind: field.kind,
        required: field.required,
        autocomplete: field.autocomplete,
        help: field.help.clone(),
        checked: matches!(value, Some(Value::Bool(true))),
        options: field
            .options
            .iter()
            .map(|o| OptionView {
                value: o.value.clone(),
                label: o.label.clone(),
                selected: o.value == text,
            })
            .collect(),
        value: text,
        show_if,
        documents: field.documents.clone(),
        rows,
        item_label: field.item_label.clone().unwrap_or_else(|| "Riga".into()),
        can_add: row_count < field.max_items.unwrap_or(20),
        name,
    }
}

#[allow(clippy::too_many_arguments)]
async fn step_page(
    state: &AppState,
    req: &HttpRequest,
    service: &Service,
    app: &Application,
    n: usize,
    errors: &[FieldError],
    notice: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let step = &service.form.steps[n - 1];
    let by_name: HashMap<String, String> = errors
        .iter()
        .map(|e| (e.name.clone(), e.message.clone()))
        .collect();
    let fields: Vec<FieldView> = step
        .fields
        .iter()
        .filter(|f| {
            // A field that depends on an earlier page is simply not asked when it does not apply.
            let same_page = f
                .show_if
                .as_ref()
                .is_some_and(|c| step.fields.iter().any(|g| g.id == c.field));
            same_page || form::visible(f, &app.answers)
        })
        .map(|f| field_view(f, f.id.clone(), app.answers.get(&f.id), &by_name, step))
        .collect();
    let mut ctx = Context::new();
    ctx.insert("service", service);
    ctx.insert("app_id", &app.id);
    ctx.insert("step", step);
    ctx.insert("n", &n);
    ctx.insert("last", &(n == service.form.steps.len()));
    ctx.insert("fields", &fields);
    ctx.insert(
        "errors",
        &errors
            .iter()
            .map(|e| {
                serde_json::json!({ "href": format!("#{}", input_id(&e.name)), "label": e.label, "message": e.message })
            })
            .collect::<Vec<_>>(),
    );
    ctx.insert("notice", &notice);
    ctx.insert("closing", &closing_note(state, service));
    ctx.insert("steps", &step_links(service, Some(app), n));
    let documents = crate::documents::for_application(&state.db, &app.id).await?;
    ctx.insert("documents", &documents);
    render_status(state, req, "applications/step.html", ctx, status)
}

/// For a service open until a date: the date, for the draft's pages.
fn closing_note(state: &AppState, service: &Service) -> Option<String> {
    match service.availability.on(rome_date(state.clock.now_ms())) {
        Open::Yes {
            closes: Some(closes),
        } => Some(long_date(closes)),
        _ => None,
    }
}

#[get("/domande/{id}")]
async fn application(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    query: web::Query<StepQuery>,
) -> Result<HttpResponse, AppError> {
    let (subject, app, service) = owned(
        &state,
        &req,
        &principal,
        &id,
        &[Scope::Stato, Scope::Domande],
    )
    .await?;
    if app.status != Status::Bozza {
        return super::pratica::page(&state, &req, &app, service).await;
    }
    subject.require(Scope::Domande)?;
    let steps = service.form.steps.len() as i64;
    // A draft found again ("Presenta la domanda" a second time) says so on the page it opens.
    let resumed = if query.ripresa.is_some() {
        "?ripresa=1"
    } else {
        ""
    };
    Ok(if app.current_step > steps {
        see_other(&format!("/domande/{}/riepilogo{resumed}", app.id))
    } else {
        see_other(&format!(
            "/domande/{}/passo/{}{resumed}",
            app.id,
            app.current_step.max(1)
        ))
    })
}

#[derive(Debug, serde::Deserialize)]
struct StepQuery {
    #[serde(default)]
    salvata: Option<String>,
    #[serde(default)]
    ripresa: Option<String>,
}

/// The notice at the top of a draft's page: saved on request, or found again.
fn draft_notice(query: &StepQuery) -> Option<&'static str> {
    if query.salvata.is_some() {
        Some("saved")
    } else if query.ripresa.is_some() {
        Some("resumed")
    } else {
        None
    }
}

#[get("/domande/{id}/passo/{n}")]
async fn step_get(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: web::Path<(String, usize)>,
    query: web::Query<StepQuery>,
) -> Result<HttpResponse, AppError> {
    let (id, n) = path.into_inner();
    let (_, app, service) = owned(&state, &req, &principal, &id, &[Scope::Domande]).await?;
    if app.status != Status::Bozza {
        return Ok(see_other(&format!("/domande/{id}")));
    }
    if n == 0 || n > service.form.steps.len() {
        return Err(AppError::NotFound);
    }
    step_page(
        &state,
        &req,
        service,
        &app,
        n,
        &[],
        draft_notice(&query),
        StatusCode::OK,
    )
    .await
}

#[post("/domande/{id}/passo/{n}")]
async fn step_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: web::Path<(String, usize)>,
    sent: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let (id, n) = path.into_inner();
    let (_, mut app, service) = owned(&state, &req, &principal, &id, &[Scope::Domande]).await?;
    if app.status != Status::Bozza {
        return Ok(see_other(&format!("/domande/{id}")));
    }
    if n == 0 || n > service.form.steps.len() {
        return Err(AppError::NotFound);
    }
    let step = &service.form.steps[n - 1];
    let now = state.clock.now_ms();
    form::read_step(step, &Submitted::new(&sent), &mut app.answers);
    let action = sent
        .iter()
        .find(|(k, _)| k == "azione")
        .map(|(_, v)| v.as_str())
        .unwrap_or("avanti");
    let reached = (app.current_step as usize).max(n);
    let here = format!("/domande/{id}/passo/{n}");
    if let Some(group) = action.strip_prefix("aggiungi:") {
        let field = step
            .fields
            .iter()
            .find(|f| f.id == group && f.kind == FieldKind::Group)
            .ok_or_else(|| AppError::BadRequest("Azione non valida.".into()))?;
        form::add_row(field, &mut app.answers);
        let rows = match app.answers.get(group) {
            Some(Value::Array(r)) => r.len(),
            _ => 0,
        };
        store::save_draft(&state.db, now, &id, &app.answers, reached).await?;
        return Ok(see_other(&format!(
            "{here}#{}",
            input_id(&format!("{group}.{}", rows.saturating_sub(1)))
        )));
    }
    if let Some(rest) = action.strip_prefix("rimuovi:") {
        let (group, index) = rest
            .rsplit_once(':')
            .and_then(|(g, i)| i.parse::<usize>().ok().map(|i| (g, i)))
            .ok_or_else(|| AppError::BadRequest("Azione non valida.".into()))?;
        let field = step
            .fields
            .iter()
            .find(|f| f.id == group && f.kind == FieldKind::Group)
            .ok_or_else(|| AppError::BadRequest("Azione non valida.".into()))?;
        form::remove_row(field, index, &mut app.answers);
        store::save_draft(&state.db, now, &id, &app.answers, reached).await?;
        return Ok(see_other(&format!("{here}#{}", input_id(group))));
    }
    if let Some(slot) = action.strip_prefix("allegati:") {
        // To the page of an attachment slot, the answers of this step kept.
        if !step
            .fields
            .iter()
            .any(|f| f.id == slot && f.kind == FieldKind::Attachment)
        {
            return Err(AppError::BadRequest("Azione non valida.".into()));
        }
        store::save_draft(&state.db, now, &id, &app.answers, reached).await?;
        return Ok(see_other(&format!(
            "/domande/{id}/allegati/{slot}?passo={n}"
        )));
    }
    match action {
        "salva" => {
            store::save_draft(&state.db, now, &id, &app.answers, reached).await?;
            Ok(see_other(&format!("{here}?salvata=1")))
        }
        "indietro" => {
            store::save_draft(&state.db, now, &id, &app.answers, reached).await?;
            Ok(see_other(&format!(
                "/domande/{id}/passo/{}",
                (n - 1).max(1)
            )))
        }
        _ => {
            let today = rome_date(now);
            let errors = form::validate_step(step, &mut app.answers, today);
            if !errors.is_empty() {
                store::save_draft(&state.db, now, &id, &app.answers, reached).await?;
                app.current_step = reached as i64;
                return step_page(
                    &state,
                    &req,
                    service,
                    &app,
                    n,
                    &errors,
                    None,
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await;
            }
            let next = n + 1;
            store::save_draft(&state.db, now, &id, &app.answers, reached.max(next)).await?;
            Ok(if next > service.form.steps.len() {
                see_other(&format!("/domande/{id}/riepilogo"))
            } else {
                see_other(&format!("/domande/{id}/passo/{next}"))
            })
        }
    }
}

/// Every step checked again (a definition may have changed, an earlier answer may have hidden or
/// shown fields): the problems, with the step where each is.
fn check_all(
    service: &Service,
    answers: &mut Answers,
    today: time::Date,
) -> Vec<(usize, FieldError)> {
    let mut all = Vec::new();
    for (i, step) in service.form.steps.iter().enumerate() {
        for e in form::validate_step(step, answers, today) {
            all.push((i + 1, e));
        }
        for field in &step.fields {
            if !form::visible(field, answers) {
                answers.remove(&field.id);
            }
        }
    }
    all
}

/// The required attachment slots (of the fields that apply) without an accepted document.
async fn missing_documents(
    state: &AppState,
    service: &Service,
    answers: &Answers,
    app_id: &str,
) -> Result<Vec<(usize, FieldError)>, AppError> {
    let required: Vec<(usize, &Field)> = service
        .form
        .steps
        .iter()
        .enumerate()
        .flat_map(|(i, step)| step.fields.iter().map(move |f| (i + 1, f)))
        .filter(|(_, f)| f.kind == FieldKind::Attachment && f.required && form::visible(f, answers))
        .collect();
    if required.is_empty() {
        return Ok(Vec::new());
    }
    let documents = crate::documents::for_application(&state.db, app_id).await?;
    let missing = required
        .into_iter()
        .filter(|(_, f)| {
            !documents
                .iter()
                .any(|d| d.slot == f.id && d.status == "accettato")
        })
        .map(|(step, f)| {
            (
                step,
                FieldError {
                    name: f.id.clone(),
                    label: f.label.clone(),
                    message: "carica almeno un documento (PDF, JPEG o PNG)".into(),
                },
            )
        })
        .collect();
    Ok(missing)
}

#[allow(clippy::too_many_arguments)]
async fn summary_page(
    state: &AppState,
    req: &HttpRequest,
    service: &Service,
    app: &Application,
    declaration_error: bool,
    ticked: &[String],
    notice: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let mut answers = app.answers.clone();
    let today = rome_date(state.clock.now_ms());
    let mut problems = check_all(service, &mut answers, today);
    problems.extend(missing_documents(state, service, &answers, &app.id).await?);
    let (open, availability) = open_text(service.availability.on(today));
    let mut ctx = Context::new();
    ctx.insert("service", service);
    ctx.insert("app_id", &app.id);
    ctx.insert("summary", &form::summary(&service.form, &answers));
    ctx.insert(
        "problems",
        &problems
            .iter()
            .map(|(step, e)| serde_json::json!({ "step": step, "label": e.label, "message": e.message }))
            .collect::<Vec<_>>(),
    );
    ctx.insert(
        "declarations",
        &service
            .form
            .declarations
            .iter()
            .map(|d| serde_json::json!({ "id": d.id, "text": d.text, "checked": ticked.contains(&d.id) }))
            .collect::<Vec<_>>(),
    );
    ctx.insert("declaration_error", &declaration_error);
    ctx.insert("notice", &notice);
    ctx.insert("open", &open);
    ctx.insert("availability", &availability);
    ctx.insert("closing", &closing_note(state, service));
    let documents = crate::documents::for_application(&state.db, &app.id).await?;
    ctx.insert(
        "attachments",
        &attachment_slots(service, &answers, &app.id, &documents),
    );
    let steps = step_links(service, Some(app), service.form.steps.len() + 1);
    ctx.insert("number", &steps.len());
    ctx.insert("steps", &steps);
    render_status(state, req, "applications/summary.html", ctx, status)
}

/// The attachment slots that apply, for the summary, each with the documents sent to it.
fn attachment_slots(
    service: &Service,
    answers: &Answers,
    app_id: &str,
    documents: &[crate::documents::Document],
) -> Vec<serde_json::Value> {
    service
        .form
        .fields()
        .filter(|f| f.kind == FieldKind::Attachment && form::visible(f, answers))
        .map(|f| {
            let sent: Vec<_> = documents
                .iter()
                .filter(|d| d.slot == f.id)
                .map(|d| serde_json::json!({ "label": d.label, "status": d.status_label(), "accepted": d.status == "accettato" }))
                .collect();
            serde_json::json!({
                "label": f.label,
                "documents": f.documents.join(", "),
                "required": f.required,
                "href": format!("/domande/{app_id}/allegati/{}", f.id),
                "sent": sent,
            })
        })
        .collect()
}

#[get("/domande/{id}/riepilogo")]
async fn summary_get(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    query: web::Query<StepQuery>,
) -> Result<HttpResponse, AppError> {
    let (_, app, service) = owned(&state, &req, &principal, &id, &[Scope::Domande]).await?;
    if app.status != Status::Bozza {
        return Ok(see_other(&format!("/domande/{}", app.id)));
    }
    let notice = draft_notice(&query);
    summary_page(
        &state,
        &req,
        service,
        &app,
        false,
        &[],
        notice,
        StatusCode::OK,
    )
    .await
}

#[post("/domande/{id}/invia")]
async fn submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    sent: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let (subject, app, service) = owned(&state, &req, &principal, &id, &[Scope::Domande]).await?;
    let person = &subject.person;
    let done = format!("/domande/{}?inviata=1", app.id);
    if app.status != Status::Bozza {
        // A double click or a retried request: the same receipt, nothing new.
        return Ok(see_other(&done));
    }
    let now = state.clock.now_ms();
    let today = rome_date(now);
    let ticked: Vec<String> = sent
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("dichiarazione_").filter(|_| v == "si"))
        .map(str::to_string)
        .collect();
    let mut answers = app.answers.clone();
    let mut problems = check_all(service, &mut answers, today);
    problems.extend(missing_documents(&state, service, &answers, &app.id).await?);
    let all_ticked = service
        .form
        .declarations
        .iter()
        .all(|d| ticked.contains(&d.id));
    let open = matches!(service.availability.on(today), Open::Yes { .. });
    if !problems.is_empty() || !all_ticked || !open {
        let status = if open {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::CONFLICT
        };
        return summary_page(
            &state,
            &req,
            service,
            &app,
            !all_ticked,
            &ticked,
            None,
            status,
        )
        .await;
    }
    let submission = Submission {
        ente_code: app.ente_code.clone(),
        service_code: app.service_code.clone(),
        applicant_cf: person.cf.to_string(),
        applicant_name: person.display_name(),
        service_title: service.title.clone(),
        form_version: service.form.version,
        term_days: service.term_days,
        summary: form::summary(&service.form, &answers),
        answers,
        declarations: service
            .form
            .declarations
            .iter()
            .map(|d| d.text.clone())
            .collect(),
        slot_labels: service
            .form
            .fields()
            .filter(|f| f.kind == FieldKind::Attachment)
            .map(|f| (f.id.clone(), f.label.clone()))
            .collect(),
        delegate: subject.mandate.as_ref().map(|m| store::SnapshotDelegate {
            cf: subject.actor.cf.to_string(),
            name: subject.actor.display_name(),
            role: m.kind.agent_label().to_string(),
        }),
    };
    let sending = store::Sending {
        now_ms: now,
        id: app.id.clone(),
        submission,
    };
    match state.desk.submit(sending).await? {
        Some(sent) => {
            if let store::Submitted::New(_) = sent {
                tracing::info!(service = %service.code, "application submitted");
            }
            Ok(see_other(&done))
        }
        None => Err(AppError::NotFound),
    }
}

#[post("/domande/{id}/elimina")]
async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let (_, app, _) = owned(&state, &req, &principal, &id, &[Scope::Domande]).await?;
    if !store::delete_draft(&state.db, &app.id).await? {
        return Err(AppError::BadRequest(
            "Solo una bozza si può eliminare: una domanda inviata si può ritirare dalla sua pagina."
                .into(),
        ));
    }
    Ok(see_other("/area-personale/pratiche?eliminata=1"))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(service_page)
        .service(start_page)
        .service(start)
        .service(application)
        .service(step_get)
        .service(step_post)
        .service(summary_get)
        .service(submit)
        .service(delete);
}
