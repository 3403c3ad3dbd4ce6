//! The area personale: the signed-in person's own desk, with its sections. Each section fills in as
//! its capability lands (pratiche, appuntamenti, …); until then it says plainly that there is nothing.

use actix_web::{get, web, HttpMessage, HttpRequest, HttpResponse};
use serde::Serialize;
use tera::Context;

use crate::auth::access::{self, Access, Action};
use crate::auth::{require_level, Principal};
use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::templates::render;
use crate::web::RequestId;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Section {
    pub slug: &'static str,
    pub title: &'static str,
    pub icon: &'static str,
    pub summary: &'static str,
    pub empty: &'static str,
}

pub const SECTIONS: &[Section] = &[
    Section {
        slug: "pratiche",
        title: "Pratiche",
        icon: "it-folder",
        summary: "Le domande inviate e il loro stato",
        empty: "Non hai ancora presentato domande.",
    },
    Section {
        slug: "appuntamenti",
        title: "Appuntamenti",
        icon: "it-calendar",
        summary: "Gli appuntamenti prenotati con il segretariato sociale",
        empty: "Non hai appuntamenti prenotati.",
    },
    Section {
        slug: "documenti",
        title: "Documenti",
        icon: "it-file",
        summary: "I documenti caricati e le ricevute",
        empty: "Non ci sono documenti.",
    },
    Section {
        slug: "messaggi",
        title: "Messaggi",
        icon: "it-mail",
        summary: "Le comunicazioni dell'ufficio",
        empty: "Non hai messaggi.",
    },
    Section {
        slug: "scadenze",
        title: "Scadenze",
        icon: "it-clock",
        summary: "Le date entro cui rispondere o rinnovare",
        empty: "Non hai scadenze in arrivo.",
    },
    Section {
        slug: "deleghe",
        title: "Deleghe",
        icon: "it-user",
        summary: "Chi può operare per te e per chi puoi operare tu",
        empty: "Non ci sono deleghe attive.",
    },
    Section {
        slug: "impostazioni",
        title: "Impostazioni",
        icon: "it-settings",
        summary: "I tuoi dati e le preferenze di contatto",
        empty: "",
    },
];

#[derive(Debug, Serialize)]
struct PersonView {
    name: String,
    cf: String,
    birth_date: Option<String>,
    email: Option<String>,
    phone: Option<String>,
}

async fn page(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    section: Option<&Section>,
) -> Result<HttpResponse, AppError> {
    // Personal pages need SPID level 2.
    if let Some(elsewhere) = require_level(req, principal, 2) {
        return Ok(elsewhere);
    }
    let Some(person) = principal.person() else {
        return Err(AppError::Forbidden);
    };
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    let access = Access {
        subject: &person.cf,
        action: Action::Read,
        object: "area-personale",
        purpose: "area personale",
        ente: None,
    };
    access::authorize(
        &state.db,
        state.clock.now_ms(),
        principal,
        &access,
        request_id.as_deref(),
    )
    .await?;
    let row: Option<(Option<String>, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT birth_date, email, phone FROM people WHERE cf = $1")
            .bind(person.cf.as_str())
            .fetch_optional(&state.db.pool)
            .await?;
    let (birth_date, email, phone) = row.unwrap_or_default();
    let view = PersonView {
        name: person.display_name(),
        cf: person.cf.to_string(),
        birth_date,
        email,
        phone,
    };
    let mut ctx = Context::new();
    ctx.insert("person", &view);
    ctx.insert("sections", SECTIONS);
    ctx.insert("section", &section);
    ctx.insert(
        "is_admin",
        &!principal
            .enti_with(crate::auth::Role::Amministratore)
            .is_empty(),
    );
    render(state, req, "area_personale.html", ctx)
}

#[get("/area-personale")]
async fn overview(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
) -> Result<HttpResponse, AppError> {
    page(&state, &req, &principal, None).await
}

#[get("/area-personale/{section}")]
async fn section_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    slug: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let section = SECTIONS
        .iter()
        .find(|s| s.slug == slug.as_str())
        .ok_or(AppError::NotFound)?;
    page(&state, &req, &principal, Some(section)).await
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(overview).service(section_page);
}
