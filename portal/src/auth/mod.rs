//! Login and logout: the login page ("Entra con SPID", "Entra con CIE"), the redirect to the identity
//! provider, the callback that turns a verified identity into a fresh session, and logout.

pub mod access;
pub mod dev_idp;
pub mod federation;
pub mod keys;
pub mod oidc;
mod principal;

use actix_web::http::header;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tera::Context;

pub use principal::{Membership, Person, Principal, Role};

use crate::auth::oidc::{AuthRequest, Identity, OidcError};
use crate::server::AppState;
use crate::telemetry::JobLabels;
use crate::web::error::AppError;
use crate::web::session::{self, ProviderToken, SessionData};
use crate::web::templates::{render, render_status};

/// The level asked for at login: personal data needs SPID level 2.
pub const LOGIN_LEVEL: u8 = 2;

/// A login in progress, kept in the (pre-login) session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    pub request: AuthRequest,
    pub next: String,
}

/// Only local paths are followed after login.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') && p.len() < 512 =>
        {
            p.to_string()
        }
        _ => "/area-personale".to_string(),
    }
}

fn login_context(ctx: &mut Context, state: &AppState, next: &str, level: u8) {
    let encoded: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    ctx.insert("next_q", &encoded);
    ctx.insert("level", &level.clamp(LOGIN_LEVEL, 3));
    ctx.insert("providers", state.relying_party.providers());
    // Why the last login did not complete, when it did not ("cancelled", "provider", "level").
    ctx.insert("refusal", &Option::<&str>::None);
}

#[derive(Debug, Deserialize)]
struct LoginPageQuery {
    next: Option<String>,
    livello: Option<u8>,
}

#[get("/accedi")]
async fn login_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<LoginPageQuery>,
) -> Result<HttpResponse, AppError> {
    let mut ctx = Context::new();
    login_context(
        &mut ctx,
        &state,
        &safe_next(query.next.as_deref()),
        query.livello.unwrap_or(LOGIN_LEVEL),
    );
    render(&state, &req, "login.html", ctx)
}

#[derive(Debug, Deserialize)]
struct StartQuery {
    provider: String,
    next: Option<String>,
    /// The SPID level the page asking for the login needs (2 when absent).
    level: Option<u8>,
}

#[get("/auth/login")]
async fn start(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<StartQuery>,
) -> Result<HttpResponse, AppError> {
    let next = safe_next(query.next.as_deref());
    let level = query.level.unwrap_or(LOGIN_LEVEL).clamp(LOGIN_LEVEL, 3);
    let current = session::current(&req);
    let held = current
        .as_ref()
        .and_then(|s| s.data.principal.as_ref())
        .and_then(|p| p.person())
        .map(|p| p.spid_level);
    if held.is_some_and(|held| held >= level) {
        return Ok(see_other(&next));
    }
    let provider = state
        .relying_party
        .providers()
        .iter()
        .find(|p| p.id == query.provider)
        .ok_or_else(|| {
            AppError::BadRequest("Il metodo di accesso scelto non è disponibile.".into())
        })?;
    let (url, request) = state
        .relying_party
        .start(&provider.id, level)
        .await
        .map_err(|e| AppError::Login(e.to_string()))?;
    let pending = PendingLogin { request, next };
    let mut response = see_other(&url);
    match current {
        Some(mut s) => {
            s.data.pending_login = Some(pending);
            session::save(&state.db, &s).await?;
        }
        None => {
            let data = SessionData {
                pending_login: Some(pending),
                ..SessionData::default()
            };
            let (token, _) = session::create(&state, data).await?;
            response
                .add_cookie(&session::cookie(&state, token))
                .map_err(|e| AppError::Internal(e.to_string()))?;
        }
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

#[get("/auth/callback")]
async fn callback_get(
    state: web::Data<AppState>,
    req: HttpRequest,
    params: web::Query<CallbackParams>,
) -> Result<HttpResponse, AppError> {
    callback(state, req, params.into_inner()).await
}

#[post("/auth/callback")]
async fn callback_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    params: web::Form<CallbackParams>,
) -> Result<HttpResponse, AppError> {
    callback(state, req, params.into_inner()).await
}

async fn callback(
    state: web::Data<AppState>,
    req: HttpRequest,
    params: CallbackParams,
) -> Result<HttpResponse, AppError> {
    let result = complete_login(&state, &req, params).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(AppError::Login(_)) => "refused",
        Err(_) => "error",
    };
    state
        .metrics
        .logins
        .get_or_create(&JobLabels {
            kind: "oidc".into(),
            outcome: outcome.into(),
        })
        .inc();
    result
}

