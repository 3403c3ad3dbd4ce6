//! The portal as an OpenID Connect relying party with the SPID/CIE profile, through the
//! `openidconnect` crate: authorization code with PKCE (S256) and a signed request object;
//! `private_key_jwt` client authentication; ID token checks (signature, iss, aud, exp, nonce,
//! at_hash, acr); userinfo as a JWT signed by the provider and encrypted to the portal's key;
//! the `iss` callback parameter (RFC 9207); token revocation at logout.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use josekit::jwk::Jwk;
use josekit::jws::{JwsVerifier, PS256, RS256, RS512};
use josekit::jwt::{self, JwtPayload};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJsonWebKeySet, CoreProviderMetadata,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, CsrfToken, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::auth::federation::trust_chain::{self, TrustAnchor};
use crate::auth::keys::NamedKey;
use crate::domain::CodiceFiscale;
use crate::telemetry::error_chain;

/// How long a provider's metadata and keys are trusted before fetching them again.
const DISCOVERY_TTL: Duration = Duration::from_secs(600);
/// Lifetime of the request object and of client assertions.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

pub const FISCAL_NUMBER: &str = "https://attributes.eid.gov.it/fiscal_number";
const SPID_FISCAL_NUMBER: &str = "https://attributes.spid.gov.it/fiscalNumber";

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("discovery of {issuer}: {reason}")]
    Discovery { issuer: String, reason: String },
    #[error("{0}")]
    Protocol(String),
    /// The provider authenticated the person at a lower SPID level than the one asked for.
    #[error("acr level {got} below the requested {wanted}")]
    LevelTooLow { got: u8, wanted: u8 },
}

fn protocol(e: impl std::fmt::Display) -> OidcError {
    OidcError::Protocol(e.to_string())
}

/// The SPID levels as `acr` values.
pub fn acr_for_level(level: u8) -> &'static str {
    match level {
        0 | 1 => "https://www.spid.gov.it/SpidL1",
        2 => "https://www.spid.gov.it/SpidL2",
        _ => "https://www.spid.gov.it/SpidL3",
    }
}

pub fn level_of_acr(acr: &str) -> Option<u8> {
    match acr {
        "https://www.spid.gov.it/SpidL1" => Some(1),
        "https://www.spid.gov.it/SpidL2" => Some(2),
        "https://www.spid.gov.it/SpidL3" => Some(3),
        _ => None,
    }
}

/// `TINIT-RSSMRA…` → the codice fiscale, check character verified.
pub fn parse_fiscal_number(value: &str) -> Result<CodiceFiscale, OidcError> {
    let cf = value.strip_prefix("TINIT-").unwrap_or(value);
    CodiceFiscale::parse(cf).map_err(|e| OidcError::Protocol(format!("fiscal number: {e}")))
}

/// The attributes asked for with the `claims` parameter.
pub fn requested_claims() -> serde_json::Value {
    serde_json::json!({
        "userinfo": {
            "given_name": { "essential": true },
            "family_name": { "essential": true },
            FISCAL_NUMBER: { "essential": true },
            "birthdate": null,
            "email": null,
            "phone_number": null,
            "address": null
        },
        "id_token": { "acr": { "essential": true } }
    })
}

/// What the relying party keeps between the redirect and the callback (in the session).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthRequest {
    /// The id of the provider entry (see [`ProviderEntry`]).
    pub provider: String,
    pub issuer: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub level: u8,
}

/// The verified outcome of a login.
#[derive(Clone)]
pub struct Identity {
    pub cf: CodiceFiscale,
    pub given_name: String,
    pub family_name: String,
    pub birth_date: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub level: u8,
    /// Kept (server-side) to be revoked at logout.
    pub access_token: String,
}

/// A provider's metadata as published, with its keys.
#[derive(Debug, Clone)]
struct Provider {
    metadata: CoreProviderMetadata,
    raw: serde_json::Value,
}

impl Provider {
    fn endpoint(&self, name: &str) -> Option<String> {
        self.raw
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }

