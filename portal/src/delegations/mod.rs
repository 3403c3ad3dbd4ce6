//! Who may act for whom. A *mandate* is either a delegation (made online by the person and accepted
//! by the delegate, or recorded by an operator from the paper form) or a legal representation (a
//! parent for a minor, a tutore or amministratore di sostegno for an adult, recorded by an operator
//! with the supporting document). Each has scopes and a last day; either side can end a delegation,
//! an operator ends a representation.
//!
//! Acting for someone is explicit: the delegate enters the mode from the area personale, every page
//! then says "Stai operando per conto di …", and [`subject`] resolves, for each request, whose data
//! the page is about — checking again that the mandate is in force and covers what the page does,
//! and writing the access to the represented person's audit log.

pub mod office;
pub mod pages;
pub mod store;

use actix_web::{HttpMessage, HttpRequest};
use serde::Serialize;
use time::Date;

use crate::auth::{person_at_level, Person, Principal};
use crate::db::Db;
use crate::domain::italian_time::{long_date, rome_date};
use crate::domain::CodiceFiscale;
use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::session;
use crate::web::RequestId;

/// What a delegate may do for the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// See the pratiche with their status and history, the appointments and the messages.
    Stato,
    /// Answer the office's requests (documents, messages).
    Integrazioni,
    /// Fill in and send applications.
    Domande,
    /// Book and cancel appointments.
    Appuntamenti,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::Stato,
        Scope::Integrazioni,
        Scope::Domande,
        Scope::Appuntamenti,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Stato => "stato",
            Scope::Integrazioni => "integrazioni",
            Scope::Domande => "domande",
            Scope::Appuntamenti => "appuntamenti",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            Scope::Stato => "vedere lo stato delle pratiche, gli appuntamenti e i messaggi",
            Scope::Integrazioni => "rispondere alle richieste dell'ufficio",
            Scope::Domande => "presentare e ritirare domande",
            Scope::Appuntamenti => "prenotare e disdire appuntamenti",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Delega,
    Genitore,
    Tutore,
    AmministratoreSostegno,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Delega,
        Kind::Genitore,
        Kind::Tutore,
        Kind::AmministratoreSostegno,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Delega => "delega",
            Kind::Genitore => "genitore",
            Kind::Tutore => "tutore",
            Kind::AmministratoreSostegno => "amministratore_sostegno",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// What the agent is, as pages, receipts and the audit log name them.
    pub fn agent_label(self) -> &'static str {
        match self {
            Kind::Delega => "delegato",
            Kind::Genitore => "genitore",
            Kind::Tutore => "tutore",
            Kind::AmministratoreSostegno => "amministratore di sostegno",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Delega => "Delega",
            Kind::Genitore => "Responsabilità genitoriale",
            Kind::Tutore => "Tutela",
            Kind::AmministratoreSostegno => "Amministrazione di sostegno",
        }
    }

    /// A legal representation acts in everything; a delegation only in its scopes.
    pub fn is_representation(self) -> bool {
        self != Kind::Delega
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Made by the person, waiting for the delegate to accept.
    Proposta,
    Attiva,
    Rifiutata,
    Revocata,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Proposta => "proposta",
            State::Attiva => "attiva",
            State::Rifiutata => "rifiutata",
            State::Revocata => "revocata",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        [
            State::Proposta,
            State::Attiva,
            State::Rifiutata,
            State::Revocata,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

#[derive(Clone)]
pub struct Mandate {
    pub id: String,
    pub kind: Kind,
    /// `online` (made by the person) or `ufficio` (recorded by an operator).
    pub origin: String,
    pub principal_cf: String,
    pub principal_given: String,
    pub principal_family: String,
    pub agent_cf: String,
    pub agent_given: String,
    pub agent_family: String,
    pub scopes: Vec<Scope>,
    pub valid_until: Date,
    pub state: State,
    pub created_at: i64,
    pub accepted_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub document: Option<String>,
    pub ente_code: Option<String>,
}

/// Names and codici fiscali are personal data: `Debug` shows the id and the state.
impl std::fmt::Debug for Mandate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Mandate {{ id: {}, kind: {:?}, state: {:?}, .. }}",
            self.id, self.kind, self.state
        )
    }
}

impl Mandate {
    pub fn principal_name(&self) -> String {
        format!("{} {}", self.principal_given, self.principal_family)
    }

    pub fn agent_name(&self) -> String {
        format!("{} {}", self.agent_given, self.agent_family)
    }

    pub fn expired(&self, today: Date) -> bool {
        today > self.valid_until
    }

    /// Active and not past its last day.
    pub fn in_force(&self, today: Date) -> bool {
        self.state == State::Attiva && !self.expired(today)
    }

    pub fn allows(&self, scope: Scope) -> bool {
        self.kind.is_representation() || self.scopes.contains(&scope)
    }