async fn complete_login(
    state: &AppState,
    req: &HttpRequest,
    params: CallbackParams,
) -> Result<HttpResponse, AppError> {
    let old = session::current(req)
        .ok_or_else(|| AppError::Login("callback without a session".into()))?;
    let Some(pending) = old.data.pending_login.clone() else {
        if old.login_elsewhere() {
            return handed_over(state, &old).await;
        }
        return Err(AppError::Login(
            "callback without a login in progress".into(),
        ));
    };
    let state_ok = params
        .state
        .as_deref()
        .is_some_and(|s| s == pending.request.state);
    if !state_ok {
        return Err(AppError::Login(
            "state does not match the login in progress".into(),
        ));
    }
    // The login in progress is taken out of the session once: of two callbacks at once (a double
    // click, a browser retrying) only one exchanges the code; the other waits for its outcome.
    if !session::take_pending_login(&state.db, &old).await? {
        return handed_over(state, &old).await;
    }
    if let Some(error) = params.error {
        tracing::info!(error = %error, "identity provider returned an error");
        // The person cancelled (access_denied) or the provider could not go on: the login page
        // says which, and what to do.
        let mut ctx = Context::new();
        login_context(&mut ctx, state, &pending.next, pending.request.level);
        ctx.insert(
            "refusal",
            if error == "access_denied" {
                "cancelled"
            } else {
                "provider"
            },
        );
        return render(state, req, "login.html", ctx);
    }
    let code = params
        .code
        .ok_or_else(|| AppError::Login("callback without a code".into()))?;
    let identity = match state
        .relying_party
        .finish(&pending.request, &code, params.iss.as_deref())
        .await
    {
        Ok(identity) => identity,
        Err(OidcError::LevelTooLow { got, wanted }) => {
            tracing::info!(got, wanted, "login at a level too low for the page");
            let mut ctx = Context::new();
            login_context(&mut ctx, state, &pending.next, wanted);
            ctx.insert("refusal", "level");
            ctx.insert("got", &got);
            return render_status(
                state,
                req,
                "login.html",
                ctx,
                actix_web::http::StatusCode::FORBIDDEN,
            );
        }
        Err(e) => return Err(AppError::Login(e.to_string())),
    };
    let principal = remember(state, &identity).await?;

    // A new session id at login: the pre-login session only says where the login went (see
    // `handed_over`), then goes.
    // A form kept for a step-up comes along, if the same person logged in.
    let same_person = old
        .data
        .principal
        .as_ref()
        .and_then(|p| p.person())
        .is_some_and(|p| p.cf == identity.cf);
    let data = SessionData {
        principal: Some(principal),
        provider_token: Some(ProviderToken {
            provider: pending.request.provider.clone(),
            access_token: identity.access_token.clone(),
        }),
        kept_form: old.data.kept_form.clone().filter(|_| same_person),
        ..SessionData::default()
    };
    let (token, new) = session::create(state, data).await?;
    // The other callback of a double click finds the new session here (for a minute).
    session::hand_over(state, &old, &new, &pending.next).await?;
    let mut response = see_other(&pending.next);
    response
        .add_cookie(&session::cookie(state, token))
        .map_err(|e| AppError::Internal(e.to_string()))?;
    tracing::info!(provider = %pending.request.provider, level = identity.level, "login completed");
    Ok(response)
}

/// A second callback of the same login: waits (up to 15 s) for the first to finish, then answers
/// as it did, with the new session, so the browser that kept only this answer is logged in too.
async fn handed_over(state: &AppState, old: &session::Session) -> Result<HttpResponse, AppError> {
    for _ in 0..75 {
        match session::login_elsewhere(state, old).await? {
            session::LoginElsewhere::Done { token, next } => {
                let mut response = see_other(&next);
                response
                    .add_cookie(&session::cookie(state, token))
                    .map_err(|e| AppError::Internal(e.to_string()))?;
                return Ok(response);
            }
            session::LoginElsewhere::Waiting => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await
            }
            session::LoginElsewhere::Gone => break,
        }
    }
    Err(AppError::Login(
        "callback without a login in progress".into(),
    ))
}

