//! The citizen's side: the "Deleghe" section of the area personale — the delegations given and
//! received, the legal representations recorded by the office, a new delegation, accepting,
//! refusing and revoking — and entering and leaving the "acting for" mode.

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Serialize;
use tera::Context;
use time::Duration;

use super::store::{self, NewMandate};
use super::{own_only, Kind, Mandate, Scope, State};
use crate::auth::{person_at_level, see_other, Person, Principal, LOGIN_LEVEL};
use crate::domain::italian_time::{date_time, rome_date};
use crate::domain::CodiceFiscale;
use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::session::{self, ActingFor};
use crate::web::templates::render_status;

const PAGE: &str = "/area-personale/deleghe";
/// The longest a delegation made online can last.
const MAX_YEARS: i64 = 3;

#[derive(Debug, Serialize)]
struct MandateView {
    id: String,
    kind: &'static str,
    representation: bool,
    origin: String,
    /// The other person: the delegate (given) or the represented person (received).
    other_name: String,
    other_cf: String,
    scopes: String,
    valid_until: String,
    state: &'static str,
    state_label: &'static str,
    created: String,
    can_accept: bool,
    can_act: bool,
    can_revoke: bool,
}

fn view(m: &Mandate, me: &str, today: time::Date) -> MandateView {
    let given = m.principal_cf == me;
    let expired = m.expired(today);
    let (state_label, state) = match m.state {
        State::Attiva if expired => ("Scaduta", "scaduta"),
        State::Attiva => ("Attiva", "attiva"),
        State::Proposta if expired => ("Scaduta senza risposta", "scaduta"),
        State::Proposta if given => ("In attesa di accettazione", "proposta"),
        State::Proposta => ("Da accettare", "proposta"),
        State::Rifiutata => ("Rifiutata", "rifiutata"),
        State::Revocata => ("Revocata", "revocata"),
    };
    let open = matches!(m.state, State::Attiva | State::Proposta) && !expired;
    MandateView {
        id: m.id.clone(),
        kind: m.kind.label(),
        representation: m.kind.is_representation(),
        origin: m.origin.clone(),
        other_name: if given {
            m.agent_name()
        } else {
            m.principal_name()
        },
        other_cf: if given {
            m.agent_cf.clone()
        } else {
            m.principal_cf.clone()
        },
        scopes: m.scopes_text(),
        valid_until: m.valid_until_text(),
        state,
        state_label,
        created: date_time(m.created_at),
        can_accept: !given && m.state == State::Proposta && !expired,
        can_act: !given && m.in_force(today),
        // A legal representation is ended by the office, which recorded it.
        can_revoke: open && m.kind == Kind::Delega,
    }
}

/// What the person typed in the new-delegation form, and what is wrong with it.
#[derive(Debug, Default, Serialize)]
struct DraftForm {
    cf: String,
    nome: String,
    cognome: String,
    scopes: Vec<String>,
    fino_al: String,
    /// Field → message.
    errors: std::collections::BTreeMap<String, String>,
}

async fn list_page(
    state: &AppState,
    req: &HttpRequest,
    person: &Person,
    form: &DraftForm,
    outcome: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let today = rome_date(state.clock.now_ms());
    let me = person.cf.as_str();
    let all = store::for_person(&state.db, me).await?;
    let given: Vec<MandateView> = all
        .iter()
        .filter(|m| m.principal_cf == me)
        .map(|m| view(m, me, today))
        .collect();
    let received: Vec<MandateView> = all
        .iter()
        .filter(|m| m.agent_cf == me)
        .map(|m| view(m, me, today))
        .collect();
    let mut ctx = Context::new();
    ctx.insert("given", &given);
    ctx.insert("received", &received);
    ctx.insert("form", form);
    ctx.insert("outcome", &outcome);
    ctx.insert(
        "scopes",
        &Scope::ALL
            .iter()
            .map(|s| (s.as_str(), s.label()))
            .collect::<Vec<_>>(),
    );
    ctx.insert("default_until", &(today + Duration::days(365)).to_string());
    ctx.insert(
        "max_until",
        &(today + Duration::days(365 * MAX_YEARS)).to_string(),
    );
    render_status(state, req, "delegations/deleghe.html", ctx, status)
}

