//! Request guards that apply to every route: the session is loaded here, every state-changing
//! request must carry the session's CSRF token (form field `csrf_token` or header `X-CSRF-Token`)
//! and come from our own origin, and every response gets the security headers.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::web::{self, Bytes};
use actix_web::{Error, HttpMessage};

use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::session;

/// Paths whose POSTs are authenticated by other means and so carry no CSRF token: the OpenID
/// Connect callback (`form_post`, bound to the session by `state`), and the development identity
/// provider's back-channel endpoints (client assertion, bearer token).
const CSRF_EXEMPT: &[&str] = &[
    "/auth/callback",
    "/dev-idp/token",
    "/dev-idp/userinfo",
    "/dev-idp/revoke",
    // The CSI's machine endpoints: bearer tokens, no cookies.
    "/csi/token",
    "/csi/eventi",
    "/csi/eventi/conferma",
];

/// Form bodies larger than this are not read for the token (and are refused).
const MAX_FORM_BYTES: usize = 256 * 1024;

pub async fn session_and_csrf<B: MessageBody>(
    mut req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    match guard(&mut req).await {
        Ok(()) => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
        // Answered here, so that the error page and the headers are added like for any other.
        Err(e) => Ok(req.error_response(e).map_into_right_body()),
    }
}

async fn guard(req: &mut ServiceRequest) -> Result<(), Error> {
    if req.path().starts_with("/static/") {
        return Ok(());
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Err(AppError::Internal("application state missing".into()).into());
    };
    let loaded = match req.cookie(session::cookie_name(&state)) {
        Some(cookie) => session::load(&state, cookie.value()).await?,
        None => None,
    };
    if let Some(s) = &loaded {
        req.extensions_mut().insert(s.clone());
    }

    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method && !CSRF_EXEMPT.contains(&req.path()) {
        if !same_origin(req, &state) {
            return Err(AppError::Csrf.into());
        }
        let expected = loaded
            .as_ref()
            .map(|s| s.data.csrf.clone())
            .unwrap_or_default();
        let mut presented = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let is_form = content_type.starts_with("application/x-www-form-urlencoded");
        // A plain multipart form (an upload without script) carries its token in the query.
        let is_multipart = content_type.starts_with("multipart/form-data");
        if presented.is_none() && is_multipart {
            presented = url::form_urlencoded::parse(req.query_string().as_bytes())
                .find(|(k, _)| k == "csrf_token")
                .map(|(_, v)| v.into_owned());
        }
        if is_form {
            // Every form's answers lose their invisible and reordering characters here, once,
            // before any handler reads them (see `domain::text`).
            let body = clean_form(&read_body(req).await?);
            if presented.is_none() {
                presented = url::form_urlencoded::parse(&body)
                    .find(|(k, _)| k == "csrf_token")
                    .map(|(_, v)| v.into_owned());
            }
            req.set_payload(Payload::from(body));
        }
        let ok = !expected.is_empty()
            && presented.is_some_and(|p| constant_time_eq(p.as_bytes(), expected.as_bytes()));
        if !ok {
            tracing::warn!("state-changing request refused: CSRF token missing or wrong");
            return Err(AppError::Csrf.into());
        }
    }
    Ok(())
}

/// A form body with each value cleaned of hidden characters (names and order kept).
fn clean_form(body: &[u8]) -> Bytes {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in url::form_urlencoded::parse(body) {
        out.append_pair(&name, &crate::domain::text::clean(&value));
    }
    Bytes::from(out.finish())
}

async fn read_body(req: &mut ServiceRequest) -> Result<Bytes, Error> {
    let mut payload = req.take_payload();
    let mut body = web::BytesMut::new();
    use futures_core::Stream;
    use std::pin::Pin;
    while let Some(chunk) = std::future::poll_fn(|cx| Pin::new(&mut payload).poll_next(cx)).await {
        let chunk = chunk?;
        if body.len() + chunk.len() > MAX_FORM_BYTES {
            return Err(AppError::BadRequest("Il modulo inviato è troppo grande.".into()).into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// When the browser says where the request comes from (`Origin`, or `Sec-Fetch-Site`), it must be us.
fn same_origin(req: &ServiceRequest, state: &AppState) -> bool {
    if let Some(site) = req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
    {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    match req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    {
        None | Some("null") => true,
        Some(origin) => origin.trim_end_matches('/') == state.public_origin(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Headers on every response. Pages are never cached (they hold personal data); static assets
/// override `Cache-Control` with their own long lifetime.
pub fn headers(https: bool) -> DefaultHeaders {
    let csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
               font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; \
               form-action 'self'; frame-ancestors 'none'";
    let mut headers = DefaultHeaders::new()
        .add((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(csp),
        ))
        .add((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .add((
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .add((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .add((
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
        ))
        .add((
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ))
        .add((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    if https {
        headers = headers.add((
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        ));
    }
    headers
}