    /// "vedere lo stato …, rispondere …": for pages.
    pub fn scopes_text(&self) -> String {
        if self.kind.is_representation() {
            return "tutto ciò che riguarda la persona rappresentata".into();
        }
        self.scopes
            .iter()
            .map(|s| s.label())
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn valid_until_text(&self) -> String {
        long_date(self.valid_until)
    }
}

/// Whose data a page is about: the signed-in person's own, or — in the "acting for" mode — the
/// represented person's, with the mandate that allows it.
#[derive(Debug)]
pub struct Subject<'p> {
    /// Who is signed in and doing it.
    pub actor: &'p Person,
    /// The person the data belongs to (the actor, unless acting for someone).
    pub person: Person,
    pub mandate: Option<Mandate>,
}

impl Subject<'_> {
    pub fn cf(&self) -> &str {
        self.person.cf.as_str()
    }

    /// Refuses, with the reason, when acting under a mandate that does not cover `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), AppError> {
        match &self.mandate {
            Some(m) if !m.allows(scope) => Err(refusal(m, scope)),
            _ => Ok(()),
        }
    }

    /// The actor's codice fiscale when acting for someone else.
    pub fn delegate_cf(&self) -> Option<&str> {
        self.mandate.as_ref().map(|_| self.actor.cf.as_str())
    }
}

/// The subject of this request for a page that does `scopes` (any of them suffices), at SPID
/// `level`. Not acting for anyone: the signed-in person. Acting for someone: the mandate is read
/// again — revoked or past its last day, the mode ends and the person is back to their own data;
/// not covering the page, [`AppError::NotAllowed`] says so — and the access is written to the
/// represented person's audit log.
pub async fn subject<'p>(
    state: &AppState,
    req: &HttpRequest,
    principal: &'p Principal,
    level: u8,
    scopes: &[Scope],
) -> Result<Subject<'p>, AppError> {
    let actor = person_at_level(req, principal, level)?;
    let own = || Subject {
        actor,
        person: actor.clone(),
        mandate: None,
    };
    let Some(acting) = session::current(req).and_then(|s| s.data.acting_for) else {
        return Ok(own());
    };
    // The session's loading ended the mode if the mandate ended; read again all the same, so that
    // a revocation during the request is seen.
    let now = state.clock.now_ms();
    let mandate = store::get(&state.db, &acting.mandate_id)
        .await?
        .filter(|m| m.agent_cf == actor.cf.as_str() && m.in_force(rome_date(now)));
    let Some(mandate) = mandate else {
        session::set_acting_for(&state.db, req, None).await?;
        return Ok(own());
    };
    if !scopes.iter().any(|s| mandate.allows(*s)) {
        return Err(refusal(
            &mandate,
            scopes.first().copied().unwrap_or(Scope::Stato),
        ));
    }
    let cf = CodiceFiscale::parse(&mandate.principal_cf)
        .map_err(|_| AppError::Internal("mandate with an invalid codice fiscale".into()))?;
    let reads_only = scopes.iter().all(|s| *s == Scope::Stato);
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    sqlx::query(
        "INSERT INTO audit_log (at, actor_cf, actor_role, subject_cf, action, object, purpose, request_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(now)
    .bind(actor.cf.as_str())
    .bind(mandate.kind.agent_label())
    .bind(cf.as_str())
    .bind(if reads_only { "read" } else { "change" })
    .bind(req.path())
    .bind(format!("{} del {}", mandate.kind.label(), crate::domain::italian_time::date_time(mandate.created_at)))
    .bind(request_id)
    .execute(&state.db.pool)
    .await?;
    Ok(Subject {
        actor,
        person: Person {
            cf,
            given_name: mandate.principal_given.clone(),
            family_name: mandate.principal_family.clone(),
            spid_level: actor.spid_level,
        },
        mandate: Some(mandate),
    })
}

fn refusal(mandate: &Mandate, scope: Scope) -> AppError {
    AppError::NotAllowed(format!(
        "La delega di {} non ti consente di {}. Puoi chiedere a {} di modificarla, oppure tornare ai tuoi dati.",
        mandate.principal_name(),
        scope.label(),
        mandate.principal_given
    ))
}

/// Whether mandate `id` still lets `agent_cf` act at `now_ms`.
pub async fn in_force(db: &Db, id: &str, agent_cf: &str, now_ms: i64) -> Result<bool, AppError> {
    Ok(store::get(db, id)
        .await?
        .is_some_and(|m| m.agent_cf == agent_cf && m.in_force(rome_date(now_ms))))
}

/// For pages only the person themself uses (settings, delegations, the export): refused while
/// acting for someone else.
pub fn own_only(req: &HttpRequest) -> Result<(), AppError> {
    match session::current(req).and_then(|s| s.data.acting_for) {
        Some(acting) => Err(AppError::NotAllowed(format!(
            "Questa pagina riguarda solo i tuoi dati: stai operando per conto di {}. Torna ai tuoi dati per aprirla.",
            acting.name
        ))),
        None => Ok(()),
    }
}
