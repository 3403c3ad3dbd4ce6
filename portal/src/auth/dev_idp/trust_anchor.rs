//! The development trust anchor, under `/dev-ta`: the federation the development identity provider
//! and the portal both belong to in development mode, so that logins there resolve a real trust
//! chain. It publishes its entity configuration and, at its fetch endpoint, the statements about
//! its two subordinates (with a metadata policy for the provider).

use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use josekit::jwt::JwtPayload;
use serde::Deserialize;

use crate::auth::federation::CONTENT_TYPE;
use crate::auth::keys::NamedKey;
use crate::server::AppState;
use crate::web::error::AppError;

const STATEMENT_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct Subordinate {
    pub entity_id: String,
    /// Its federation keys, `{"keys": […]}`.
    pub jwks: serde_json::Value,
    pub metadata_policy: Option<serde_json::Value>,
}

#[derive(Debug)]
pub struct DevTrustAnchor {
    pub entity_id: String,
    key: NamedKey,
    subordinates: Vec<Subordinate>,
}

impl DevTrustAnchor {
    pub fn new(public_url: &str, key: NamedKey, subordinates: Vec<Subordinate>) -> DevTrustAnchor {
        DevTrustAnchor {
            entity_id: format!("{public_url}/dev-ta"),
            key,
            subordinates,
        }
    }

    /// Its federation keys, as a relying party configures them for a trust anchor.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.key.public_jwk("sig", "RS256").as_ref()] })
    }

    fn sign(&self, claims: serde_json::Value) -> Result<String, AppError> {
        let serde_json::Value::Object(map) = claims else {
            return Err(AppError::Internal("statement is not an object".into()));
        };
        let mut payload =
            JwtPayload::from_map(map).map_err(|e| AppError::Internal(e.to_string()))?;
        crate::auth::keys::set_lifetime(&mut payload, STATEMENT_LIFETIME)
            .map_err(|e| AppError::Internal(e.to_string()))?;
        payload.set_issuer(&self.entity_id);
        self.key
            .sign(&payload, "entity-statement+jwt")
            .map_err(|e| AppError::Internal(e.to_string()))
    }
}

fn anchor(state: &AppState) -> Result<&DevTrustAnchor, AppError> {
    state.dev_trust_anchor.as_deref().ok_or(AppError::NotFound)
}

#[get("/dev-ta/.well-known/openid-federation")]
async fn configuration(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let ta = anchor(&state)?;
    let jwt = ta.sign(serde_json::json!({
        "sub": ta.entity_id,
        "jwks": ta.jwks(),
        "metadata": { "federation_entity": {
            "federation_fetch_endpoint": format!("{}/fetch", ta.entity_id),
            "organization_name": "Trust anchor di sviluppo",
            "homepage_uri": state.public_url,
        } }
    }))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(jwt))
}

#[derive(Debug, Deserialize)]
struct FetchQuery {
    sub: String,
}

#[get("/dev-ta/fetch")]
async fn fetch(
    state: web::Data<AppState>,
    q: web::Query<FetchQuery>,
) -> Result<HttpResponse, AppError> {
    let ta = anchor(&state)?;
    let Some(sub) = ta.subordinates.iter().find(|s| s.entity_id == q.sub) else {
        return Ok(HttpResponse::NotFound().json(
            serde_json::json!({ "error": "not_found", "error_description": "unknown subordinate" }),
        ));
    };
    let mut claims = serde_json::json!({ "sub": sub.entity_id, "jwks": sub.jwks });
    if let Some(policy) = &sub.metadata_policy {
        claims["metadata_policy"] = policy.clone();
    }
    Ok(HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(ta.sign(claims)?))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(configuration).service(fetch);
}