    /// The provider's signing key `kid` as a JWK.
    fn key(&self, kid: Option<&str>) -> Result<Jwk, OidcError> {
        let set = serde_json::to_value(self.metadata.jwks()).map_err(protocol)?;
        let keys = set
            .get("keys")
            .and_then(|k| k.as_array())
            .cloned()
            .unwrap_or_default();
        let found = keys
            .into_iter()
            .filter(|k| {
                k.get("use")
                    .and_then(|u| u.as_str())
                    .is_none_or(|u| u == "sig")
            })
            .find(|k| kid.is_none() || k.get("kid").and_then(|v| v.as_str()) == kid)
            .ok_or_else(|| protocol("no provider key for the userinfo signature"))?;
        let map = found
            .as_object()
            .cloned()
            .ok_or_else(|| protocol("bad provider key"))?;
        Jwk::from_map(map).map_err(protocol)
    }
}

/// How a provider's metadata is obtained.
#[derive(Debug, Clone)]
pub enum ProviderSource {
    /// Through the federation: a trust chain from `entity_id` to a trust anchor.
    Federation { entity_id: String },
    /// By OpenID discovery at `issuer`.
    Discovery { issuer: String },
    /// A static registration: the provider's metadata, with its `jwks`.
    Static { metadata: serde_json::Value },
}

/// An identity provider offered on the login page.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderEntry {
    pub id: String,
    /// `spid` or `cie`.
    pub kind: crate::config::ProviderKind,
    pub label: String,
    #[serde(skip)]
    pub source: ProviderSource,
}

pub struct RelyingParty {
    providers: Vec<ProviderEntry>,
    anchors: Vec<TrustAnchor>,
    client_id: String,
    redirect_uri: String,
    signing_key: NamedKey,
    encryption_key: NamedKey,
    http: reqwest::Client,
    /// Resolved providers by entry id, with the instant they must be resolved again.
    resolved: RwLock<HashMap<String, (Instant, Provider)>>,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RelyingParty {{ client_id: {} }}", self.client_id)
    }
}

