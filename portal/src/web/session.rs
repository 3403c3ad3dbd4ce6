//! Server-side sessions. The cookie carries 256 random bits; the database keeps only their SHA-256,
//! the session data, and the times that enforce the idle and absolute timeouts. A new id is issued at
//! login (the pre-login session keeps nothing of the person: for a minute it only points a second
//! callback of the same login at the new session, then it is deleted), so a planted cookie cannot
//! be carried into a login.

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::{HttpMessage, HttpRequest};
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::{PendingLogin, Principal};
use crate::db::Db;
use crate::server::AppState;
use crate::web::error::AppError;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SessionData {
    /// The synchronizer token every state-changing request must echo.
    pub csrf: String,
    pub principal: Option<Principal>,
    pub pending_login: Option<PendingLogin>,
    /// The provider's access token, revoked at logout.
    pub provider_token: Option<ProviderToken>,
    /// A form the person was sending when the page asked for a higher SPID level: kept across the
    /// step-up login and given back to the page, so nothing typed is lost.
    pub kept_form: Option<KeptForm>,
    /// Set while the person acts for someone else under a delegation or a legal representation
    /// (`crate::delegations`); every page then says so.
    #[serde(default)]
    pub acting_for: Option<ActingFor>,
    /// On a pre-login session whose login just completed, for a minute: the new session and where
    /// it went, for the second callback of a double click (`crate::auth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_over: Option<HandedOver>,
    /// Set when a callback took the login in progress and is completing it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub completing: bool,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct HandedOver {
    /// The new session's id (the hash of its token: the token itself is never stored).
    session: String,
    next: String,
    until_ms: i64,
}

impl std::fmt::Debug for HandedOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HandedOver {{ next: {}, .. }}", self.next)
    }
}

/// How long a completed login's pre-login session answers a second callback.
const HAND_OVER_MS: i64 = 60_000;

/// Takes the login in progress out of `session` in the database, if it is still there: true for
/// the one request that took it (compare-and-set on the stored data).
pub async fn take_pending_login(db: &Db, session: &Session) -> Result<bool, AppError> {
    if session.data.pending_login.is_none() {
        return Ok(false);
    }
    let before =
        serde_json::to_string(&session.data).map_err(|e| AppError::Internal(e.to_string()))?;
    let mut data = session.data.clone();
    data.pending_login = None;
    data.completing = true;
    let after = serde_json::to_string(&data).map_err(|e| AppError::Internal(e.to_string()))?;
    let taken = sqlx::query("UPDATE sessions SET data = $1 WHERE id = $2 AND data = $3")
        .bind(after)
        .bind(&session.id)
        .bind(before)
        .execute(&db.pool)
        .await?
        .rows_affected();
    Ok(taken == 1)
}

/// Marks the pre-login `old` session as handed over to the session `new`, going to `next`; it is
/// deleted a minute later.
pub async fn hand_over(
    state: &AppState,
    old: &Session,
    new: &Session,
    next: &str,
) -> Result<(), AppError> {
    let data = SessionData {
        handed_over: Some(HandedOver {
            session: new.id.clone(),
            next: next.to_string(),
            until_ms: state.clock.now_ms() + HAND_OVER_MS,
        }),
        ..SessionData::default()
    };
    let json = serde_json::to_string(&data).map_err(|e| AppError::Internal(e.to_string()))?;
    sqlx::query("UPDATE sessions SET data = $1 WHERE id = $2")
        .bind(json)
        .bind(&old.id)
        .execute(&state.db.pool)
        .await?;
    let (db, id) = (state.db.clone(), old.id.clone());
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(HAND_OVER_MS as u64)).await;
        let _ = sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id)
            .execute(&db.pool)
            .await;
    });
    Ok(())
}

