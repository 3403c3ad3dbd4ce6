//! Public pages: the home with the list of services, the accessibility declaration, the privacy notice.

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use tera::Context;

use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::templates::render;

#[derive(Debug, Deserialize)]
struct HomeQuery {
    uscita: Option<String>,
}

#[get("/")]
async fn home(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<HomeQuery>,
) -> Result<HttpResponse, AppError> {
    let mut ctx = Context::new();
    ctx.insert("services", &state.catalogue.services);
    ctx.insert("logged_out", &q.uscita.is_some());
    render(&state, &req, "home.html", ctx)
}

#[get("/dichiarazione-accessibilita")]
async fn accessibility(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, AppError> {
    render(&state, &req, "accessibilita.html", Context::new())
}

#[get("/privacy")]
async fn privacy(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    render(&state, &req, "privacy.html", Context::new())
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(home).service(accessibility).service(privacy);
}
