//! Trust chains (OpenID Federation, as the SPID/CIE federation uses it): from a provider's entity
//! configuration up through its authority hints to a configured trust anchor. Every statement's
//! signature is checked against the keys of the entity above it (the anchor's keys come from
//! configuration, never from the network), every statement must be in date, the metadata policies
//! of the superiors are applied to the provider's metadata, and the result is valid until the
//! earliest expiry in the chain.

use std::future::Future;
use std::pin::Pin;

use base64::Engine;
use josekit::jwk::Jwk;
use josekit::jws::{JwsVerifier, PS256, RS256};
use serde_json::{Map, Value};

/// Intermediates allowed between a provider and its trust anchor.
const MAX_DEPTH: usize = 3;
/// Clock skew tolerated on `iat`.
const SKEW_S: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("trust chain: {0}")]
    Invalid(String),
    #[error("trust chain: fetching {url}: {reason}")]
    Fetch { url: String, reason: String },
}

fn invalid(reason: impl Into<String>) -> ChainError {
    ChainError::Invalid(reason.into())
}

/// A trust anchor: its entity id and its federation keys (`{"keys": […]}`), from configuration.
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    pub entity_id: String,
    pub jwks: Value,
}

/// What a resolved chain yields.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The leaf's entity configuration claims.
    pub entity_configuration: Value,
    /// The metadata policies of the superiors, from the anchor down.
    pub policies: Vec<Value>,
    /// Unix seconds: the earliest `exp` in the chain.
    pub expires_at: i64,
    /// The trust chain as signed: the leaf's entity configuration, the statement of its superior
    /// about it, … , the trust anchor's entity configuration.
    pub chain: Vec<String>,
}

impl Resolved {
    /// The leaf's metadata of `kind` (e.g. `openid_provider`) with the policies applied.
    pub fn metadata(&self, kind: &str) -> Result<Value, ChainError> {
        let mut metadata = self
            .entity_configuration
            .get("metadata")
            .and_then(|m| m.get(kind))
            .cloned()
            .ok_or_else(|| invalid(format!("no {kind} metadata")))?;
        for policy in &self.policies {
            if let Some(p) = policy.get(kind) {
                apply_policy(&mut metadata, p)?;
            }
        }
        Ok(metadata)
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Fetches a URL's body; HTTP in the portal, a table in unit tests.
pub trait Fetcher: Sync {
    fn get<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<String, ChainError>>;
}

/// Fetches over HTTP with the given client.
pub struct HttpFetcher<'a>(pub &'a reqwest::Client);

impl Fetcher for HttpFetcher<'_> {
    fn get<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<String, ChainError>> {
        Box::pin(async move {
            let fail = |reason: String| ChainError::Fetch {
                url: url.to_string(),
                reason,
            };
            let response = self
                .0
                .get(url)
                .send()
                .await
                .map_err(|e| fail(e.to_string()))?;
            if !response.status().is_success() {
                return Err(fail(format!("status {}", response.status())));
            }
            response.text().await.map_err(|e| fail(e.to_string()))
        })
    }
}

fn segment(jwt: &str, index: usize) -> Result<Value, ChainError> {
    let part = jwt
        .split('.')
        .nth(index)
        .ok_or_else(|| invalid("not a JWT"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| invalid("bad base64 in a JWT"))?;
    serde_json::from_slice(&bytes).map_err(|_| invalid("bad JSON in a JWT"))
}

/// Verifies `jwt` with the key of `jwks` its header names; returns the claims.
pub fn verify(jwt: &str, jwks: &Value) -> Result<Value, ChainError> {
    let header = segment(jwt, 0)?;
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("statement without kid"))?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let key = jwks
        .get("keys")
        .and_then(Value::as_array)
        .and_then(|keys| {
            keys.iter()
                .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        })
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| invalid(format!("no key {kid} among the superior's keys")))?;
    let jwk = Jwk::from_map(key).map_err(|e| invalid(e.to_string()))?;
    let verifier: Box<dyn JwsVerifier> = match alg {
        "RS256" => Box::new(
            RS256
                .verifier_from_jwk(&jwk)
                .map_err(|e| invalid(e.to_string()))?,
        ),
        "PS256" => Box::new(
            PS256
                .verifier_from_jwk(&jwk)
                .map_err(|e| invalid(e.to_string()))?,
        ),
        other => return Err(invalid(format!("signature algorithm '{other}' refused"))),
    };
    let (payload, _) = josekit::jwt::decode_with_verifier(jwt, verifier.as_ref())
        .map_err(|_| invalid("bad signature"))?;
    Ok(Value::Object(payload.claims_set().clone()))
}