/// Where another request's login of the pre-login session `old` stands.
pub enum LoginElsewhere {
    /// Completed: a token of this request's own for a twin of the new session, and where it went.
    Done { token: String, next: String },
    /// Still being completed.
    Waiting,
    /// The pre-login session is gone, or its hand-over has lapsed.
    Gone,
}

/// Reads `old` again to see whether the login another request is completing has finished.
pub async fn login_elsewhere(state: &AppState, old: &Session) -> Result<LoginElsewhere, AppError> {
    let data: Option<String> = sqlx::query_scalar("SELECT data FROM sessions WHERE id = $1")
        .bind(&old.id)
        .fetch_optional(&state.db.pool)
        .await?;
    let Some(data) = data.and_then(|d| serde_json::from_str::<SessionData>(&d).ok()) else {
        return Ok(LoginElsewhere::Gone);
    };
    Ok(match data.handed_over {
        Some(h) if state.clock.now_ms() <= h.until_ms => match twin(state, &h.session).await? {
            Some(token) => LoginElsewhere::Done {
                token,
                next: h.next,
            },
            None => LoginElsewhere::Gone,
        },
        Some(_) => LoginElsewhere::Gone,
        None if data.completing => LoginElsewhere::Waiting,
        None => LoginElsewhere::Gone,
    })
}

/// A new session with the data of session `id` (if it still exists): its token.
async fn twin(state: &AppState, id: &str) -> Result<Option<String>, AppError> {
    let data: Option<String> = sqlx::query_scalar("SELECT data FROM sessions WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.db.pool)
        .await?;
    let Some(data) = data.and_then(|d| serde_json::from_str::<SessionData>(&d).ok()) else {
        return Ok(None);
    };
    let (token, _) = create(state, data).await?;
    Ok(Some(token))
}

impl Session {
    /// Whether this (pre-login) session's login is being completed or was just completed by
    /// another request.
    pub fn login_elsewhere(&self) -> bool {
        self.data.completing || self.data.handed_over.is_some()
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct ActingFor {
    pub mandate_id: String,
    /// The represented person's name, for the banner.
    pub name: String,
}

impl std::fmt::Debug for ActingFor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ActingFor {{ mandate_id: {}, .. }}", self.mandate_id)
    }
}

/// Enters (or, with `None`, leaves) the "acting for" mode in the current session.
pub async fn set_acting_for(
    db: &Db,
    req: &HttpRequest,
    acting_for: Option<ActingFor>,
) -> Result<(), AppError> {
    let Some(mut session) = current(req) else {
        return Err(AppError::Forbidden);
    };
    session.data.acting_for = acting_for;
    save(db, &session).await?;
    // Later reads in the same request see the change.
    req.extensions_mut().insert(session);
    Ok(())
}

#[derive(Clone, Serialize, Deserialize)]
pub struct KeptForm {
    /// The page the form belongs to.
    pub path: String,
    pub fields: Vec<(String, String)>,
}

/// Personal data may be in the fields: `Debug` shows only the page.
impl std::fmt::Debug for KeptForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KeptForm {{ path: {}, fields: {} }}",
            self.path,
            self.fields.len()
        )
    }
}

/// Keeps `fields` (never the CSRF token) for the page at `path`, in the current session.
pub async fn keep_form(
    db: &Db,
    req: &HttpRequest,
    path: &str,
    fields: &[(&str, &str)],
) -> Result<(), AppError> {
    let Some(mut session) = current(req) else {
        return Ok(());
    };
    session.data.kept_form = Some(KeptForm {
        path: path.to_string(),
        fields: fields
            .iter()
            .filter(|(k, _)| *k != "csrf_token")
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    });
    save(db, &session).await
}

