//! The portal in the SPID/CIE OpenID Connect federation: its entity configuration, published at
//! `/.well-known/openid-federation` as a JWT signed with the federation key.

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
    if let Some(logo) = &federation.logo_uri {
        entity["logo_uri"] = logo.clone().into();
    }
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
    let claims = entity_configuration(&state);
    let serde_json::Value::Object(map) = claims else {
        return Err(AppError::Internal(
            "entity configuration is not an object".into(),
        ));
    };
    let payload = JwtPayload::from_map(map).map_err(|e| AppError::Internal(e.to_string()))?;
    let jwt = state
        .keys
        .federation
        .sign(&payload, "entity-statement+jwt")
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(jwt))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(well_known);
}