fn alphanumeric(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

pub(crate) fn b64_json(segment: &str) -> Option<serde_json::Value> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

impl RelyingParty {
    pub fn new(
        client_id: String,
        redirect_uri: String,
        signing_key: NamedKey,
        encryption_key: NamedKey,
        providers: Vec<ProviderEntry>,
        anchors: Vec<TrustAnchor>,
    ) -> Result<RelyingParty, OidcError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(protocol)?;
        Ok(RelyingParty {
            providers,
            anchors,
            client_id,
            redirect_uri,
            signing_key,
            encryption_key,
            http,
            resolved: RwLock::new(HashMap::new()),
        })
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn providers(&self) -> &[ProviderEntry] {
        &self.providers
    }

    /// Resolves `entity_id`'s trust chain up to the configured trust anchor `anchor` (the
    /// federation's resolve endpoint and `sportello federation check`).
    pub async fn resolve_in_federation(
        &self,
        entity_id: &str,
        anchor: &str,
    ) -> Result<trust_chain::Resolved, trust_chain::ChainError> {
        let anchors: Vec<TrustAnchor> = self
            .anchors
            .iter()
            .filter(|a| a.entity_id == anchor)
            .cloned()
            .collect();
        let now_s = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        trust_chain::resolve(
            &trust_chain::HttpFetcher(&self.http),
            entity_id,
            &anchors,
            now_s,
        )
        .await
    }

    /// The provider of entry `id`, resolved (and cached until its metadata or chain expires).
    /// Drops the cached metadata and keys of provider `id`: the next use fetches them again.
    async fn forget(&self, id: &str) {
        self.resolved.write().await.remove(id);
    }

    async fn provider(&self, id: &str) -> Result<Provider, OidcError> {
        if let Some((until, provider)) = self.resolved.read().await.get(id) {
            if Instant::now() < *until {
                return Ok(provider.clone());
            }
        }
        let entry = self
            .providers
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(|| protocol(format!("no provider '{id}'")))?;
        let (provider, ttl) = match &entry.source {
            ProviderSource::Federation { entity_id } => {
                let now_s = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                let chain = trust_chain::resolve(
                    &trust_chain::HttpFetcher(&self.http),
                    entity_id,
                    &self.anchors,
                    now_s,
                )
                .await
                .map_err(|e| OidcError::Discovery {
                    issuer: entity_id.clone(),
                    reason: e.to_string(),
                })?;
                let metadata =
                    chain
                        .metadata("openid_provider")
                        .map_err(|e| OidcError::Discovery {
                            issuer: entity_id.clone(),
                            reason: e.to_string(),
                        })?;
                let provider = self.provider_from_metadata(metadata, entity_id).await?;
                let left = Duration::from_secs((chain.expires_at - now_s).max(0) as u64);
                (provider, left.min(DISCOVERY_TTL))
            }
            ProviderSource::Discovery { issuer } => {
                let fail = |reason: String| OidcError::Discovery {
                    issuer: issuer.clone(),
                    reason,
                };
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let response = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                if !response.status().is_success() {
                    return Err(fail(format!("status {}", response.status())));
                }
                let raw: serde_json::Value =
                    response.json().await.map_err(|e| fail(e.to_string()))?;
                (
                    self.provider_from_metadata(raw, issuer).await?,
                    DISCOVERY_TTL,
                )
            }
            ProviderSource::Static { metadata } => {
                let issuer = metadata
                    .get("issuer")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string();
                (
                    self.provider_from_metadata(metadata.clone(), &issuer)
                        .await?,
                    Duration::from_secs(365 * 86_400),
                )
            }
        };
        self.resolved
            .write()
            .await
            .insert(id.to_string(), (Instant::now() + ttl, provider.clone()));
        Ok(provider)
    }

    /// A provider from its metadata: the issuer must be the one expected; keys inline (`jwks`, as in
    /// the federation and static registrations) or fetched from `jwks_uri`.
    async fn provider_from_metadata(
        &self,
        mut raw: serde_json::Value,
        expected_issuer: &str,
    ) -> Result<Provider, OidcError> {
        let fail = |reason: String| OidcError::Discovery {
            issuer: expected_issuer.to_string(),
            reason,
        };
        if raw.get("issuer").and_then(|v| v.as_str()) != Some(expected_issuer) {
            return Err(fail("the metadata names another issuer".into()));
        }
        let inline: Option<CoreJsonWebKeySet> = match raw.get("jwks") {
            Some(jwks) => {
                Some(serde_json::from_value(jwks.clone()).map_err(|e| fail(format!("jwks: {e}")))?)
            }
            None => None,
        };
        if inline.is_some() && raw.get("jwks_uri").is_none() {
            // The library wants a jwks_uri; with inline keys it is never fetched.
            raw["jwks_uri"] = format!("{}/jwks", expected_issuer.trim_end_matches('/')).into();
        }
        let metadata: CoreProviderMetadata =
            serde_json::from_value(raw.clone()).map_err(|e| fail(e.to_string()))?;
        let jwks = match inline {
            Some(jwks) => jwks,
            None => CoreJsonWebKeySet::fetch_async(metadata.jwks_uri(), &self.http)
                .await
                .map_err(|e| fail(format!("keys: {}", error_chain(&e))))?,
        };
        Ok(Provider {
            metadata: metadata.set_jwks(jwks),
            raw,
        })
    }

    /// The URL to send the browser to, and what to keep for the callback.
    pub async fn start(
        &self,
        provider_id: &str,
        level: u8,
    ) -> Result<(String, AuthRequest), OidcError> {
        let provider = self.provider(provider_id).await?;
        let issuer = provider.endpoint("issuer").unwrap_or_default();
        let issuer = issuer.as_str();
        let kind = self
            .providers
            .iter()
            .find(|p| p.id == provider_id)
            .map(|p| p.kind)
            .unwrap_or(crate::config::ProviderKind::Spid);
        let client = CoreClient::from_provider_metadata(
            provider.metadata,
            ClientId::new(self.client_id.clone()),
            None,
        )
        .set_redirect_uri(RedirectUrl::new(self.redirect_uri.clone()).map_err(protocol)?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = alphanumeric(48);
        let nonce = alphanumeric(48);
        let request_object =
            self.request_object(issuer, kind, challenge.as_str(), &state, &nonce, level)?;
        let (state_for_url, nonce_for_url) = (state.clone(), nonce.clone());
        let mut authorize = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state_for_url),
            move || Nonce::new(nonce_for_url),
        );
        if kind == crate::config::ProviderKind::Cie {
            authorize = authorize.add_scope(Scope::new("profile".into()));
        }
        let (url, _, _) = authorize
            .set_pkce_challenge(challenge)
            .add_extra_param("acr_values", acr_for_level(level))
            .add_extra_param("prompt", "consent login")
            .add_extra_param("request", request_object)
            .url();
        let request = AuthRequest {
            provider: provider_id.to_string(),
            issuer: issuer.to_string(),
            state,
            nonce,
            pkce_verifier: verifier.secret().clone(),
            level,
        };
        Ok((url.to_string(), request))
    }

    /// The signed request object carrying every parameter of the authorization request.
    fn request_object(
        &self,
        issuer: &str,
        kind: crate::config::ProviderKind,
        challenge: &str,
        state: &str,
        nonce: &str,
        level: u8,
    ) -> Result<String, OidcError> {
        let mut payload = JwtPayload::new();
        payload.set_issuer(&self.client_id);
        payload.set_audience(vec![issuer]);
        stamp(&mut payload)?;
        payload.set_jwt_id(uuid::Uuid::new_v4().to_string());
        let claims = [
            ("client_id", serde_json::json!(self.client_id)),
            ("response_type", serde_json::json!("code")),
            ("scope", serde_json::json!(scope_for(kind))),
            ("code_challenge", serde_json::json!(challenge)),
            ("code_challenge_method", serde_json::json!("S256")),
            ("nonce", serde_json::json!(nonce)),
            ("state", serde_json::json!(state)),
            ("prompt", serde_json::json!("consent login")),
            ("redirect_uri", serde_json::json!(self.redirect_uri)),
            ("acr_values", serde_json::json!(acr_for_level(level))),
            ("claims", requested_claims()),
        ];
        for (name, value) in claims {
            payload.set_claim(name, Some(value)).map_err(protocol)?;
        }
        self.signing_key.sign(&payload, "JWT").map_err(protocol)
    }

    /// Completes the login: exchanges the code, verifies the ID token, fetches and opens userinfo.
    pub async fn finish(
        &self,
        request: &AuthRequest,
        code: &str,
        iss: Option<&str>,
    ) -> Result<Identity, OidcError> {
        if iss.is_some_and(|iss| iss != request.issuer) {
            return Err(protocol("the iss parameter names another provider"));
        }
        let provider = self.provider(&request.provider).await?;
        // RFC 9207 §2.4: a provider that says it sends `iss` must have sent it (mix-up attacks).
        if iss.is_none()
            && provider.raw["authorization_response_iss_parameter_supported"]
                == serde_json::json!(true)
        {
            return Err(protocol(
                "the callback has no iss, which the provider says it always sends",
            ));
        }
        let token_endpoint = provider
            .endpoint("token_endpoint")
            .ok_or_else(|| protocol("no token endpoint"))?;
        let userinfo_endpoint = provider
            .endpoint("userinfo_endpoint")
            .ok_or_else(|| protocol("no userinfo endpoint"))?;
        let redirect = RedirectUrl::new(self.redirect_uri.clone()).map_err(protocol)?;
        let client_for = |provider: &Provider| {
            CoreClient::from_provider_metadata(
                provider.metadata.clone(),
                ClientId::new(self.client_id.clone()),
                None,
            )
            .set_redirect_uri(redirect.clone())
        };
        let client = client_for(&provider);
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(protocol)?
            .set_pkce_verifier(PkceCodeVerifier::new(request.pkce_verifier.clone()))
            .add_extra_param(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .add_extra_param("client_assertion", self.client_assertion(&token_endpoint)?)
            .request_async(&self.http)
            .await
            .map_err(|e| protocol(format!("token request: {}", error_chain(&e))))?;

        let id_token = tokens.id_token().ok_or_else(|| protocol("no ID token"))?;
        // A key the cached metadata does not have: the provider rolled its keys over. Its metadata
        // is fetched again (once) before the token is judged.
        let kid = id_token
            .to_string()
            .split('.')
            .next()
            .and_then(b64_json)
            .and_then(|h| h.get("kid").and_then(|k| k.as_str()).map(str::to_string));
        let (provider, client) = if kid.is_some() && provider.key(kid.as_deref()).is_err() {
            tracing::info!(provider = %request.provider, "unknown signing key: fetching the provider's keys again");
            self.forget(&request.provider).await;
            let provider = self.provider(&request.provider).await?;
            let client = client_for(&provider);
            (provider, client)
        } else {
            (provider, client)
        };
        let verifier = client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &Nonce::new(request.nonce.clone()))
            .map_err(|e| protocol(format!("ID token: {e}")))?;
        let expected_hash = AccessTokenHash::from_token(
            tokens.access_token(),
            id_token.signing_alg().map_err(protocol)?,
            id_token.signing_key(&verifier).map_err(protocol)?,
        )
        .map_err(protocol)?;
        match claims.access_token_hash() {
            Some(hash) if *hash == expected_hash => {}
            Some(_) => return Err(protocol("ID token at_hash does not match the access token")),
            None => return Err(protocol("ID token has no at_hash")),
        }
        let level = claims
            .auth_context_ref()
            .and_then(|acr| level_of_acr(acr.as_str()))
            .ok_or_else(|| protocol("ID token has no known acr"))?;
        if level < request.level {
            return Err(OidcError::LevelTooLow {
                got: level,
                wanted: request.level,
            });
        }

        let access_token = tokens.access_token().secret().clone();
        let userinfo = self
            .userinfo(
                &provider,
                &request.issuer,
                &userinfo_endpoint,
                &access_token,
            )
            .await?;
        if userinfo.get("sub").and_then(|v| v.as_str()) != Some(claims.subject().as_str()) {
            return Err(protocol("userinfo sub differs from the ID token's"));
        }
        let text = |name: &str| {
            userinfo
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let fiscal = text(FISCAL_NUMBER)
            .or_else(|| text(SPID_FISCAL_NUMBER))
            .ok_or_else(|| protocol("userinfo has no fiscal number"))?;
        Ok(Identity {
            cf: parse_fiscal_number(&fiscal)?,
            given_name: text("given_name").ok_or_else(|| protocol("userinfo has no given_name"))?,
            family_name: text("family_name")
                .ok_or_else(|| protocol("userinfo has no family_name"))?,
            birth_date: text("birthdate"),
            email: text("email"),
            phone: text("phone_number"),
            level,
            access_token,
        })
    }

    /// Userinfo must come as a JWE (RSA-OAEP or RSA-OAEP-256, A128CBC-HS256 or A256CBC-HS512) to the
    /// portal's key, wrapping a JWT signed by the provider for this client.
    async fn userinfo(
        &self,
        provider: &Provider,
        issuer: &str,
        endpoint: &str,
        access_token: &str,
    ) -> Result<serde_json::Value, OidcError> {
        let response = self
            .http
            .get(endpoint)
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|e| protocol(format!("userinfo: {e}")))?;
        if !response.status().is_success() {
            return Err(protocol(format!("userinfo: status {}", response.status())));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if !(content_type.starts_with("application/jwt")
            || content_type.starts_with("application/jose"))
        {
            return Err(protocol(format!(
                "userinfo is not an encrypted JWT ({content_type})"
            )));
        }
        let body = response.text().await.map_err(protocol)?;
        let jws = self.decrypt(body.trim())?;
        let payload = verify_signed(provider, &jws)?;
        // Signed by the provider and encrypted to this portal's key, it is the provider's answer to
        // this client; `iss` and `aud`, which the SPID/CIE reference provider leaves out, must name
        // them when they are there.
        if payload.issuer().is_some_and(|iss| iss != issuer) {
            return Err(protocol("userinfo iss differs from the provider"));
        }
        if payload
            .audience()
            .is_some_and(|aud| !aud.contains(&self.client_id.as_str()))
        {
            return Err(protocol("userinfo is not addressed to this client"));
        }
        Ok(serde_json::Value::Object(payload.claims_set().clone()))
    }

    fn decrypt(&self, jwe: &str) -> Result<String, OidcError> {
        let header = jwe
            .split('.')
            .next()
            .and_then(b64_json)
            .ok_or_else(|| protocol("userinfo: not a JWE"))?;
        let alg = header
            .get("alg")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let enc = header
            .get("enc")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if !matches!(enc, "A128CBC-HS256" | "A256CBC-HS512") {
            return Err(protocol(format!(
                "userinfo: content encryption {enc} refused"
            )));
        }
        let key = self.encryption_key.private_jwk();
        let decrypter = match alg {
            "RSA-OAEP" => josekit::jwe::RSA_OAEP.decrypter_from_jwk(&key),
            "RSA-OAEP-256" => josekit::jwe::RSA_OAEP_256.decrypter_from_jwk(&key),
            other => {
                return Err(protocol(format!(
                    "userinfo: key encryption {other} refused"
                )))
            }
        }
        .map_err(protocol)?;
        let (plain, _) = josekit::jwe::deserialize_compact(jwe, &decrypter)
            .map_err(|e| protocol(format!("userinfo: decryption failed: {e}")))?;
        String::from_utf8(plain).map_err(protocol)
    }

    /// Revokes an access token at its provider (RFC 7009, `private_key_jwt`); best effort at logout.
    pub async fn revoke(&self, provider_id: &str, access_token: &str) -> Result<(), OidcError> {
        let provider = self.provider(provider_id).await?;
        let Some(endpoint) = provider.endpoint("revocation_endpoint") else {
            return Ok(());
        };
        let assertion = self.client_assertion(&endpoint)?;
        let response = self
            .http
            .post(&endpoint)
            .form(&[
                ("token", access_token),
                ("token_type_hint", "access_token"),
                ("client_id", self.client_id.as_str()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| protocol(format!("revocation: {e}")))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(protocol(format!(
                "revocation: status {}",
                response.status()
            )))
        }
    }

    /// `private_key_jwt`: a short-lived assertion signed with the portal's key.
    fn client_assertion(&self, audience: &str) -> Result<String, OidcError> {
        let mut payload = JwtPayload::new();
        payload.set_issuer(&self.client_id);
        payload.set_subject(&self.client_id);
        payload.set_audience(vec![audience]);
        stamp(&mut payload)?;
        payload.set_jwt_id(uuid::Uuid::new_v4().to_string());
        self.signing_key.sign(&payload, "JWT").map_err(protocol)
    }
}

/// `iat` now and `exp` after [`ASSERTION_LIFETIME`], in whole seconds (NumericDate as the SPID/CIE
/// rules and their reference implementation read it; josekit would write fractions).
fn stamp(payload: &mut JwtPayload) -> Result<(), OidcError> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(protocol)?
        .as_secs();
    payload
        .set_claim("iat", Some(serde_json::json!(now)))
        .map_err(protocol)?;
    payload
        .set_claim(
            "exp",
            Some(serde_json::json!(now + ASSERTION_LIFETIME.as_secs())),
        )
        .map_err(protocol)?;
    Ok(())
}

/// The scopes asked of a provider: SPID knows `openid` (and `offline_access`) only; `profile` is
/// CIE's.
pub fn scope_for(kind: crate::config::ProviderKind) -> &'static str {
    match kind {
        crate::config::ProviderKind::Spid => "openid",
        crate::config::ProviderKind::Cie => "openid profile",
    }
}