/// Takes back (once) the form kept for the page at `path`.
pub async fn take_kept_form(
    db: &Db,
    req: &HttpRequest,
    path: &str,
) -> Result<Option<Vec<(String, String)>>, AppError> {
    let Some(mut session) = current(req) else {
        return Ok(None);
    };
    match session.data.kept_form.take() {
        Some(kept) if kept.path == path => {
            save(db, &session).await?;
            Ok(Some(kept.fields))
        }
        _ => Ok(None),
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct ProviderToken {
    /// The provider entry's id.
    pub provider: String,
    pub access_token: String,
}

impl std::fmt::Debug for ProviderToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ProviderToken {{ provider: {}, access_token: [redacted] }}",
            self.provider
        )
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    id: String,
    pub data: SessionData,
    pub created_at: i64,
    pub last_seen_at: i64,
}

impl Session {
    pub fn principal(&self) -> Principal {
        self.data.principal.clone().unwrap_or(Principal::Anonymous)
    }
}

pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

fn hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cookie's name: `__Host-` prefixed when served over HTTPS.
pub fn cookie_name(state: &AppState) -> &'static str {
    name_for(state.secure_cookies())
}

fn name_for(secure: bool) -> &'static str {
    if secure {
        "__Host-sportello"
    } else {
        "sportello_session"
    }
}

pub fn cookie(state: &AppState, token: String) -> Cookie<'static> {
    build_cookie(state.secure_cookies(), token)
}

fn build_cookie(secure: bool, token: String) -> Cookie<'static> {
    Cookie::build(name_for(secure), token)
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .finish()
}

pub fn removal_cookie(state: &AppState) -> Cookie<'static> {
    let mut c = cookie(state, String::new());
    c.set_max_age(CookieDuration::ZERO);
    c
}

/// Creates a session; returns the cookie value (given only to the browser) and the session.
pub async fn create(state: &AppState, data: SessionData) -> Result<(String, Session), AppError> {
    create_in(&state.db, state.clock.now_ms(), data).await
}

/// As [`create`], given the database and the time (the click-day benchmark seeds sessions with it).
pub async fn create_in(
    db: &Db,
    now: i64,
    mut data: SessionData,
) -> Result<(String, Session), AppError> {
    let token = random_token(32);
    if data.csrf.is_empty() {
        data.csrf = random_token(32);
    }
    let json = serde_json::to_string(&data).map_err(|e| AppError::Internal(e.to_string()))?;
    sqlx::query(
        "INSERT INTO sessions (id, data, created_at, last_seen_at) VALUES ($1, $2, $3, $3)",
    )
    .bind(hash(&token))
    .bind(json)
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok((
        token.clone(),
        Session {
            id: hash(&token),
            data,
            created_at: now,
            last_seen_at: now,
        },
    ))
}

