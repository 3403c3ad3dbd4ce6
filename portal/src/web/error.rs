//! The one error type of the web layer and its mapping to HTTP. The citizen sees a clear Italian
//! page; the log keeps the cause; nothing internal (SQL, stack, paths) reaches a page.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{web, HttpResponse, ResponseError};

use crate::db::DbError;
use crate::server::AppState;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    /// Refused, with the reason the person reads (Italian): e.g. a delegation that does not cover
    /// the page.
    #[error("not allowed: {0}")]
    NotAllowed(String),
    #[error("missing or invalid CSRF token")]
    Csrf,
    /// A request the citizen can correct; the text is shown to them (Italian).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A login that could not be completed; the cause is logged, the citizen is told to retry.
    #[error("login failed: {0}")]
    Login(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("internal: {0}")]
    Internal(String),
    /// Not an error for the person: the page needs something first (a login, a higher SPID level);
    /// the browser is sent to this local address, which brings it back afterwards.
    #[error("see other: {0}")]
    Elsewhere(String),
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::Db(DbError::Sqlx(e))
    }
}

impl From<crate::applications::desk::DeskError> for AppError {
    fn from(e: crate::applications::desk::DeskError) -> Self {
        match e {
            crate::applications::desk::DeskError::Db(e) => e.into(),
            stopped => AppError::Internal(stopped.to_string()),
        }
    }
}

impl From<tera::Error> for AppError {
    fn from(e: tera::Error) -> Self {
        AppError::Internal(format!("template: {}", crate::telemetry::error_chain(&e)))
    }
}

/// What the error page says; attached to error responses and rendered by [`render_error_page`].
#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub title: &'static str,
    pub message: String,
}

impl ErrorPage {
    fn for_status(status: StatusCode) -> ErrorPage {
        let (title, message) = match status.as_u16() {
            400 => ("Richiesta non valida", "La richiesta non è valida. Torna indietro e riprova."),
            401 | 403 => ("Accesso non consentito", "Non hai i permessi per vedere questa pagina."),
            404 => ("Pagina non trovata", "La pagina che cerchi non esiste o è stata spostata."),
            405 => ("Operazione non consentita", "Questa operazione non è consentita su questa pagina."),
            413 => ("File troppo grande", "Il contenuto inviato è troppo grande."),
            _ if status.is_client_error() => ("Richiesta non valida", "La richiesta non è valida. Torna indietro e riprova."),
            _ => (
                "Servizio momentaneamente non disponibile",
                "Si è verificato un problema da parte nostra. Riprova tra qualche minuto; se il problema continua, contatta l'ufficio.",
            ),
        };
        ErrorPage {
            title,
            message: message.to_string(),
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Forbidden | AppError::NotAllowed(_) | AppError::Csrf => StatusCode::FORBIDDEN,
            AppError::BadRequest(_) | AppError::Login(_) => StatusCode::BAD_REQUEST,
            AppError::Db(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AppError::Elsewhere(_) => StatusCode::SEE_OTHER,
        }
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        if let AppError::Elsewhere(location) = self {
            return HttpResponse::SeeOther()
                .insert_header((header::LOCATION, location.as_str()))
                .finish();
        }
        let status = self.status_code();
        let mut page = ErrorPage::for_status(status);
        match self {
            AppError::Csrf => {
                page.title = "Sessione scaduta";
                page.message = "La pagina era aperta da troppo tempo o la richiesta non è valida. Ricarica la pagina e riprova: i dati già salvati non sono andati persi.".into();
            }
            AppError::BadRequest(message) | AppError::NotAllowed(message) => {
                page.message = message.clone()
            }
            AppError::Login(cause) => {
                tracing::warn!(cause = %cause, "login not completed");
                page.title = "Accesso non riuscito";
                page.message = "Non è stato possibile completare l'accesso. Riprova dall'inizio: se il problema continua, prova con un altro metodo di accesso.".into();
            }
            AppError::Db(_) | AppError::Internal(_) => {
                tracing::error!(error = %self, "request failed");
            }
            AppError::NotFound | AppError::Forbidden | AppError::Elsewhere(_) => {}
        }
        let mut response = HttpResponse::new(status);
        response.extensions_mut().insert(page);
        response
    }
}

/// Turns every error response that is not JSON or a rendered page into the Italian error page (404 of unknown routes,
/// 405, payload errors, and [`AppError`] alike).
pub fn render_error_page<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let keep = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json") || ct.starts_with("text/html"));
    // JSON answers, and pages a handler rendered itself (a form shown again with its errors), stay.
    if keep {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let page = res
        .response()
        .extensions()
        .get::<ErrorPage>()
        .cloned()
        .unwrap_or_else(|| ErrorPage::for_status(status));
    let (req, res) = res.into_parts();
    let html = req
        .app_data::<web::Data<AppState>>()
        .and_then(|state| {
            let session = crate::web::session::current(&req);
            let mut ctx = crate::web::templates::base_context(state, session.as_ref(), &req);
            ctx.insert("title", page.title);
            ctx.insert("message", &page.message);
            ctx.insert("status", &status.as_u16());
            match state.templates.render("error.html", &ctx) {
                Ok(html) => Some(html),
                Err(e) => {
                    tracing::error!(error = %AppError::from(e), "error page failed to render");
                    None
                }
            }
        })
        .unwrap_or_else(|| {
            format!(
                "<!doctype html><html lang=\"it\"><title>{0}</title><h1>{0}</h1><p>{1}</p></html>",
                page.title, page.message
            )
        });
    let mut new = HttpResponse::with_body(status, html);
    for (name, value) in res.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().append(name.clone(), value.clone());
        }
    }
    new.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    let res = ServiceResponse::new(req, new.map_into_boxed_body()).map_into_right_body();
    Ok(ErrorHandlerResponse::Response(res))
}