/// A NumericDate (RFC 7519: seconds, possibly fractional), in whole seconds.
fn seconds(claims: &Value, name: &str) -> Option<i64> {
    claims.get(name).and_then(Value::as_f64).map(|s| s as i64)
}

fn times(claims: &Value, now_s: i64) -> Result<i64, ChainError> {
    let exp = seconds(claims, "exp").ok_or_else(|| invalid("statement without exp"))?;
    let iat = seconds(claims, "iat").ok_or_else(|| invalid("statement without iat"))?;
    if exp <= now_s {
        return Err(invalid("a statement has expired"));
    }
    if iat > now_s + SKEW_S {
        return Err(invalid("a statement is issued in the future"));
    }
    Ok(exp)
}

fn text<'a>(claims: &'a Value, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

pub fn well_known(entity_id: &str) -> String {
    format!(
        "{}/.well-known/openid-federation",
        entity_id.trim_end_matches('/')
    )
}

/// An entity configuration, self-signed and in date. Returns (jwt, claims, exp).
async fn entity_configuration(
    fetch: &dyn Fetcher,
    entity_id: &str,
    now_s: i64,
) -> Result<(String, Value, i64), ChainError> {
    let jwt = fetch.get(&well_known(entity_id)).await?;
    let unverified = segment(&jwt, 1)?;
    if text(&unverified, "iss") != Some(entity_id) || text(&unverified, "sub") != Some(entity_id) {
        return Err(invalid(format!(
            "the entity configuration of {entity_id} names another entity"
        )));
    }
    let own_keys = unverified
        .get("jwks")
        .cloned()
        .ok_or_else(|| invalid("entity configuration without jwks"))?;
    let claims = verify(&jwt, &own_keys)?;
    let exp = times(&claims, now_s)?;
    Ok((jwt, claims, exp))
}

/// The superior `hint` as seen from below: its federation keys (trusted), its fetch endpoint, the
/// policies above it, and the earliest expiry so far.
struct Superior {
    keys: Value,
    fetch_endpoint: String,
    policies: Vec<Value>,
    expires_at: i64,
    /// The statements above it, up to and including the anchor's configuration.
    chain: Vec<String>,
}

fn superior<'a>(
    fetch: &'a dyn Fetcher,
    hint: &'a str,
    anchors: &'a [TrustAnchor],
    now_s: i64,
    depth: usize,
) -> BoxFuture<'a, Result<Superior, ChainError>> {
    Box::pin(async move {
        let endpoint = |claims: &Value| {
            claims
                .pointer("/metadata/federation_entity/federation_fetch_endpoint")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| invalid(format!("{hint} publishes no fetch endpoint")))
        };
        if let Some(anchor) = anchors.iter().find(|a| a.entity_id == hint) {
            // The anchor's own configuration must verify with the configured keys.
            let jwt = fetch.get(&well_known(hint)).await?;
            let claims = verify(&jwt, &anchor.jwks)?;
            let expires_at = times(&claims, now_s)?;
            return Ok(Superior {
                keys: anchor.jwks.clone(),
                fetch_endpoint: endpoint(&claims)?,
                policies: Vec::new(),
                expires_at,
                chain: vec![jwt],
            });
        }
        if depth >= MAX_DEPTH {
            return Err(invalid("too many intermediates before a trust anchor"));
        }
        let resolved = resolve_entity(fetch, hint, anchors, now_s, depth + 1).await?;
        let keys = resolved
            .entity_configuration
            .get("jwks")
            .cloned()
            .ok_or_else(|| invalid("intermediate without jwks"))?;
        Ok(Superior {
            keys,
            fetch_endpoint: endpoint(&resolved.entity_configuration)?,
            policies: resolved.policies,
            expires_at: resolved.expires_at,
            chain: resolved.chain.into_iter().skip(1).collect(),
        })
    })
}