/// The page again with the form as typed and its errors (422).
async fn form_again(
    state: &AppState,
    req: &HttpRequest,
    person: &Person,
    form: &DraftForm,
) -> Result<HttpResponse, AppError> {
    list_page(
        state,
        req,
        person,
        form,
        None,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

#[derive(Debug, serde::Deserialize)]
struct Outcome {
    esito: Option<String>,
}

#[get("/area-personale/deleghe")]
async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    q: web::Query<Outcome>,
) -> Result<HttpResponse, AppError> {
    let person = person_at_level(&req, &principal, LOGIN_LEVEL)?;
    own_only(&req)?;
    let outcome = match q.esito.as_deref() {
        Some("creata") => Some("Delega registrata: la persona delegata la troverà nella sua area personale, da accettare."),
        Some("accettata") => Some("Delega accettata: ora puoi operare per conto della persona che ti ha delegato."),
        Some("rifiutata") => Some("Delega rifiutata."),
        Some("revocata") => Some("Delega revocata: da ora non vale più."),
        Some("terminata") => Some("Ora vedi di nuovo i tuoi dati: non operi più per conto di altre persone."),
        _ => None,
    };
    list_page(
        &state,
        &req,
        person,
        &DraftForm::default(),
        outcome,
        StatusCode::OK,
    )
    .await
}

/// Reads the form: what was typed (with its errors), and the delegate, the scopes and the last day
/// when there are none.
fn parse(
    fields: &[(String, String)],
    me: &Person,
    today: time::Date,
) -> (DraftForm, Option<(CodiceFiscale, Vec<Scope>, time::Date)>) {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let mut form = DraftForm {
        cf: get("cf").to_uppercase(),
        nome: get("nome"),
        cognome: get("cognome"),
        scopes: fields
            .iter()
            .filter(|(k, _)| k == "ambito")
            .map(|(_, v)| v.clone())
            .collect(),
        fino_al: get("fino_al"),
        errors: Default::default(),
    };
    let mut errors = std::collections::BTreeMap::new();
    let cf = match CodiceFiscale::parse(&form.cf) {
        Ok(cf) if cf == me.cf => {
            note(&mut errors, "cf", "Non puoi delegare te stesso: indica il codice fiscale della persona che opererà per te.");
            None
        }
        Ok(cf) => Some(cf),
        Err(_) => {
            note(
                &mut errors,
                "cf",
                "Il codice fiscale non è valido: controlla i 16 caratteri.",
            );
            None
        }
    };
    if form.nome.is_empty() || form.nome.chars().count() > 100 {
        note(
            &mut errors,
            "nome",
            "Indica il nome della persona delegata.",
        );
    }
    if form.cognome.is_empty() || form.cognome.chars().count() > 100 {
        note(
            &mut errors,
            "cognome",
            "Indica il cognome della persona delegata.",
        );
    }
    let scopes: Vec<Scope> = form.scopes.iter().filter_map(|s| Scope::parse(s)).collect();
    if scopes.is_empty() {
        note(
            &mut errors,
            "ambito",
            "Scegli almeno una cosa che la persona delegata potrà fare.",
        );
    }
    let until = crate::applications::form::parse_date(&form.fino_al);
    match until {
        None => note(
            &mut errors,
            "fino_al",
            "Indica fino a quando vale la delega, come 31/12/2027.",
        ),
        Some(d) if d < today => note(
            &mut errors,
            "fino_al",
            "La data di fine è già passata: indica una data da oggi in poi.",
        ),
        Some(d) if d > today + Duration::days(365 * MAX_YEARS) => note(
            &mut errors,
            "fino_al",
            "Una delega fatta online vale al massimo tre anni: indica una data più vicina.",
        ),
        Some(_) => {}
    }
    form.errors = errors;
    let parsed = match (cf, until) {
        (Some(cf), Some(until)) if form.errors.is_empty() => Some((cf, scopes, until)),
        _ => None,
    };
    (form, parsed)
}

fn note(errors: &mut std::collections::BTreeMap<String, String>, field: &str, message: &str) {
    errors
        .entry(field.to_string())
        .or_insert_with(|| message.to_string());
}

#[post("/area-personale/deleghe")]
async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    fields: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let person = person_at_level(&req, &principal, LOGIN_LEVEL)?;
    own_only(&req)?;
    let now = state.clock.now_ms();
    let today = rome_date(now);
    let (form, parsed) = parse(&fields, person, today);
    let Some((cf, scopes, until)) = parsed else {
        return form_again(&state, &req, person, &form).await;
    };
    let already = store::for_person(&state.db, person.cf.as_str())
        .await?
        .into_iter()
        .any(|m| {
            m.principal_cf == person.cf.as_str()
                && m.agent_cf == cf.as_str()
                && m.kind == Kind::Delega
                && matches!(m.state, State::Attiva | State::Proposta)
                && !m.expired(today)
        });
    if already {
        let mut form = form;
        note(
            &mut form.errors,
            "cf",
            "Hai già una delega in corso per questa persona: revocala qui sotto prima di farne una nuova.",
        );
        return form_again(&state, &req, person, &form).await;
    }
    let id = store::create(
        &state.db,
        now,
        &NewMandate {
            kind: Kind::Delega,
            origin: "online",
            principal: (person.cf.as_str(), &person.given_name, &person.family_name),
            agent: (cf.as_str(), &form.nome, &form.cognome),
            scopes: &scopes,
            valid_until: until,
            state: State::Proposta,
            created_by: person.cf.as_str(),
            document: None,
            ente_code: None,
        },
    )
    .await?;
    // The delegate hears of it in their messages (and by e-mail, if the portal knows theirs).
    let alert = crate::alerts::Alert::new(
        crate::alerts::Kind::Delega,
        cf.as_str(),
        &id,
        format!("delega:{id}"),
    );
    crate::alerts::schedule_now(&state.db, now, now, &alert).await?;
    tracing::info!("delegation proposed");
    Ok(see_other(&format!("{PAGE}?esito=creata")))
}