/// Records what the identity provider told us (once-only: the portal prefills from it) and resolves
/// the staff roles held by this person. The codice fiscale is the identity; names follow the provider;
/// contacts follow it too unless the citizen changed them in the portal.
async fn remember(state: &AppState, identity: &Identity) -> Result<Principal, AppError> {
    let now = state.clock.now_ms();
    sqlx::query(
        "INSERT INTO people (cf, given_name, family_name, birth_date, email, phone, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
         ON CONFLICT (cf) DO UPDATE SET given_name = excluded.given_name, family_name = excluded.family_name, \
         birth_date = COALESCE(excluded.birth_date, people.birth_date), \
         email = CASE WHEN people.email_set_by_citizen = 1 THEN people.email ELSE COALESCE(excluded.email, people.email) END, \
         phone = CASE WHEN people.phone_set_by_citizen = 1 THEN people.phone ELSE COALESCE(excluded.phone, people.phone) END, \
         updated_at = excluded.updated_at",
    )
    .bind(identity.cf.as_str())
    .bind(&identity.given_name)
    .bind(&identity.family_name)
    .bind(identity.birth_date.as_deref())
    .bind(identity.email.as_deref())
    .bind(identity.phone.as_deref())
    .bind(now)
    .execute(&state.db.pool)
    .await?;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT ente_code, role FROM staff_roles WHERE cf = $1 ORDER BY ente_code, role",
    )
    .bind(identity.cf.as_str())
    .fetch_all(&state.db.pool)
    .await?;
    let person = Person {
        cf: identity.cf.clone(),
        given_name: identity.given_name.clone(),
        family_name: identity.family_name.clone(),
        spid_level: identity.level,
    };
    let memberships: Vec<Membership> = rows
        .into_iter()
        .filter_map(|(ente, role)| Role::parse(&role).map(|role| Membership { ente, role }))
        .collect();
    Ok(if memberships.is_empty() {
        Principal::Citizen { person }
    } else {
        Principal::Staff {
            person,
            memberships,
        }
    })
}

#[post("/esci")]
async fn logout(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    if let Some(s) = session::current(&req) {
        session::delete(&state.db, &s).await?;
        if let Some(token) = &s.data.provider_token {
            // The session ends whatever the provider says; a failed revocation is only logged.
            if let Err(e) = state
                .relying_party
                .revoke(&token.provider, &token.access_token)
                .await
            {
                tracing::warn!(error = %e, "token revocation at logout failed");
            }
        }
    }
    let mut response = see_other("/?uscita=1");
    response
        .add_cookie(&session::removal_cookie(&state))
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(response)
}

/// Like [`require_level`], for a form being sent: when the login must be stepped up, the form's
/// fields are kept and given back to the page at `path` afterwards (see `session::take_kept_form`).
pub async fn require_level_keeping(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    level: u8,
    path: &str,
    fields: &[(&str, &str)],
) -> Result<Option<HttpResponse>, AppError> {
    let Some(elsewhere) = level_redirect(req, principal, level, path) else {
        return Ok(None);
    };
    if principal.person().is_some() {
        session::keep_form(&state.db, req, path, fields).await?;
    }
    Ok(Some(see_other(&elsewhere)))
}

/// The page needs a person logged in at `level` or above: `None` when so; otherwise where to send the
/// browser — the login page, or straight back to the same provider for the higher level (step-up),
/// returning to this page afterwards.
pub fn require_level(req: &HttpRequest, principal: &Principal, level: u8) -> Option<HttpResponse> {
    level_redirect(req, principal, level, here(req)).map(|to| see_other(&to))
}

/// The person logged in at `level` or above, or [`AppError::Elsewhere`] to the login (or the
/// step-up) that comes back to this page: for handlers, with `?`.
pub fn person_at_level<'a>(
    req: &HttpRequest,
    principal: &'a Principal,
    level: u8,
) -> Result<&'a Person, AppError> {
    if let Some(to) = level_redirect(req, principal, level, here(req)) {
        return Err(AppError::Elsewhere(to));
    }
    principal.person().ok_or(AppError::Forbidden)
}

fn here(req: &HttpRequest) -> &str {
    req.uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
}

/// Where to send the browser for a login at `level` coming back to `back_to`; `None` when the
/// session already has it.
fn level_redirect(
    req: &HttpRequest,
    principal: &Principal,
    level: u8,
    back_to: &str,
) -> Option<String> {
    let here: String = url::form_urlencoded::byte_serialize(back_to.as_bytes()).collect();
    let Some(person) = principal.person() else {
        return Some(format!("/accedi?next={here}&livello={level}"));
    };
    if person.spid_level >= level {
        return None;
    }
    let provider = session::current(req).and_then(|s| s.data.provider_token.map(|t| t.provider));
    Some(match provider {
        Some(provider) => format!("/auth/login?provider={provider}&level={level}&next={here}"),
        None => format!("/accedi?next={here}&livello={level}"),
    })
}

pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(login_page)
        .service(start)
        .service(callback_get)
        .service(callback_post)
        .service(logout);
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(
            safe_next(Some("/area-personale/pratiche")),
            "/area-personale/pratiche"
        );
        assert_eq!(safe_next(Some("//evil.example")), "/area-personale");
        assert_eq!(safe_next(Some("https://evil.example")), "/area-personale");
        assert_eq!(safe_next(Some("/\\evil.example")), "/area-personale");
        assert_eq!(safe_next(None), "/area-personale");
    }
}