/// Verifies a JWS signed by the provider with an asymmetric algorithm (never `none`, never HS*).
fn verify_signed(provider: &Provider, jws: &str) -> Result<JwtPayload, OidcError> {
    let header = jws
        .split('.')
        .next()
        .and_then(b64_json)
        .ok_or_else(|| protocol("userinfo: not a JWS"))?;
    let alg = header
        .get("alg")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    check_signature_alg(alg)?;
    let key = provider.key(header.get("kid").and_then(|v| v.as_str()))?;
    let verifier: Box<dyn JwsVerifier> = match alg {
        "RS512" => Box::new(RS512.verifier_from_jwk(&key).map_err(protocol)?),
        "PS256" => Box::new(PS256.verifier_from_jwk(&key).map_err(protocol)?),
        _ => Box::new(RS256.verifier_from_jwk(&key).map_err(protocol)?),
    };
    let (payload, _) = jwt::decode_with_verifier(jws, verifier.as_ref())
        .map_err(|e| protocol(format!("userinfo: signature: {e}")))?;
    if payload
        .expires_at()
        .is_some_and(|exp| exp < SystemTime::now())
    {
        return Err(protocol("userinfo: expired"));
    }
    Ok(payload)
}

/// The signature algorithms accepted from providers.
fn check_signature_alg(alg: &str) -> Result<(), OidcError> {
    match alg {
        "RS256" | "RS512" | "PS256" => Ok(()),
        other => Err(protocol(format!(
            "userinfo: signature algorithm '{other}' refused"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fiscal_numbers_lose_their_prefix_and_are_checked() {
        assert_eq!(
            parse_fiscal_number("TINIT-RSSMRA85T10A562S")
                .ok()
                .map(|c| c.to_string()),
            Some("RSSMRA85T10A562S".into())
        );
        assert!(parse_fiscal_number("TINIT-RSSMRA85T10A562X").is_err());
    }

    #[test]
    fn none_and_symmetric_signatures_are_refused() {
        for alg in ["none", "HS256", "HS512", ""] {
            assert!(check_signature_alg(alg).is_err(), "{alg}");
        }
        assert!(check_signature_alg("RS256").is_ok());
    }

    fn relying_party() -> Result<(RelyingParty, NamedKey), Box<dyn std::error::Error>> {
        let encryption = NamedKey::generate()?;
        let rp = RelyingParty::new(
            "https://rp.example.it".into(),
            "https://rp.example.it/auth/callback".into(),
            NamedKey::generate()?,
            encryption.clone(),
            Vec::new(),
            Vec::new(),
        )?;
        Ok((rp, encryption))
    }

    // RSA1_5 is deprecated: that is the point, a provider using it must be refused.
    #[allow(deprecated)]
    fn encrypt(key: &NamedKey, alg: &str, enc: &str) -> Result<String, Box<dyn std::error::Error>> {
        let jwk = key.public_jwk("enc", alg);
        let mut header = josekit::jwe::JweHeader::new();
        header.set_content_encryption(enc);
        let encrypter: Box<dyn josekit::jwe::JweEncrypter> = match alg {
            "RSA1_5" => Box::new(josekit::jwe::RSA1_5.encrypter_from_jwk(&jwk)?),
            "RSA-OAEP" => Box::new(josekit::jwe::RSA_OAEP.encrypter_from_jwk(&jwk)?),
            _ => Box::new(josekit::jwe::RSA_OAEP_256.encrypter_from_jwk(&jwk)?),
        };
        Ok(josekit::jwe::serialize_compact(
            b"a.b.c",
            &header,
            encrypter.as_ref(),
        )?)
    }

    #[test]
    fn userinfo_encryption_accepts_the_profile_and_nothing_else(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (rp, key) = relying_party()?;
        for (alg, enc) in [
            ("RSA-OAEP", "A128CBC-HS256"),
            ("RSA-OAEP-256", "A256CBC-HS512"),
            ("RSA-OAEP", "A256CBC-HS512"),
        ] {
            assert_eq!(
                rp.decrypt(&encrypt(&key, alg, enc)?)?,
                "a.b.c",
                "{alg} {enc}"
            );
        }
        let refused = rp
            .decrypt(&encrypt(&key, "RSA1_5", "A128CBC-HS256")?)
            .err()
            .map(|e| e.to_string());
        assert!(refused.unwrap_or_default().contains("RSA1_5 refused"));
        assert!(
            rp.decrypt(&encrypt(&key, "RSA-OAEP", "A128GCM")?).is_err(),
            "GCM is not in the profile"
        );
        let stranger = NamedKey::generate()?;
        assert!(
            rp.decrypt(&encrypt(&stranger, "RSA-OAEP", "A128CBC-HS256")?)
                .is_err(),
            "encrypted to another key"
        );
        Ok(())
    }

    #[test]
    fn acr_levels_round_trip() {
        for level in 1..=3 {
            assert_eq!(level_of_acr(acr_for_level(level)), Some(level));
        }
        assert_eq!(level_of_acr("urn:other"), None);
    }
}
