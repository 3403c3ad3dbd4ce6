//! The development identity provider: an OpenID Connect provider mounted under `/dev-idp`, offering
//! the test personas. It speaks the SPID/CIE profile to the portal over HTTP like a real provider —
//! signed request objects required, PKCE S256, `private_key_jwt`, ID tokens with `at_hash` and `acr`,
//! userinfo signed and encrypted to the portal, revocation — so the one login code path is the one
//! exercised in the demo and in tests. Its page can also make it misbehave in one chosen way
//! ([`Fault`]), to see each refusal of the relying party. It is refused outside development mode.

pub mod personas;
pub mod trust_anchor;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use actix_web::http::header;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use base64::Engine;
use josekit::jwe::JweHeader;
use josekit::jwk::Jwk;
use josekit::jws::{JwsHeader, RS256};
use josekit::jwt::{self, JwtPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tera::Context;

use crate::auth::keys::NamedKey;
use crate::auth::oidc::{acr_for_level, level_of_acr, FISCAL_NUMBER};
use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::session::random_token;
use crate::web::templates::render;

use personas::{Persona, PERSONAS};

const CODE_LIFETIME_MS: i64 = 60_000;
const TOKEN_LIFETIME_MS: i64 = 300_000;
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// One way for the provider to misbehave, chosen on its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    WrongAudience,
    Expired,
    BadSignature,
    Unsigned,
    NoAtHash,
    WrongAtHash,
    LowAcr,
    WrongNonce,
    WrongIss,
    /// The callback without `iss`, though the metadata says it is always sent.
    NoIss,
    /// The provider rolls its signing key over just before signing this ID token.
    NewKey,
    UserinfoSub,
    /// Userinfo addressed (`aud`) to another client.
    UserinfoAudience,
    UserinfoPlain,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct FaultChoice {
    pub value: &'static str,
    #[serde(skip)]
    pub fault: Fault,
    pub label: &'static str,
}

/// The behaviours offered on the provider's page; the form sends `value`.
pub const FAULTS: &[FaultChoice] = &[
    FaultChoice {
        value: "",
        fault: Fault::None,
        label: "Corretto",
    },
    FaultChoice {
        value: "aud",
        fault: Fault::WrongAudience,
        label: "ID token per un altro client (aud)",
    },
    FaultChoice {
        value: "scaduto",
        fault: Fault::Expired,
        label: "ID token scaduto",
    },
    FaultChoice {
        value: "firma",
        fault: Fault::BadSignature,
        label: "ID token con firma non valida",
    },
    FaultChoice {
        value: "none",
        fault: Fault::Unsigned,
        label: "ID token non firmato (alg none)",
    },
    FaultChoice {
        value: "senza-at-hash",
        fault: Fault::NoAtHash,
        label: "ID token senza at_hash",
    },
    FaultChoice {
        value: "at-hash",
        fault: Fault::WrongAtHash,
        label: "ID token con at_hash errato",
    },
    FaultChoice {
        value: "acr",
        fault: Fault::LowAcr,
        label: "Livello SPID 1 invece di quello richiesto",
    },
    FaultChoice {
        value: "nonce",
        fault: Fault::WrongNonce,
        label: "nonce diverso da quello richiesto",
    },
    FaultChoice {
        value: "iss",
        fault: Fault::WrongIss,
        label: "Parametro iss di un altro provider",
    },
    FaultChoice {
        value: "senza-iss",
        fault: Fault::NoIss,
        label: "Risposta senza il parametro iss",
    },
    FaultChoice {
        value: "chiave-nuova",
        fault: Fault::NewKey,
        label: "Chiave di firma appena cambiata (rollover: l'accesso deve riuscire)",
    },
    FaultChoice {
        value: "sub",
        fault: Fault::UserinfoSub,
        label: "userinfo di un altro soggetto (sub)",
    },
    FaultChoice {
        value: "userinfo-aud",
        fault: Fault::UserinfoAudience,
        label: "userinfo per un altro client (aud)",
    },
    FaultChoice {
        value: "in-chiaro",
        fault: Fault::UserinfoPlain,
        label: "userinfo non cifrato",
    },
];

fn fault_of(value: Option<&str>) -> Fault {
    FAULTS
        .iter()
        .find(|c| Some(c.value) == value)
        .map(|c| c.fault)
        .unwrap_or(Fault::None)
}

/// An authorization request waiting for the person to pick a persona.
#[derive(Debug, Clone)]
struct Authorization {
    redirect_uri: String,
    state: String,
    nonce: String,
    code_challenge: String,
    level: u8,
    created_ms: i64,
    fault: Fault,
}

#[derive(Debug, Clone)]
struct IssuedCode {
    persona: &'static Persona,
    auth: Authorization,
    expires_ms: i64,
}

#[derive(Debug, Clone, Copy)]
struct IssuedToken {
    persona: &'static Persona,
    expires_ms: i64,
    fault: Fault,
}

#[derive(Debug)]
pub struct DevIdp {
    pub issuer: String,
    /// The signing key; replaced when the provider rolls it over (fault "chiave-nuova").
    key: std::sync::RwLock<NamedKey>,
    federation_key: NamedKey,
    client_id: String,
    client_key: Jwk,
    client_encryption_key: Jwk,
    redirect_uri: String,
    pending: Mutex<HashMap<String, Authorization>>,
    codes: Mutex<HashMap<String, IssuedCode>>,
    tokens: Mutex<HashMap<String, IssuedToken>>,
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

fn server_error(e: impl std::fmt::Display) -> OAuthError {
    oauth_error("server_error", e.to_string())
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

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The attributes of a persona, as SPID/CIE providers name them.
fn persona_claims(persona: &Persona) -> serde_json::Value {
    serde_json::json!({
        "given_name": persona.given_name,
        "family_name": persona.family_name,
        "birthdate": persona.birthdate,
        "email": persona.email,
        "phone_number": persona.phone,
        FISCAL_NUMBER: format!("TINIT-{}", persona.cf),
    })
}

impl DevIdp {
    /// `client_key` is the portal's public signing key (request objects and client assertions are
    /// checked against it); `client_encryption_key` is the key userinfo is encrypted to.
    pub fn new(
        public_url: &str,
        key: NamedKey,
        federation_key: NamedKey,
        client_id: String,
        client_key: Jwk,
        client_encryption_key: Jwk,
    ) -> DevIdp {
        DevIdp {
            issuer: format!("{public_url}/dev-idp"),
            key: std::sync::RwLock::new(key),
            federation_key,
            client_id,
            client_key,
            client_encryption_key,
            redirect_uri: format!("{public_url}/auth/callback"),
            pending: Mutex::new(HashMap::new()),
            codes: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Its federation keys, for the trust anchor's statement about it.
    pub fn federation_jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.federation_key.public_jwk("sig", "RS256").as_ref()] })
    }

    fn endpoint(&self, name: &str) -> String {
        format!("{}/{name}", self.issuer)
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A JWT signed by the client, addressed to `audience`, not expired.
    fn client_jwt(
        &self,
        text: &str,
        audience: &str,
        now_ms: i64,
    ) -> Result<JwtPayload, OAuthError> {
        let verifier = RS256
            .verifier_from_jwk(&self.client_key)
            .map_err(server_error)?;
        let (payload, _) = jwt::decode_with_verifier(text, &verifier)
            .map_err(|_| oauth_error("invalid_client", "signature of the client's JWT"))?;
        let ok = payload.issuer() == Some(self.client_id.as_str())
            && payload.audience().is_some_and(|a| a.contains(&audience))
            && payload
                .expires_at()
                .is_some_and(|exp| unix_ms(exp) > now_ms);
        if ok {
            Ok(payload)
        } else {
            Err(oauth_error("invalid_client", "claims of the client's JWT"))
        }
    }

    /// `private_key_jwt` client authentication at `endpoint`.
    fn authenticate_client(
        &self,
        assertion_type: Option<&str>,
        assertion: Option<&str>,
        endpoint: &str,
        now_ms: i64,
    ) -> Result<(), OAuthError> {
        if assertion_type != Some(JWT_BEARER) {
            return Err(oauth_error("invalid_client", "private_key_jwt required"));
        }
        let payload = self.client_jwt(assertion.unwrap_or_default(), endpoint, now_ms)?;
        if payload.subject() != Some(self.client_id.as_str()) || payload.jwt_id().is_none() {
            return Err(oauth_error("invalid_client", "client assertion sub or jti"));
        }
        Ok(())
    }

    fn id_token(
        &self,
        persona: &Persona,
        auth: &Authorization,
        access_token: &str,
    ) -> Result<String, OAuthError> {
        let fault = auth.fault;
        let now = SystemTime::now();
        let (iat, exp) = if fault == Fault::Expired {
            (
                now - Duration::from_secs(3600),
                now - Duration::from_secs(600),
            )
        } else {
            (now, now + Duration::from_millis(TOKEN_LIFETIME_MS as u64))
        };
        let hashed = if fault == Fault::WrongAtHash {
            format!("{access_token}-altro")
        } else {
            access_token.to_string()
        };
        let digest = Sha256::digest(hashed.as_bytes());
        let audience = if fault == Fault::WrongAudience {
            "https://altro-client.example.it"
        } else {
            self.client_id.as_str()
        };
        let nonce = if fault == Fault::WrongNonce {
            "N".repeat(48)
        } else {
            auth.nonce.clone()
        };
        let level = if fault == Fault::LowAcr {
            1
        } else {
            auth.level.max(2)
        };
        let mut payload = JwtPayload::new();
        payload.set_issuer(&self.issuer);
        payload.set_subject(self.subject(persona));
        payload.set_audience(vec![audience]);
        payload.set_issued_at(&iat);
        payload.set_expires_at(&exp);
        payload.set_jwt_id(uuid::Uuid::new_v4().to_string());
        payload
            .set_claim("nonce", Some(nonce.into()))
            .map_err(server_error)?;
        payload
            .set_claim("acr", Some(acr_for_level(level).into()))
            .map_err(server_error)?;
        if fault != Fault::NoAtHash {
            payload
                .set_claim("at_hash", Some(b64(&digest[..16]).into()))
                .map_err(server_error)?;
        }
        match fault {
            Fault::Unsigned => {
                let mut header = JwsHeader::new();
                header.set_token_type("JWT");
                jwt::encode_unsecured(&payload, &header).map_err(server_error)
            }
            Fault::BadSignature => {
                // Another key, under this provider's key id.
                let other = NamedKey::generate().map_err(server_error)?;
                let mut header = JwsHeader::new();
                header.set_token_type("JWT");
                header.set_key_id(self.signing_key().kid.clone());
                let signer = RS256
                    .signer_from_pem(other.to_pem())
                    .map_err(server_error)?;
                jwt::encode_with_signer(&payload, &header, &signer).map_err(server_error)
            }
            Fault::NewKey => {
                let fresh = NamedKey::generate().map_err(server_error)?;
                *self.key.write().unwrap_or_else(|e| e.into_inner()) = fresh;
                self.signing_key()
                    .sign(&payload, "JWT")
                    .map_err(server_error)
            }
            _ => self
                .signing_key()
                .sign(&payload, "JWT")
                .map_err(server_error),
        }
    }

    /// The provider's current signing key.
    fn signing_key(&self) -> NamedKey {
        self.key.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Userinfo as the profile wants it: a JWT signed by the provider, encrypted to the client.
    fn userinfo_jwt(&self, persona: &Persona, fault: Fault) -> Result<String, OAuthError> {
        let now = SystemTime::now();
        let sub = if fault == Fault::UserinfoSub {
            "un-altro-soggetto".to_string()
        } else {
            self.subject(persona)
        };
        let mut payload = JwtPayload::new();
        payload.set_issuer(&self.issuer);
        payload.set_subject(sub);
        if fault == Fault::UserinfoAudience {
            payload.set_audience(vec!["https://un-altro-client.example.it"]);
        } else {
            payload.set_audience(vec![self.client_id.as_str()]);
        }
        payload.set_issued_at(&now);
        payload.set_expires_at(&(now + Duration::from_millis(TOKEN_LIFETIME_MS as u64)));
        if let serde_json::Value::Object(claims) = persona_claims(persona) {
            for (name, value) in claims {
                payload
                    .set_claim(&name, Some(value))
                    .map_err(server_error)?;
            }
        }
        let jws = self
            .signing_key()
            .sign(&payload, "JWT")
            .map_err(server_error)?;
        let mut header = JweHeader::new();
        header.set_content_encryption("A256CBC-HS512");
        header.set_content_type("JWT");
        if let Some(kid) = self.client_encryption_key.key_id() {
            header.set_key_id(kid);
        }
        let encrypter = josekit::jwe::RSA_OAEP_256
            .encrypter_from_jwk(&self.client_encryption_key)
            .map_err(server_error)?;
        josekit::jwe::serialize_compact(jws.as_bytes(), &header, &encrypter).map_err(server_error)
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

impl DevIdp {
    /// The provider's OpenID metadata (as discovery serves it, and inside its entity configuration).
    fn metadata(&self) -> serde_json::Value {
        let idp = self;
        serde_json::json!({
            "issuer": idp.issuer,
            "authorization_endpoint": idp.endpoint("authorize"),
            "token_endpoint": idp.endpoint("token"),
            "userinfo_endpoint": idp.endpoint("userinfo"),
            "revocation_endpoint": idp.endpoint("revoke"),
            "jwks_uri": idp.endpoint("jwks"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "form_post"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "userinfo_signing_alg_values_supported": ["RS256"],
            "userinfo_encryption_alg_values_supported": ["RSA-OAEP", "RSA-OAEP-256"],
            "userinfo_encryption_enc_values_supported": ["A128CBC-HS256", "A256CBC-HS512"],
            "request_object_signing_alg_values_supported": ["RS256"],
            "request_parameter_supported": true,
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile"],
            "acr_values_supported": [acr_for_level(1), acr_for_level(2), acr_for_level(3)],
            "claims_parameter_supported": true,
            "authorization_response_iss_parameter_supported": true,
            "claims_supported": ["sub", "given_name", "family_name", "birthdate", "email", "phone_number", FISCAL_NUMBER]
        })
    }
}

#[get("/dev-idp/.well-known/openid-configuration")]
async fn discovery(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(idp(&state)?.metadata()))
}

/// The provider's entity configuration: under the development trust anchor, its OpenID metadata
/// with the keys inline, signed with its federation key.
#[get("/dev-idp/.well-known/openid-federation")]
async fn entity_configuration(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let idp = idp(&state)?;
    let ta = state
        .dev_trust_anchor
        .as_deref()
        .ok_or(AppError::NotFound)?;
    let mut metadata = idp.metadata();
    metadata["jwks"] =
        serde_json::json!({ "keys": [idp.signing_key().public_jwk("sig", "RS256").as_ref()] });
    let mut payload = JwtPayload::new();
    payload.set_issuer(&idp.issuer);
    payload.set_subject(&idp.issuer);
    crate::auth::keys::set_lifetime(&mut payload, Duration::from_secs(86_400))
        .map_err(|e| AppError::Internal(e.to_string()))?;
    let claims = [
        ("jwks", idp.federation_jwks()),
        ("authority_hints", serde_json::json!([ta.entity_id])),
        (
            "metadata",
            serde_json::json!({ "openid_provider": metadata }),
        ),
    ];
    for (name, value) in claims {
        payload
            .set_claim(name, Some(value))
            .map_err(|e| AppError::Internal(e.to_string()))?;
    }
    let jwt = idp
        .federation_key
        .sign(&payload, "entity-statement+jwt")
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type(crate::auth::federation::CONTENT_TYPE)
        .body(jwt))
}

#[get("/dev-idp/jwks")]
async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let idp = idp(&state)?;
    let key = idp.signing_key().public_jwk("sig", "RS256");
    Ok(HttpResponse::Ok().json(serde_json::json!({ "keys": [key.as_ref()] })))
}

#[derive(Debug, Deserialize)]
struct AuthorizeQuery {
    client_id: Option<String>,
    response_type: Option<String>,
    request: Option<String>,
}

/// The provider's own time. Like any real identity provider it keeps its own clock, in step with
/// the relying party's (which signs and checks tokens with the system time), not the portal's
/// injected one: tests that move the portal's clock (deadlines, timeouts) still log in.
fn idp_now() -> i64 {
    crate::clock::Clock::now_ms(&crate::clock::SystemClock)
}

#[get("/dev-idp/authorize")]
async fn authorize(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<AuthorizeQuery>,
) -> Result<HttpResponse, AppError> {
    let idp = idp(&state)?;
    let now = idp_now();
    // Errors before the redirect URI is known good are shown here, never redirected.
    let bad =
        |why: &str| AppError::BadRequest(format!("Richiesta di autenticazione non valida: {why}."));
    if q.client_id.as_deref() != Some(idp.client_id.as_str()) {
        return Err(bad("client_id sconosciuto"));
    }
    if q.response_type.as_deref() != Some("code") {
        return Err(bad("response_type deve essere code"));
    }
    let request = q
        .request
        .as_deref()
        .ok_or_else(|| bad("manca il request object firmato"))?;
    let object = idp
        .client_jwt(request, &idp.issuer, now)
        .map_err(|e| bad(&format!("request object non valido ({e})")))?;
    let claim = |name: &str| {
        object
            .claim(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    if claim("client_id").as_deref() != Some(idp.client_id.as_str())
        || claim("response_type").as_deref() != Some("code")
    {
        return Err(bad("client_id o response_type del request object"));
    }
    if claim("redirect_uri").as_deref() != Some(idp.redirect_uri.as_str()) {
        return Err(bad("redirect_uri non registrato"));
    }
    if claim("code_challenge_method").as_deref() != Some("S256")
        || claim("code_challenge").is_none_or(|c| c.is_empty())
    {
        return Err(bad("PKCE S256 obbligatorio"));
    }
    let long_alnum = |v: &Option<String>| {
        v.as_deref()
            .is_some_and(|s| s.len() >= 32 && s.chars().all(|c| c.is_ascii_alphanumeric()))
    };
    let (state_value, nonce) = (claim("state"), claim("nonce"));
    if !long_alnum(&state_value) || !long_alnum(&nonce) {
        return Err(bad(
            "state e nonce devono avere almeno 32 caratteri alfanumerici",
        ));
    }
    let level = claim("acr_values")
        .and_then(|v| v.split_whitespace().filter_map(level_of_acr).min())
        .ok_or_else(|| bad("acr_values mancante"))?;
    let request_id = random_token(24);
    {
        let mut pending = DevIdp::lock(&idp.pending);
        pending.retain(|_, a| now - a.created_ms < 600_000);
        pending.insert(
            request_id.clone(),
            Authorization {
                redirect_uri: idp.redirect_uri.clone(),
                state: state_value.unwrap_or_default(),
                nonce: nonce.unwrap_or_default(),
                code_challenge: claim("code_challenge").unwrap_or_default(),
                level,
                created_ms: now,
                fault: Fault::None,
            },
        );
    }
    let mut ctx = Context::new();
    ctx.insert("request_id", &request_id);
    ctx.insert("personas", PERSONAS);
    ctx.insert("faults", FAULTS);
    ctx.insert("level", &level);
    render(&state, &req, "dev_idp/authorize.html", ctx)
}

#[derive(Debug, Deserialize)]
struct ChooseForm {
    request_id: String,
    persona: Option<String>,
    fault: Option<String>,
    action: String,
}

#[post("/dev-idp/authorize")]
async fn choose(
    state: web::Data<AppState>,
    form: web::Form<ChooseForm>,
) -> Result<HttpResponse, AppError> {
    let idp = idp(&state)?;
    let mut auth = DevIdp::lock(&idp.pending)
        .remove(&form.request_id)
        .ok_or_else(|| {
            AppError::BadRequest(
                "La richiesta di accesso è scaduta: torna al portale e riprova.".into(),
            )
        })?;
    auth.fault = fault_of(form.fault.as_deref());
    let iss = if auth.fault == Fault::WrongIss {
        "https://altro-provider.example.it".to_string()
    } else {
        idp.issuer.clone()
    };
    let mut target =
        url::Url::parse(&auth.redirect_uri).map_err(|e| AppError::Internal(e.to_string()))?;
    if form.action != "accedi" {
        target
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("state", &auth.state)
            .append_pair("iss", &iss);
        return Ok(crate::auth::see_other(target.as_str()));
    }
    let persona = form
        .persona
        .as_deref()
        .and_then(personas::find)
        .ok_or_else(|| AppError::BadRequest("Scegli una delle identità di prova.".into()))?;
    let code = random_token(32);
    let now = idp_now();
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &auth.state);
    if auth.fault != Fault::NoIss {
        target.query_pairs_mut().append_pair("iss", &iss);
    }
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
    let now = idp_now();
    let result = (|| -> Result<serde_json::Value, OAuthError> {
        if form.grant_type != "authorization_code" {
            return Err(oauth_error(
                "unsupported_grant_type",
                "only authorization_code",
            ));
        }
        if form
            .client_id
            .as_deref()
            .is_some_and(|c| c != idp.client_id)
        {
            return Err(oauth_error("invalid_client", "unknown client"));
        }
        idp.authenticate_client(
            form.client_assertion_type.as_deref(),
            form.client_assertion.as_deref(),
            &idp.endpoint("token"),
            now,
        )?;
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
            IssuedToken {
                persona: issued.persona,
                expires_ms: now + TOKEN_LIFETIME_MS,
                fault: issued.auth.fault,
            },
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
    let now = idp_now();
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let found = DevIdp::lock(&idp.tokens)
        .get(bearer)
        .copied()
        .filter(|t| t.expires_ms > now);
    let Some(token) = found else {
        return Ok(
            oauth_error("invalid_token", "unknown, revoked or expired access token").response(),
        );
    };
    if token.fault == Fault::UserinfoPlain {
        let mut claims = persona_claims(token.persona);
        claims["sub"] = idp.subject(token.persona).into();
        return Ok(HttpResponse::Ok().json(claims));
    }
    Ok(match idp.userinfo_jwt(token.persona, token.fault) {
        Ok(jwe) => HttpResponse::Ok().content_type("application/jwt").body(jwe),
        Err(e) => e.response(),
    })
}

#[derive(Debug, Deserialize)]
struct RevokeForm {
    token: String,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
}

/// RFC 7009: the token stops working; an unknown token is not an error.
#[post("/dev-idp/revoke")]
async fn revoke(
    state: web::Data<AppState>,
    form: web::Form<RevokeForm>,
) -> Result<HttpResponse, AppError> {
    let idp = idp(&state)?;
    let now = idp_now();
    if let Err(e) = idp.authenticate_client(
        form.client_assertion_type.as_deref(),
        form.client_assertion.as_deref(),
        &idp.endpoint("revoke"),
        now,
    ) {
        return Ok(e.response());
    }
    DevIdp::lock(&idp.tokens).remove(&form.token);
    Ok(HttpResponse::Ok().finish())
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(discovery)
        .service(entity_configuration)
        .service(jwks)
        .service(authorize)
        .service(choose)
        .service(token_post)
        .service(userinfo)
        .service(revoke);
}
