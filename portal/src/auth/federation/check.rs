//! `sportello federation check`: what an operator runs before going live and from monitoring. For
//! each configured trust anchor, each provider named by `entity_id`, and the portal itself, it
//! resolves the trust chain, prints when it expires and what is missing, and says whether all is
//! well. The portal is checked as the federation sees it: its entity configuration fetched from its
//! public address (so the portal must be running there).

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::trust_chain::{self, HttpFetcher, TrustAnchor};
use crate::config::{Config, Mode};

/// One line of the report: ok or a problem, and what was found.
pub struct Finding {
    pub ok: bool,
    pub text: String,
}

fn ok(text: String) -> Finding {
    Finding { ok: true, text }
}

fn problem(text: String) -> Finding {
    Finding { ok: false, text }
}

fn date(unix_s: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_s)
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_else(|_| unix_s.to_string())
}

/// The payload of a JWT, unverified (for expiry dates of what the portal was given).
fn payload(jwt: &str) -> Option<Value> {
    jwt.split('.').nth(1).and_then(crate::auth::oidc::b64_json)
}

/// Checks the federation set-up of `config`; `public_url` is where the portal answers.
pub async fn check(config: &Config, public_url: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let now_s = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
    {
        Ok(c) => c,
        Err(e) => return vec![problem(format!("HTTP client: {e}"))],
    };
    let public_url = public_url.trim_end_matches('/');
    if config.mode == Mode::Production && !public_url.starts_with("https://") {
        out.push(problem(format!(
            "public_url {public_url}: the federation accepts only https"
        )));
    }

    // The anchors: configured ones, and in development the portal's own development anchor.
    let mut anchors = Vec::new();
    for a in &config.federation.trust_anchors {
        match std::fs::read_to_string(&a.jwks_file)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()))
        {
            Ok(jwks) => anchors.push(TrustAnchor {
                entity_id: a.entity_id.clone(),
                jwks,
            }),
            Err(e) => out.push(problem(format!(
                "trust anchor {}: keys file {}: {e}",
                a.entity_id,
                a.jwks_file.display()
            ))),
        }
    }
    if config.dev_idp_enabled() {
        let dev = format!("{public_url}/dev-ta");
        match http
            .get(format!("{dev}/.well-known/openid-federation"))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                let jwt = r.text().await.unwrap_or_default();
                match payload(&jwt).and_then(|p| p.get("jwks").cloned()) {
                    Some(jwks) => {
                        out.push(ok(format!(
                            "development trust anchor {dev} (development only: never in production)"
                        )));
                        anchors.push(TrustAnchor {
                            entity_id: dev,
                            jwks,
                        });
                    }
                    None => out.push(problem(format!("development trust anchor {dev}: no keys"))),
                }
            }
            Ok(r) => out.push(problem(format!(
                "development trust anchor {dev}: status {}",
                r.status()
            ))),
            Err(e) => out.push(problem(format!(
                "development trust anchor {dev}: {e} (is the portal running there?)"
            ))),
        }
    }
    if anchors.is_empty() {
        out.push(problem(
            "no trust anchor configured (federation.trust_anchors)".into(),
        ));
    }
    for anchor in &anchors {
        match trust_chain::anchor_configuration(&HttpFetcher(&http), anchor, now_s).await {
            Ok(exp) => out.push(ok(format!(
                "trust anchor {}: configuration valid until {}",
                anchor.entity_id,
                date(exp)
            ))),
            Err(e) => out.push(problem(format!("trust anchor {}: {e}", anchor.entity_id))),
        }
    }

    // The providers in the federation.
    let mut providers: Vec<String> = config
        .auth
        .providers
        .iter()
        .filter_map(|p| p.entity_id.clone())
        .collect();
    if config.dev_idp_enabled() {
        providers.push(format!("{public_url}/dev-idp"));
    }
    for p in &config.auth.providers {
        if let Some(issuer) = p.issuer.as_deref().filter(|_| p.entity_id.is_none()) {
            out.push(ok(format!(
                "provider '{}' ({issuer}): outside the federation (discovery or static registration): no chain to check",
                p.id
            )));
        }
    }
    for entity in providers.iter().map(String::as_str) {
        out.push(resolve(&http, entity, "openid_provider", &anchors, now_s).await);
    }

    // The portal itself, as the federation sees it.
    let client_id = config
        .auth
        .client_id
        .clone()
        .unwrap_or_else(|| public_url.to_string());
    out.push(resolve(&http, &client_id, "openid_relying_party", &anchors, now_s).await);
    match http
        .get(format!("{client_id}/.well-known/openid-federation"))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => {
            let claims = payload(&r.text().await.unwrap_or_default()).unwrap_or_default();
            let entity = &claims["metadata"]["federation_entity"];
            for field in [
                "federation_resolve_endpoint",
                "logo_uri",
                "contacts",
                "homepage_uri",
            ] {
                if entity.get(field).is_none_or(Value::is_null) {
                    out.push(problem(format!(
                        "the portal's entity configuration has no federation_entity.{field}"
                    )));
                }
            }
            if claims["authority_hints"]
                .as_array()
                .is_none_or(|a| a.is_empty())
            {
                out.push(problem(
                    "the portal names no authority (federation.authority_hints)".into(),
                ));
            }
        }
        Ok(r) => out.push(problem(format!(
            "the portal's entity configuration at {client_id}: status {}",
            r.status()
        ))),
        Err(e) => out.push(problem(format!(
            "the portal's entity configuration at {client_id}: {e} (is it running there?)"
        ))),
    }
    if config.mode == Mode::Production && config.federation.trust_marks.is_empty() {
        out.push(problem(
            "no trust mark (federation.trust_marks): SPID and CIE providers expect the one the anchor issued".into(),
        ));
    }
    for mark in &config.federation.trust_marks {
        match payload(&mark.trust_mark).and_then(|p| p["exp"].as_i64()) {
            Some(exp) if exp <= now_s => out.push(problem(format!(
                "trust mark {}: expired on {}",
                mark.id,
                date(exp)
            ))),
            Some(exp) => out.push(ok(format!(
                "trust mark {}: valid until {}",
                mark.id,
                date(exp)
            ))),
            None => out.push(ok(format!("trust mark {}: no expiry", mark.id))),
        }
    }
    out
}

async fn resolve(
    http: &reqwest::Client,
    entity: &str,
    kind: &str,
    anchors: &[TrustAnchor],
    now_s: i64,
) -> Finding {
    match trust_chain::resolve(&HttpFetcher(http), entity, anchors, now_s).await {
        Ok(chain) => match chain.metadata(kind) {
            Ok(_) => ok(format!(
                "{entity}: trust chain of {} statements, valid until {}",
                chain.chain.len(),
                date(chain.expires_at)
            )),
            Err(e) => problem(format!("{entity}: {e}")),
        },
        Err(e) => problem(format!("{entity}: {e}")),
    }
}
