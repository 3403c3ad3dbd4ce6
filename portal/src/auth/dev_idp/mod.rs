//! The development identity provider: an OpenID Connect provider mounted under `/dev-idp`, offering
//! the test personas. It speaks to the portal over HTTP like a real provider (discovery, PKCE,
//! `private_key_jwt`, signed ID tokens with `at_hash` and `acr`), so the one login code path is the
//! one exercised in the demo and in tests. It is refused outside development mode.

pub mod personas;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use actix_web::http::header;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use base64::Engine;
use josekit::jwk::Jwk;
use josekit::jws::RS256;
use josekit::jwt::{self, JwtPayload};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tera::Context;

use crate::auth::keys::NamedKey;
use crate::auth::oidc::acr_for_level;
use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::session::random_token;
use crate::web::templates::render;

use personas::{Persona, PERSONAS};

const CODE_LIFETIME_MS: i64 = 60_000;
const TOKEN_LIFETIME_MS: i64 = 300_000;

/// An authorization request waiting for the person to pick a persona.
#[derive(Debug, Clone)]
struct Authorization {
    redirect_uri: String,
    state: String,
    nonce: String,
    code_challenge: String,
    level: u8,
    created_ms: i64,
}

#[derive(Debug, Clone)]
struct IssuedCode {
    persona: &'static Persona,
    auth: Authorization,
    expires_ms: i64,
}