fn resolve_entity<'a>(
    fetch: &'a dyn Fetcher,
    entity_id: &'a str,
    anchors: &'a [TrustAnchor],
    now_s: i64,
    depth: usize,
) -> BoxFuture<'a, Result<Resolved, ChainError>> {
    Box::pin(async move {
        let (ec_jwt, ec, ec_exp) = entity_configuration(fetch, entity_id, now_s).await?;
        let hints: Vec<String> = ec
            .get("authority_hints")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if hints.is_empty() {
            return Err(invalid(format!("{entity_id} has no authority hints")));
        }
        let mut reasons = Vec::new();
        for hint in &hints {
            let attempt = async {
                let sup = superior(fetch, hint, anchors, now_s, depth).await?;
                let mut url =
                    url::Url::parse(&sup.fetch_endpoint).map_err(|e| invalid(e.to_string()))?;
                url.query_pairs_mut().append_pair("sub", entity_id);
                let statement_jwt = fetch.get(url.as_str()).await?;
                let statement = verify(&statement_jwt, &sup.keys)?;
                if text(&statement, "iss") != Some(hint.as_str())
                    || text(&statement, "sub") != Some(entity_id)
                {
                    return Err(invalid("a subordinate statement names other entities"));
                }
                let statement_exp = times(&statement, now_s)?;
                // The keys the superior vouches for must be the ones the entity signs with.
                let vouched = statement
                    .get("jwks")
                    .cloned()
                    .ok_or_else(|| invalid("subordinate statement without jwks"))?;
                verify(&ec_jwt, &vouched)?;
                let mut policies = sup.policies;
                if let Some(policy) = statement.get("metadata_policy") {
                    policies.push(policy.clone());
                }
                let mut chain = vec![ec_jwt.clone(), statement_jwt];
                chain.extend(sup.chain);
                Ok(Resolved {
                    entity_configuration: ec.clone(),
                    policies,
                    expires_at: ec_exp.min(statement_exp).min(sup.expires_at),
                    chain,
                })
            };
            match attempt.await {
                Ok(resolved) => return Ok(resolved),
                Err(e) => reasons.push(format!("via {hint}: {e}")),
            }
        }
        Err(invalid(reasons.join("; ")))
    })
}

/// The trust anchor's own entity configuration, verified with its configured keys: when it expires.
pub async fn anchor_configuration(
    fetch: &dyn Fetcher,
    anchor: &TrustAnchor,
    now_s: i64,
) -> Result<i64, ChainError> {
    let jwt = fetch.get(&well_known(&anchor.entity_id)).await?;
    let claims = verify(&jwt, &anchor.jwks)?;
    times(&claims, now_s)
}

/// Resolves `entity_id` up to one of `anchors`.
pub async fn resolve(
    fetch: &dyn Fetcher,
    entity_id: &str,
    anchors: &[TrustAnchor],
    now_s: i64,
) -> Result<Resolved, ChainError> {
    resolve_entity(fetch, entity_id, anchors, now_s, 0).await
}

/// Applies one metadata policy (`{"param": {"operator": …}}`) to `metadata`.
pub fn apply_policy(metadata: &mut Value, policy: &Value) -> Result<(), ChainError> {
    let (Some(target), Some(rules)) = (metadata.as_object_mut(), policy.as_object()) else {
        return Err(invalid("metadata and policies must be objects"));
    };
    for (param, ops) in rules {
        let ops = ops.as_object().cloned().unwrap_or_default();
        if let Some(value) = ops.get("value") {
            if value.is_null() {
                target.remove(param);
            } else {
                target.insert(param.clone(), value.clone());
            }
        }
        if let Some(Value::Array(add)) = ops.get("add") {
            let mut current = target
                .get(param)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for v in add {
                if !current.contains(v) {
                    current.push(v.clone());
                }
            }
            target.insert(param.clone(), Value::Array(current));
        }
        if let Some(default) = ops.get("default") {
            target
                .entry(param.clone())
                .or_insert_with(|| default.clone());
        }
        check_operators(target, param, &ops)?;
    }
    Ok(())
}