/// The same delegation on the paper form, prefilled, to sign and bring or send to the office (for
/// who prefers paper, or whose delegate has no digital identity yet).
#[post("/area-personale/deleghe/modulo")]
async fn paper_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    fields: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let person = person_at_level(&req, &principal, LOGIN_LEVEL)?;
    own_only(&req)?;
    let today = rome_date(state.clock.now_ms());
    let (form, parsed) = parse(&fields, person, today);
    let Some((cf, _, until)) = parsed else {
        return form_again(&state, &req, person, &form).await;
    };
    let paper = state.paper_forms.get("delega").ok_or(AppError::NotFound)?;
    let value_of = |f: &crate::documents::paper::PaperField| match f.id.as_str() {
        "delegante_cognome" => person.family_name.clone(),
        "delegante_nome" => person.given_name.clone(),
        "delegante_cf" => person.cf.to_string(),
        "delegato_cognome" => form.cognome.clone(),
        "delegato_nome" => form.nome.clone(),
        "delegato_cf" => cf.to_string(),
        "fino_al" => format!(
            "{:02}/{:02}/{}",
            until.day(),
            u8::from(until.month()),
            until.year()
        ),
        _ => String::new(),
    };
    let pdf = paper
        .pdf(&state.config.ente.name, &format!("delega:{cf}"), &value_of)
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("application/pdf")
        .insert_header(("Content-Disposition", "attachment; filename=\"delega.pdf\""))
        .body(pdf))
}