#[derive(Debug)]
pub struct DevIdp {
    pub issuer: String,
    key: NamedKey,
    client_id: String,
    client_key: Jwk,
    redirect_uri: String,
    pending: Mutex<HashMap<String, Authorization>>,
    codes: Mutex<HashMap<String, IssuedCode>>,
    tokens: Mutex<HashMap<String, (&'static Persona, i64)>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{error}: {description}")]
struct OAuthError {
    error: &'static str,
    description: String,
}

fn oauth_error(error: &'static str, description: impl Into<String>) -> OAuthError {
    OAuthError {
        error,
        description: description.into(),
    }
}

impl OAuthError {
    fn response(&self) -> HttpResponse {
        let status = if self.error == "invalid_token" {
            actix_web::http::StatusCode::UNAUTHORIZED
        } else {
            actix_web::http::StatusCode::BAD_REQUEST
        };
        HttpResponse::build(status)
            .json(serde_json::json!({ "error": self.error, "error_description": self.description }))
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl DevIdp {
    /// `client_key` is the portal's public signing key, which client assertions are checked against.
    pub fn new(public_url: &str, key: NamedKey, client_id: String, client_key: Jwk) -> DevIdp {
        DevIdp {
            issuer: format!("{public_url}/dev-idp"),
            key,
            client_id,
            client_key,
            redirect_uri: format!("{public_url}/auth/callback"),
            pending: Mutex::new(HashMap::new()),
            codes: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn endpoint(&self, name: &str) -> String {
        format!("{}/{name}", self.issuer)
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check_client_assertion(&self, assertion: &str, now_ms: i64) -> Result<(), OAuthError> {
        let verifier = RS256
            .verifier_from_jwk(&self.client_key)
            .map_err(|e| oauth_error("server_error", e.to_string()))?;
        let (payload, _) = jwt::decode_with_verifier(assertion, &verifier)
            .map_err(|_| oauth_error("invalid_client", "client assertion signature"))?;
        let token_endpoint = self.endpoint("token");
        let ok = payload.issuer() == Some(self.client_id.as_str())
            && payload.subject() == Some(self.client_id.as_str())
            && payload
                .audience()
                .is_some_and(|a| a.contains(&token_endpoint.as_str()))
            && payload.jwt_id().is_some()
            && payload.expires_at().is_some_and(|exp| {
                exp.duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0)
                    > now_ms
            });
        if ok {
            Ok(())
        } else {
            Err(oauth_error("invalid_client", "client assertion claims"))
        }
    }

    fn id_token(
        &self,
        persona: &Persona,
        auth: &Authorization,
        access_token: &str,
    ) -> Result<String, OAuthError> {
        let now = SystemTime::now();
        let digest = Sha256::digest(access_token.as_bytes());
        let mut payload = JwtPayload::new();
        payload.set_issuer(&self.issuer);
        payload.set_subject(self.subject(persona));
        payload.set_audience(vec![self.client_id.as_str()]);
        payload.set_issued_at(&now);
        payload.set_expires_at(&(now + Duration::from_millis(TOKEN_LIFETIME_MS as u64)));
        payload.set_jwt_id(uuid::Uuid::new_v4().to_string());
        let claims = [
            ("nonce", serde_json::Value::String(auth.nonce.clone())),
            ("at_hash", serde_json::Value::String(b64(&digest[..16]))),
            (
                "acr",
                serde_json::Value::String(acr_for_level(auth.level.max(2)).into()),
            ),
        ];
        for (name, value) in claims {
            payload
                .set_claim(name, Some(value))
                .map_err(|e| oauth_error("server_error", e.to_string()))?;
        }
        self.key
            .sign(&payload, "JWT")
            .map_err(|e| oauth_error("server_error", e.to_string()))
    }

    /// A pairwise subject: stable per person and client, revealing neither.
    fn subject(&self, persona: &Persona) -> String {
        b64(&Sha256::digest(
            format!("{}|{}", persona.cf, self.client_id).as_bytes(),
        ))
    }
}

fn idp(state: &AppState) -> Result<&DevIdp, AppError> {
    state.dev_idp.as_deref().ok_or(AppError::NotFound)
}

#[get("/dev-idp/.well-known/openid-configuration")]
async fn discovery(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let idp = idp(&state)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "issuer": idp.issuer,
        "authorization_endpoint": idp.endpoint("authorize"),
        "token_endpoint": idp.endpoint("token"),
        "userinfo_endpoint": idp.endpoint("userinfo"),
        "jwks_uri": idp.endpoint("jwks"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "profile"],
        "acr_values_supported": [acr_for_level(1), acr_for_level(2), acr_for_level(3)],
        "claims_parameter_supported": true,
        "authorization_response_iss_parameter_supported": true,
        "claims_supported": ["sub", "given_name", "family_name", "birthdate", "email", "phone_number",
                             "https://attributes.eid.gov.it/fiscal_number"]
    })))
}

#[get("/dev-idp/jwks")]
async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let idp = idp(&state)?;
    let key = idp.key.public_jwk("sig", "RS256");
    Ok(HttpResponse::Ok().json(serde_json::json!({ "keys": [key.as_ref()] })))
}

#[derive(Debug, Deserialize)]
struct AuthorizeQuery {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    acr_values: Option<String>,
}

#[get("/dev-idp/authorize")]
async fn authorize(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<AuthorizeQuery>,
) -> Result<HttpResponse, AppError> {
    let idp = idp(&state)?;
    // Never redirect to an address we do not know: errors before that point are shown here.
    let bad =
        |why: &str| AppError::BadRequest(format!("Richiesta di autenticazione non valida: {why}."));
    if q.client_id.as_deref() != Some(idp.client_id.as_str()) {
        return Err(bad("client_id sconosciuto"));
    }
    if q.redirect_uri.as_deref() != Some(idp.redirect_uri.as_str()) {
        return Err(bad("redirect_uri non registrato"));
    }
    if q.response_type.as_deref() != Some("code") {
        return Err(bad("response_type deve essere code"));
    }
    if q.code_challenge_method.as_deref() != Some("S256")
        || q.code_challenge.as_deref().is_none_or(str::is_empty)
    {
        return Err(bad("PKCE S256 obbligatorio"));
    }
    let long_alnum = |v: &Option<String>| {
        v.as_deref()
            .is_some_and(|s| s.len() >= 32 && s.chars().all(|c| c.is_ascii_alphanumeric()))
    };
    if !long_alnum(&q.state) || !long_alnum(&q.nonce) {
        return Err(bad(
            "state e nonce devono avere almeno 32 caratteri alfanumerici",
        ));
    }
    let level = q
        .acr_values
        .as_deref()
        .and_then(|v| {
            v.split_whitespace()
                .filter_map(crate::auth::oidc::level_of_acr)
                .min()
        })
        .unwrap_or(2);
    let now = state.clock.now_ms();
    let request_id = random_token(24);
    {
        let mut pending = DevIdp::lock(&idp.pending);
        pending.retain(|_, a| now - a.created_ms < 600_000);
        pending.insert(
            request_id.clone(),
            Authorization {
                redirect_uri: idp.redirect_uri.clone(),
                state: q.state.clone().unwrap_or_default(),
                nonce: q.nonce.clone().unwrap_or_default(),
                code_challenge: q.code_challenge.clone().unwrap_or_default(),
                level,
                created_ms: now,
            },
        );
    }
    let mut ctx = Context::new();
    ctx.insert("request_id", &request_id);
    ctx.insert("personas", PERSONAS);
    ctx.insert("level", &level);
    render(&state, &req, "dev_idp/authorize.html", ctx)
}

#[derive(Debug, Deserialize)]
struct ChooseForm {
    request_id: String,
    persona: Option<String>,
    action: String,
}

#[post("/dev-idp/authorize")]
async fn choose(
    state: web::Data<AppState>,
    form: web::Form<ChooseForm>,
) -> Result<HttpResponse, AppError> {
    let idp = idp(&state)?;
    let auth = DevIdp::lock(&idp.pending)
        .remove(&form.request_id)
        .ok_or_else(|| {
            AppError::BadRequest(
                "La richiesta di accesso è scaduta: torna al portale e riprova.".into(),
            )
        })?;
    let mut target =
        url::Url::parse(&auth.redirect_uri).map_err(|e| AppError::Internal(e.to_string()))?;
    if form.action != "accedi" {
        target
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("state", &auth.state)
            .append_pair("iss", &idp.issuer);
        return Ok(crate::auth::see_other(target.as_str()));
    }
    let persona = form
        .persona
        .as_deref()
        .and_then(personas::find)
        .ok_or_else(|| AppError::BadRequest("Scegli una delle identità di prova.".into()))?;
    let code = random_token(32);
    let now = state.clock.now_ms();
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &auth.state)
        .append_pair("iss", &idp.issuer);
    {
        let mut codes = DevIdp::lock(&idp.codes);
        codes.retain(|_, c| c.expires_ms > now);
        codes.insert(
            code,
            IssuedCode {
                persona,
                auth,
                expires_ms: now + CODE_LIFETIME_MS,
            },
        );
    }
    Ok(crate::auth::see_other(target.as_str()))
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: String,
    code: String,
    redirect_uri: String,
    code_verifier: String,
    client_id: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
}