fn check_operators(
    target: &mut Map<String, Value>,
    param: &str,
    ops: &Map<String, Value>,
) -> Result<(), ChainError> {
    if ops.get("essential") == Some(&Value::Bool(true)) && !target.contains_key(param) {
        return Err(invalid(format!("policy: {param} is essential")));
    }
    let Some(current) = target.get(param).cloned() else {
        return Ok(());
    };
    if let Some(Value::Array(allowed)) = ops.get("one_of") {
        if !allowed.contains(&current) {
            return Err(invalid(format!(
                "policy: {param} is not one of the allowed values"
            )));
        }
    }
    if let Some(Value::Array(allowed)) = ops.get("subset_of") {
        let kept: Vec<Value> = current
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| allowed.contains(v))
            .collect();
        if kept.is_empty() {
            return Err(invalid(format!(
                "policy: no allowed value left for {param}"
            )));
        }
        target.insert(param.to_string(), Value::Array(kept));
    }
    if let Some(Value::Array(required)) = ops.get("superset_of") {
        let have = target
            .get(param)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !required.iter().all(|v| have.contains(v)) {
            return Err(invalid(format!("policy: {param} lacks required values")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;
    use crate::auth::keys::NamedKey;

    const NOW: i64 = 1_900_000_000;
    const TA: &str = "https://ta.example.it";
    const INT: &str = "https://int.example.it";
    const OP: &str = "https://op.example.it";

    struct Table(HashMap<String, String>);

    impl Fetcher for Table {
        fn get<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<String, ChainError>> {
            let found = self.0.get(url).cloned();
            Box::pin(async move {
                found.ok_or_else(|| ChainError::Fetch {
                    url: url.into(),
                    reason: "404".into(),
                })
            })
        }
    }

    fn jwks(key: &NamedKey) -> Value {
        json!({ "keys": [key.public_jwk("sig", "RS256").as_ref()] })
    }

    fn sign(key: &NamedKey, claims: Value) -> String {
        let Value::Object(map) = claims else {
            return String::new();
        };
        let payload = josekit::jwt::JwtPayload::from_map(map).unwrap_or_default();
        key.sign(&payload, "entity-statement+jwt")
            .unwrap_or_default()
    }

    fn fetch_url(superior: &str, sub: &str) -> String {
        let mut url = url::Url::parse(&format!("{superior}/fetch"))
            .unwrap_or_else(|_| url::Url::parse("http://x").unwrap_or_else(|_| unreachable!()));
        url.query_pairs_mut().append_pair("sub", sub);
        url.to_string()
    }

    struct World {
        ta: NamedKey,
        op: NamedKey,
        table: HashMap<String, String>,
    }

    fn configuration(
        entity: &str,
        key: &NamedKey,
        hints: &[&str],
        exp: i64,
        metadata: Value,
    ) -> String {
        sign(
            key,
            json!({ "iss": entity, "sub": entity, "iat": NOW - 10, "exp": exp, "jwks": jwks(key),
                          "authority_hints": hints, "metadata": metadata }),
        )
    }

    fn world() -> World {
        let ta = NamedKey::generate().unwrap_or_else(|_| unreachable!());
        let op = NamedKey::generate().unwrap_or_else(|_| unreachable!());
        let mut table = HashMap::new();
        table.insert(well_known(TA), configuration(TA, &ta, &[], NOW + 7200,
            json!({ "federation_entity": { "federation_fetch_endpoint": format!("{TA}/fetch") } })));
        table.insert(well_known(OP), configuration(OP, &op, &[TA], NOW + 3600,
            json!({ "openid_provider": { "issuer": OP, "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"] } })));
        table.insert(fetch_url(TA, OP), sign(&ta, json!({ "iss": TA, "sub": OP, "iat": NOW - 10, "exp": NOW + 1800, "jwks": jwks(&op),
            "metadata_policy": { "openid_provider": { "token_endpoint_auth_methods_supported": { "subset_of": ["private_key_jwt"] } } } })));
        World { ta, op, table }
    }

    fn anchors(w: &World) -> Vec<TrustAnchor> {
        vec![TrustAnchor {
            entity_id: TA.into(),
            jwks: jwks(&w.ta),
        }]
    }

    async fn run(w: &World) -> Result<Resolved, ChainError> {
        resolve(&Table(w.table.clone()), OP, &anchors(w), NOW).await
    }

    #[tokio::test]
    async fn a_valid_chain_resolves_with_policy_applied_until_its_earliest_expiry() {
        let w = world();
        let resolved = run(&w).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resolved.expires_at, NOW + 1800);
        let metadata = resolved.metadata("openid_provider").unwrap_or_default();
        assert_eq!(
            metadata["token_endpoint_auth_methods_supported"],
            json!(["private_key_jwt"])
        );
    }

    #[tokio::test]
    async fn a_chain_through_an_intermediate_resolves() {
        let mut w = world();
        let int = NamedKey::generate().unwrap_or_else(|_| unreachable!());
        w.table.insert(well_known(INT), configuration(INT, &int, &[TA], NOW + 3600,
            json!({ "federation_entity": { "federation_fetch_endpoint": format!("{INT}/fetch") } })));
        w.table.insert(
            fetch_url(TA, INT),
            sign(
                &w.ta,
                json!({ "iss": TA, "sub": INT, "iat": NOW, "exp": NOW + 900, "jwks": jwks(&int) }),
            ),
        );
        w.table.insert(
            well_known(OP),
            configuration(
                OP,
                &w.op,
                &[INT],
                NOW + 3600,
                json!({ "openid_provider": { "issuer": OP } }),
            ),
        );
        w.table.insert(fetch_url(INT, OP), sign(&int, json!({ "iss": INT, "sub": OP, "iat": NOW, "exp": NOW + 3000, "jwks": jwks(&w.op) })));
        let resolved = run(&w).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            resolved.expires_at,
            NOW + 900,
            "the intermediate's statement expires first"
        );
    }

    #[tokio::test]
    async fn a_statement_signed_by_another_key_is_refused() {
        let mut w = world();
        let forger = NamedKey::generate().unwrap_or_else(|_| unreachable!());
        // Same kid as the anchor's, other key: the signature does not verify.
        let payload =
            json!({ "iss": TA, "sub": OP, "iat": NOW, "exp": NOW + 1800, "jwks": jwks(&w.op) });
        let Value::Object(map) = payload else { return };
        let mut header = josekit::jws::JwsHeader::new();
        header.set_key_id(w.ta.kid.clone());
        let signer = RS256
            .signer_from_pem(forger.to_pem())
            .unwrap_or_else(|_| unreachable!());
        let forged = josekit::jwt::encode_with_signer(
            &josekit::jwt::JwtPayload::from_map(map).unwrap_or_default(),
            &header,
            &signer,
        )
        .unwrap_or_default();
        w.table.insert(fetch_url(TA, OP), forged);
        let err = run(&w)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("bad signature"), "{err}");
    }

    #[tokio::test]
    async fn an_anchor_with_other_keys_than_configured_is_refused() {
        let w = world();
        let stranger = NamedKey::generate().unwrap_or_else(|_| unreachable!());
        let anchors = vec![TrustAnchor {
            entity_id: TA.into(),
            jwks: jwks(&stranger),
        }];
        assert!(resolve(&Table(w.table.clone()), OP, &anchors, NOW)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn expired_statements_are_refused() {
        let mut w = world();
        w.table.insert(
            well_known(OP),
            configuration(OP, &w.op, &[TA], NOW - 1, json!({ "openid_provider": {} })),
        );
        assert!(run(&w)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("expired"));

        let mut w = world();
        w.table.insert(fetch_url(TA, OP), sign(&w.ta, json!({ "iss": TA, "sub": OP, "iat": NOW - 100, "exp": NOW - 5, "jwks": jwks(&w.op) })));
        assert!(run(&w)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("expired"));
    }

    #[tokio::test]
    async fn a_provider_signing_with_keys_the_anchor_does_not_vouch_for_is_refused() {
        let mut w = world();
        let other = NamedKey::generate().unwrap_or_else(|_| unreachable!());
        w.table.insert(fetch_url(TA, OP), sign(&w.ta, json!({ "iss": TA, "sub": OP, "iat": NOW, "exp": NOW + 1800, "jwks": jwks(&other) })));
        assert!(run(&w).await.is_err());
    }

    #[test]
    fn policy_operators() {
        let mut m = json!({ "a": ["x", "y"], "b": "one" });
        apply_policy(
            &mut m,
            &json!({ "a": { "add": ["z"] }, "c": { "default": 3 }, "b": { "value": "two" } }),
        )
        .unwrap_or_default();
        assert_eq!(m, json!({ "a": ["x", "y", "z"], "b": "two", "c": 3 }));
        assert!(apply_policy(&mut m, &json!({ "b": { "one_of": ["three"] } })).is_err());
        assert!(apply_policy(&mut m, &json!({ "d": { "essential": true } })).is_err());
        assert!(apply_policy(&mut m, &json!({ "a": { "superset_of": ["q"] } })).is_err());
        assert!(apply_policy(&mut m, &json!({ "a": { "subset_of": ["q"] } })).is_err());
    }
}
