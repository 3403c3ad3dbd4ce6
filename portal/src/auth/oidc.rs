//! The portal as an OpenID Connect relying party, through the `openidconnect` crate: discovery,
//! authorization code with PKCE (S256), `private_key_jwt` client authentication, ID token checks
//! (signature, iss, aud, exp, nonce, at_hash, acr) and userinfo. The SPID/CIE profile (signed request
//! object, encrypted userinfo, federation) extends this module.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use josekit::jwt::JwtPayload;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreProviderMetadata,
};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AuthorizationCode, ClientId, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
    UserInfoClaims,
};
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::auth::keys::NamedKey;
use crate::domain::CodiceFiscale;

/// How long a provider's discovery document (and keys) are trusted before fetching them again.
const DISCOVERY_TTL: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("discovery of {issuer}: {reason}")]
    Discovery { issuer: String, reason: String },
    #[error("{0}")]
    Protocol(String),
}

fn protocol(e: impl std::fmt::Display) -> OidcError {
    OidcError::Protocol(e.to_string())
}

/// The SPID/CIE attributes beyond the standard claims.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SpidClaims {
    #[serde(
        rename = "https://attributes.eid.gov.it/fiscal_number",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub fiscal_number: Option<String>,
    #[serde(
        rename = "https://attributes.spid.gov.it/fiscalNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub spid_fiscal_number: Option<String>,
}

impl AdditionalClaims for SpidClaims {}

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

/// What the relying party keeps between the redirect and the callback (in the session).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthRequest {
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
}

pub struct RelyingParty {
    client_id: String,
    redirect_uri: String,
    signing_key: NamedKey,
    http: reqwest::Client,
    discovered: RwLock<HashMap<String, (Instant, CoreProviderMetadata)>>,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RelyingParty {{ client_id: {} }}", self.client_id)
    }
}

