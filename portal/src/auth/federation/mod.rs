//! The portal in the SPID/CIE OpenID Connect federation: its entity configuration, published at
//! `/.well-known/openid-federation` as a JWT signed with the federation key.

pub mod check;
pub mod trust_chain;

use actix_web::{get, web, HttpResponse};
use josekit::jwt::JwtPayload;

use crate::server::AppState;
use crate::web::error::AppError;

pub const CONTENT_TYPE: &str = "application/entity-statement+jwt";

/// The claims of the entity configuration.
pub fn entity_configuration(state: &AppState) -> serde_json::Value {
    let client_id = state.relying_party.client_id();
    let public = &state.public_url;
    let federation = &state.config.federation;
    // Protocol timestamps use the system time, as the relying party's checks do (see `oidc`).
    let now_ms = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    let hours = federation.entity_configuration_hours.max(1);
    let keys = &state.keys;
    let contacts = vec![state.config.ente.contact_email.clone()];
    // In development the portal belongs to the development trust anchor's federation.
    let authority_hints = match (
        &state.dev_trust_anchor,
        federation.authority_hints.is_empty(),
    ) {
        (Some(ta), true) => vec![ta.entity_id.clone()],
        _ => federation.authority_hints.clone(),
    };
    let mut entity = serde_json::json!({
        "organization_name": federation.organization_name.clone().unwrap_or_else(|| state.config.ente.name.clone()),
        "homepage_uri": public,
        "policy_uri": format!("{public}/privacy"),
        "contacts": contacts,
    });
    // The SPID/CIE rules want both on a relying party: where others resolve a chain through the
    // portal, and a logo (the ente's, if configured, else the portal's own).
    entity["federation_resolve_endpoint"] = format!("{public}/resolve").into();
    entity["logo_uri"] = federation
        .logo_uri
        .clone()
        .unwrap_or_else(|| format!("{public}/static/img/logo.svg"))
        .into();
    serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "iat": now_ms / 1000,
        "exp": now_ms / 1000 + hours * 3600,
        "jwks": { "keys": [keys.federation.public_jwk("sig", "RS256").as_ref()] },
        "authority_hints": authority_hints,
        "trust_marks": federation.trust_marks.iter()
            .map(|m| serde_json::json!({ "id": m.id, "trust_mark": m.trust_mark }))
            .collect::<Vec<_>>(),
        "metadata": {
            "openid_relying_party": {
                "client_id": client_id,
                "client_name": state.config.ente.name,
                "application_type": "web",
                "redirect_uris": [format!("{public}/auth/callback")],
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "jwks": { "keys": [
                    keys.signing.public_jwk("sig", "RS256").as_ref(),
                    keys.encryption.public_jwk("enc", "RSA-OAEP-256").as_ref(),
                ] },
                "token_endpoint_auth_method": "private_key_jwt",
                "id_token_signed_response_alg": "RS256",
                "userinfo_signed_response_alg": "RS256",
                "userinfo_encrypted_response_alg": "RSA-OAEP-256",
                "userinfo_encrypted_response_enc": "A256CBC-HS512",
                "request_object_signing_alg": "RS256",
                "client_registration_types": ["automatic"],
                "contacts": contacts,
            },
            "federation_entity": entity,
        }
    })
}

#[get("/.well-known/openid-federation")]
async fn well_known(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let jwt = signed(&state, entity_configuration(&state), "entity-statement+jwt")?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(jwt))
}

/// `claims` (an object) as a JWT of type `typ`, signed with the portal's federation key.
fn signed(state: &AppState, claims: serde_json::Value, typ: &str) -> Result<String, AppError> {
    let serde_json::Value::Object(map) = claims else {
        return Err(AppError::Internal(format!(
            "{typ}: claims are not an object"
        )));
    };
    let payload = JwtPayload::from_map(map).map_err(|e| AppError::Internal(e.to_string()))?;
    state
        .keys
        .federation
        .sign(&payload, typ)
        .map_err(|e| AppError::Internal(e.to_string()))
}

#[derive(Debug, serde::Deserialize)]
struct ResolveQuery {
    sub: Option<String>,
    /// `anchor` in the SPID/CIE rules, `trust_anchor` in OpenID Federation 1.0: either is taken.
    #[serde(alias = "trust_anchor")]
    anchor: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

fn resolve_error(
    status: actix_web::http::StatusCode,
    error: &str,
    description: &str,
) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({
        "error": error,
        "error_description": description,
    }))
}

/// The federation resolve endpoint (OpenID Federation 1.0 §8.3, required of relying parties by the
/// SPID/CIE rules): `?sub=<entity>&anchor=<trust anchor>[&type=<metadata type>]` → a
/// `resolve-response+jwt` signed with the federation key, carrying the subject's metadata with the
/// superiors' policies applied and the trust chain itself.
#[get("/resolve")]
async fn resolve(
    state: web::Data<AppState>,
    query: web::Query<ResolveQuery>,
) -> Result<HttpResponse, AppError> {
    use actix_web::http::StatusCode;
    let (Some(sub), Some(anchor)) = (query.sub.as_deref(), query.anchor.as_deref()) else {
        return Ok(resolve_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "sub and anchor are required",
        ));
    };
    let resolved = match state.relying_party.resolve_in_federation(sub, anchor).await {
        Ok(r) => r,
        Err(e) => {
            return Ok(resolve_error(
                StatusCode::NOT_FOUND,
                "invalid_subject",
                &format!("no trust chain from {sub} to {anchor}: {e}"),
            ))
        }
    };
    let kinds: Vec<String> = match &query.kind {
        Some(kind) => vec![kind.clone()],
        None => resolved.entity_configuration["metadata"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default(),
    };
    let mut metadata = serde_json::Map::new();
    for kind in kinds {
        if let Ok(m) = resolved.metadata(&kind) {
            metadata.insert(kind, m);
        }
    }
    let now_s = crate::clock::Clock::now_ms(&crate::clock::SystemClock) / 1000;
    let claims = serde_json::json!({
        "iss": state.relying_party.client_id(),
        "sub": sub,
        "iat": now_s,
        "exp": resolved.expires_at,
        "metadata": metadata,
        "trust_chain": resolved.chain,
    });
    let jwt = signed(&state, claims, "resolve-response+jwt")?;
    Ok(HttpResponse::Ok()
        .content_type("application/resolve-response+jwt")
        .body(jwt))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(well_known).service(resolve);
}
