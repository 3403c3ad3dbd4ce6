//! Tera templates, embedded in the binary from `templates/`, autoescaped. Every page gets the same
//! base context: the ente, the signed-in person and the CSRF token; `asset(path=…)` gives a static
//! asset's URL (see `web::assets`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use include_dir::{include_dir, Dir};
use tera::{Context, Tera};

use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::session::Session;

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../templates");

pub fn load(assets: &crate::web::assets::Assets) -> Result<Tera, tera::Error> {
    let mut tera = Tera::default();
    tera.register_function("asset", assets.tera_function());
    let mut files = Vec::new();
    collect(&TEMPLATES, &mut files);
    tera.add_raw_templates(files)?;
    tera.autoescape_on(vec![".html", ".txt"]);
    Ok(tera)
}

/// The templates' sources (the assets keep the icons they name).
pub fn sources() -> Vec<&'static str> {
    let mut files = Vec::new();
    collect(&TEMPLATES, &mut files);
    files.into_iter().map(|(_, text)| text).collect()
}

fn collect(dir: &'static Dir<'static>, out: &mut Vec<(String, &'static str)>) {
    for file in dir.files() {
        if let Some(text) = file.contents_utf8() {
            out.push((file.path().to_string_lossy().into_owned(), text));
        }
    }
    for sub in dir.dirs() {
        collect(sub, out);
    }
}

pub fn base_context(state: &AppState, session: Option<&Session>, req: &HttpRequest) -> Context {
    let mut ctx = Context::new();
    ctx.insert("ente", &state.config.ente);
    ctx.insert("dev_idp", &state.config.dev_idp_enabled());
    ctx.insert("path", req.path());
    if let Some(session) = session {
        ctx.insert("csrf_token", &session.data.csrf);
        if let Some(person) = session.data.principal.as_ref().and_then(|p| p.person()) {
            ctx.insert("user", &person.display_name());
        }
        if let Some(acting) = &session.data.acting_for {
            ctx.insert("acting_for", &acting.name);
        }
    }
    ctx
}

/// Renders `name` with the base context plus `extra`.
pub fn render(
    state: &AppState,
    req: &HttpRequest,
    name: &str,
    extra: Context,
) -> Result<HttpResponse, AppError> {
    render_status(state, req, name, extra, StatusCode::OK)
}

/// As [`render`], with another status (422 for a form sent back with its errors).
pub fn render_status(
    state: &AppState,
    req: &HttpRequest,
    name: &str,
    extra: Context,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let session = crate::web::session::current(req);
    let mut ctx = base_context(state, session.as_ref(), req);
    ctx.extend(extra);
    let html = state.templates.render(name, &ctx)?;
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(html))
}