fn alphanumeric(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

impl RelyingParty {
    pub fn new(
        client_id: String,
        redirect_uri: String,
        signing_key: NamedKey,
    ) -> Result<RelyingParty, OidcError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(protocol)?;
        Ok(RelyingParty {
            client_id,
            redirect_uri,
            signing_key,
            http,
            discovered: RwLock::new(HashMap::new()),
        })
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    async fn metadata(&self, issuer: &str) -> Result<CoreProviderMetadata, OidcError> {
        if let Some((at, meta)) = self.discovered.read().await.get(issuer) {
            if at.elapsed() < DISCOVERY_TTL {
                return Ok(meta.clone());
            }
        }
        let url = IssuerUrl::new(issuer.to_string()).map_err(protocol)?;
        let meta = CoreProviderMetadata::discover_async(url, &self.http)
            .await
            .map_err(|e| OidcError::Discovery {
                issuer: issuer.to_string(),
                reason: error_chain(&e),
            })?;
        self.discovered
            .write()
            .await
            .insert(issuer.to_string(), (Instant::now(), meta.clone()));
        Ok(meta)
    }

    /// The URL to send the browser to, and what to keep for the callback.
    pub async fn start(&self, issuer: &str, level: u8) -> Result<(String, AuthRequest), OidcError> {
        let meta = self.metadata(issuer).await?;
        let client =
            CoreClient::from_provider_metadata(meta, ClientId::new(self.client_id.clone()), None)
                .set_redirect_uri(RedirectUrl::new(self.redirect_uri.clone()).map_err(protocol)?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = alphanumeric(48);
        let nonce = alphanumeric(48);
        let claims = serde_json::json!({
            "userinfo": {
                "given_name": { "essential": true },
                "family_name": { "essential": true },
                "https://attributes.eid.gov.it/fiscal_number": { "essential": true },
                "birthdate": null,
                "email": null,
                "phone_number": null
            },
            "id_token": { "acr": { "essential": true } }
        });
        let (state_for_url, nonce_for_url) = (state.clone(), nonce.clone());
        let (url, _, _) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state_for_url),
                move || Nonce::new(nonce_for_url),
            )
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .add_extra_param("acr_values", acr_for_level(level))
            .add_extra_param("prompt", "consent login")
            .add_extra_param("claims", claims.to_string())
            .url();
        let request = AuthRequest {
            issuer: issuer.to_string(),
            state,
            nonce,
            pkce_verifier: verifier.secret().clone(),
            level,
        };
        Ok((url.to_string(), request))
    }

    /// Completes the login: exchanges the code, verifies the ID token, fetches userinfo.
    pub async fn finish(
        &self,
        request: &AuthRequest,
        code: &str,
        iss: Option<&str>,
    ) -> Result<Identity, OidcError> {
        if let Some(iss) = iss {
            if iss != request.issuer {
                return Err(protocol("the iss parameter names another provider"));
            }
        }
        let meta = self.metadata(&request.issuer).await?;
        let token_endpoint = meta
            .token_endpoint()
            .ok_or_else(|| protocol("provider has no token endpoint"))?
            .to_string();
        let client =
            CoreClient::from_provider_metadata(meta, ClientId::new(self.client_id.clone()), None)
                .set_redirect_uri(RedirectUrl::new(self.redirect_uri.clone()).map_err(protocol)?);
        let assertion = self.client_assertion(&token_endpoint)?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(protocol)?
            .set_pkce_verifier(PkceCodeVerifier::new(request.pkce_verifier.clone()))
            .add_extra_param(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .add_extra_param("client_assertion", assertion)
            .request_async(&self.http)
            .await
            .map_err(|e| protocol(format!("token request: {}", error_chain(&e))))?;

        let id_token = tokens.id_token().ok_or_else(|| protocol("no ID token"))?;
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
            return Err(protocol(format!(
                "acr level {level} below the requested {}",
                request.level
            )));
        }

        let userinfo: UserInfoClaims<SpidClaims, CoreGenderClaim> = client
            .user_info(
                tokens.access_token().clone(),
                Some(claims.subject().clone()),
            )
            .map_err(protocol)?
            .request_async(&self.http)
            .await
            .map_err(|e| protocol(format!("userinfo: {}", error_chain(&e))))?;
        let extra = userinfo.additional_claims();
        let fiscal = extra
            .fiscal_number
            .as_deref()
            .or(extra.spid_fiscal_number.as_deref())
            .ok_or_else(|| protocol("userinfo has no fiscal number"))?;
        let cf = parse_fiscal_number(fiscal)?;
        let given_name = userinfo
            .given_name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_string())
            .ok_or_else(|| protocol("userinfo has no given_name"))?;
        let family_name = userinfo
            .family_name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_string())
            .ok_or_else(|| protocol("userinfo has no family_name"))?;
        Ok(Identity {
            cf,
            given_name,
            family_name,
            birth_date: userinfo.birthdate().map(|b| b.as_str().to_string()),
            email: userinfo.email().map(|e| e.as_str().to_string()),
            phone: userinfo.phone_number().map(|p| p.as_str().to_string()),
            level,
        })
    }

    /// `private_key_jwt`: a short-lived assertion signed with the portal's key.
    fn client_assertion(&self, token_endpoint: &str) -> Result<String, OidcError> {
        let now = std::time::SystemTime::now();
        let mut payload = JwtPayload::new();
        payload.set_issuer(&self.client_id);
        payload.set_subject(&self.client_id);
        payload.set_audience(vec![token_endpoint]);
        payload.set_issued_at(&now);
        payload.set_expires_at(&(now + Duration::from_secs(300)));
        payload.set_jwt_id(uuid::Uuid::new_v4().to_string());
        self.signing_key.sign(&payload, "JWT").map_err(protocol)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
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
    fn acr_levels_round_trip() {
        for level in 1..=3 {
            assert_eq!(level_of_acr(acr_for_level(level)), Some(level));
        }
        assert_eq!(level_of_acr("urn:other"), None);
    }
}