#[post("/dev-idp/token")]
async fn token_post(
    state: web::Data<AppState>,
    form: web::Form<TokenForm>,
) -> Result<HttpResponse, AppError> {
    let idp = idp(&state)?;
    let now = state.clock.now_ms();
    let result = (|| -> Result<serde_json::Value, OAuthError> {
        if form.grant_type != "authorization_code" {
            return Err(oauth_error(
                "unsupported_grant_type",
                "only authorization_code",
            ));
        }
        if form.client_assertion_type.as_deref()
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return Err(oauth_error("invalid_client", "private_key_jwt required"));
        }
        if form
            .client_id
            .as_deref()
            .is_some_and(|c| c != idp.client_id)
        {
            return Err(oauth_error("invalid_client", "unknown client"));
        }
        idp.check_client_assertion(form.client_assertion.as_deref().unwrap_or_default(), now)?;
        // A code is used once, whatever happens next.
        let issued = DevIdp::lock(&idp.codes)
            .remove(&form.code)
            .filter(|c| c.expires_ms > now)
            .ok_or_else(|| oauth_error("invalid_grant", "unknown, used or expired code"))?;
        if form.redirect_uri != issued.auth.redirect_uri {
            return Err(oauth_error("invalid_grant", "redirect_uri mismatch"));
        }
        if b64(&Sha256::digest(form.code_verifier.as_bytes())) != issued.auth.code_challenge {
            return Err(oauth_error("invalid_grant", "PKCE verification failed"));
        }
        let access_token = random_token(32);
        let id_token = idp.id_token(issued.persona, &issued.auth, &access_token)?;
        DevIdp::lock(&idp.tokens).insert(
            access_token.clone(),
            (issued.persona, now + TOKEN_LIFETIME_MS),
        );
        Ok(serde_json::json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_MS / 1000,
            "id_token": id_token,
        }))
    })();
    Ok(match result {
        Ok(body) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(body),
        Err(e) => {
            tracing::warn!(error = %e, "dev-idp token request refused");
            e.response()
        }
    })
}

#[get("/dev-idp/userinfo")]
async fn userinfo(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    let idp = idp(&state)?;
    let now = state.clock.now_ms();
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let found = DevIdp::lock(&idp.tokens)
        .get(token)
        .copied()
        .filter(|(_, exp)| *exp > now);
    let Some((persona, _)) = found else {
        return Ok(oauth_error("invalid_token", "unknown or expired access token").response());
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "sub": idp.subject(persona),
        "given_name": persona.given_name,
        "family_name": persona.family_name,
        "birthdate": persona.birthdate,
        "email": persona.email,
        "phone_number": persona.phone,
        "https://attributes.eid.gov.it/fiscal_number": format!("TINIT-{}", persona.cf),
    })))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(discovery)
        .service(jwks)
        .service(authorize)
        .service(choose)
        .service(token_post)
        .service(userinfo);
}