pub async fn save(db: &Db, session: &Session) -> Result<(), AppError> {
    let json =
        serde_json::to_string(&session.data).map_err(|e| AppError::Internal(e.to_string()))?;
    sqlx::query("UPDATE sessions SET data = $1 WHERE id = $2")
        .bind(json)
        .bind(&session.id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

pub async fn delete(db: &Db, session: &Session) -> Result<(), AppError> {
    sqlx::query("DELETE FROM sessions WHERE id = $1")
        .bind(&session.id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Loads the session named by `token`, ending it if it is past its idle or absolute timeout, and
/// records the activity (at most once a minute, to spare the database).
pub async fn load(state: &AppState, token: &str) -> Result<Option<Session>, AppError> {
    let id = hash(token);
    let row: Option<(String, i64, i64)> =
        sqlx::query_as("SELECT data, created_at, last_seen_at FROM sessions WHERE id = $1")
            .bind(&id)
            .fetch_optional(&state.db.pool)
            .await?;
    let Some((data, created_at, last_seen_at)) = row else {
        return Ok(None);
    };
    let now = state.clock.now_ms();
    let idle_ms = state.config.auth.session_idle_minutes * 60_000;
    let absolute_ms = state.config.auth.session_absolute_hours * 3_600_000;
    let data: Option<SessionData> = serde_json::from_str(&data).ok();
    let Some(data) =
        data.filter(|_| now - last_seen_at <= idle_ms && now - created_at <= absolute_ms)
    else {
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(&id)
            .execute(&state.db.pool)
            .await?;
        return Ok(None);
    };
    let mut session = Session {
        id,
        data,
        created_at,
        last_seen_at,
    };
    // A mandate revoked or past its last day ends the "acting for" mode at the next request.
    if let Some(acting) = &session.data.acting_for {
        let agent = session.principal();
        let in_force = match agent.person() {
            Some(p) => {
                crate::delegations::in_force(&state.db, &acting.mandate_id, p.cf.as_str(), now)
                    .await?
            }
            None => false,
        };
        if !in_force {
            session.data.acting_for = None;
            save(&state.db, &session).await?;
        }
    }
    if now - last_seen_at >= 60_000 {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&session.id)
            .execute(&state.db.pool)
            .await?;
        session.last_seen_at = now;
    }
    Ok(Some(session))
}

/// Deletes every session past its idle or absolute timeout; returns how many.
pub async fn purge_expired(
    db: &Db,
    now: i64,
    idle_ms: i64,
    absolute_ms: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM sessions WHERE last_seen_at < $1 OR created_at < $2")
        .bind(now - idle_ms)
        .bind(now - absolute_ms)
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected())
}

/// The session the middleware loaded for this request, if any.
pub fn current(req: &HttpRequest) -> Option<Session> {
    req.extensions().get::<Session>().cloned()
}

/// The job kind that deletes expired sessions, once an hour.
pub const PURGE_JOB: &str = "sessions.purge";
const PURGE_EVERY_MS: i64 = 3_600_000;

/// Schedules the next purge (one per hour, whoever asks).
pub async fn schedule_purge(db: &Db, now_ms: i64, delay_ms: i64) -> Result<(), sqlx::Error> {
    let run_at = now_ms + delay_ms;
    let job = crate::jobs::NewJob::new(PURGE_JOB, serde_json::json!({}), run_at)
        .idempotency_key(format!("{PURGE_JOB}:{}", run_at / PURGE_EVERY_MS));
    crate::jobs::enqueue(&db.pool, now_ms, &job).await?;
    Ok(())
}

#[derive(Debug)]
pub struct PurgeSessions {
    pub idle_ms: i64,
    pub absolute_ms: i64,
}

impl crate::jobs::JobHandler for PurgeSessions {
    fn run<'a>(
        &'a self,
        ctx: &'a crate::jobs::JobContext,
        _job: &'a crate::jobs::Job,
    ) -> crate::jobs::BoxFuture<'a, Result<(), crate::jobs::JobError>> {
        Box::pin(async move {
            let err = |e: sqlx::Error| crate::jobs::JobError(e.to_string());
            let now = ctx.clock.now_ms();
            let purged = purge_expired(&ctx.db, now, self.idle_ms, self.absolute_ms)
                .await
                .map_err(err)?;
            tracing::info!(purged, "expired sessions deleted");
            schedule_purge(&ctx.db, now, PURGE_EVERY_MS)
                .await
                .map_err(err)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_httponly_lax_and_secure_host_cookies_over_https() {
        let plain = build_cookie(false, "t".into()).to_string();
        assert_eq!(plain, "sportello_session=t; HttpOnly; SameSite=Lax; Path=/");
        let secure = build_cookie(true, "t".into()).to_string();
        assert!(
            secure.starts_with("__Host-sportello=t")
                && secure.contains("Secure")
                && secure.contains("Path=/"),
            "{secure}"
        );
        assert!(
            !secure.contains("Domain"),
            "__Host- cookies carry no Domain"
        );
    }

    #[test]
    fn tokens_are_long_and_stored_hashed() {
        let token = random_token(32);
        assert_eq!(token.len(), 43);
        assert_ne!(hash(&token), token);
        assert_eq!(hash(&token).len(), 64);
    }
}