/// The mandate `id` if `person` is one of its two sides; otherwise it does not exist for them.
async fn mine(state: &AppState, id: &str, person: &Person) -> Result<Mandate, AppError> {
    store::get(&state.db, id)
        .await?
        .filter(|m| m.principal_cf == person.cf.as_str() || m.agent_cf == person.cf.as_str())
        .ok_or(AppError::NotFound)
}

#[post("/area-personale/deleghe/{id}/accetta")]
async fn accept(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    answer(&state, &req, &principal, &id, true).await
}

#[post("/area-personale/deleghe/{id}/rifiuta")]
async fn refuse(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    answer(&state, &req, &principal, &id, false).await
}

async fn answer(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    id: &str,
    accepting: bool,
) -> Result<HttpResponse, AppError> {
    let person = person_at_level(req, principal, LOGIN_LEVEL)?;
    own_only(req)?;
    let m = mine(state, id, person).await?;
    let now = state.clock.now_ms();
    if m.agent_cf != person.cf.as_str() {
        return Err(AppError::NotFound);
    }
    if m.expired(rome_date(now)) {
        return Err(AppError::BadRequest(
            "Questa delega è scaduta prima che tu la accettassi: chiedi una nuova delega.".into(),
        ));
    }
    let names = accepting.then_some((person.given_name.as_str(), person.family_name.as_str()));
    if !store::answer(&state.db, now, &m.id, person.cf.as_str(), names).await? {
        return Err(AppError::BadRequest(
            "Questa delega non è più in attesa di risposta: può essere stata revocata da chi l'aveva fatta.".into(),
        ));
    }
    Ok(see_other(&format!(
        "{PAGE}?esito={}",
        if accepting { "accettata" } else { "rifiutata" }
    )))
}

#[post("/area-personale/deleghe/{id}/revoca")]
async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let person = person_at_level(&req, &principal, LOGIN_LEVEL)?;
    own_only(&req)?;
    let m = mine(&state, &id, person).await?;
    if m.kind != Kind::Delega {
        return Err(AppError::BadRequest(
            "Una rappresentanza legale si chiude presso l'ufficio, che l'ha registrata: portaci il provvedimento che la modifica.".into(),
        ));
    }
    if !store::revoke(&state.db, state.clock.now_ms(), &m.id, person.cf.as_str()).await? {
        return Err(AppError::BadRequest(
            "Questa delega era già terminata.".into(),
        ));
    }
    tracing::info!("delegation revoked");
    Ok(see_other(&format!("{PAGE}?esito=revocata")))
}

/// Enters the "acting for" mode for the person who gave mandate `id` to the signed-in person.
#[post("/area-personale/deleghe/{id}/opera")]
async fn act_for(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let person = person_at_level(&req, &principal, LOGIN_LEVEL)?;
    let m = mine(&state, &id, person).await?;
    if m.agent_cf != person.cf.as_str() {
        return Err(AppError::NotFound);
    }
    if !m.in_force(rome_date(state.clock.now_ms())) {
        return Err(AppError::BadRequest(
            "Questa delega non è attiva: non puoi operare per conto di questa persona.".into(),
        ));
    }
    session::set_acting_for(
        &state.db,
        &req,
        Some(ActingFor {
            mandate_id: m.id.clone(),
            name: m.principal_name(),
        }),
    )
    .await?;
    Ok(see_other("/area-personale"))
}

/// Leaves the "acting for" mode.
#[post("/area-personale/deleghe/torna")]
async fn back_to_own(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
) -> Result<HttpResponse, AppError> {
    person_at_level(&req, &principal, LOGIN_LEVEL)?;
    session::set_acting_for(&state.db, &req, None).await?;
    Ok(see_other(&format!("{PAGE}?esito=terminata")))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    // `torna` before `{id}/…`, and the whole set before the area personale's `{section}`.
    cfg.service(back_to_own)
        .service(list)
        .service(create)
        .service(paper_form)
        .service(accept)
        .service(refuse)
        .service(revoke)
        .service(act_for);
}
