//! Who is asking: resolved for every request from the session.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use serde::{Deserialize, Serialize};

use crate::domain::CodiceFiscale;

/// A person as the identity provider asserted them at login.
#[derive(Clone, Serialize, Deserialize)]
pub struct Person {
    pub cf: CodiceFiscale,
    pub given_name: String,
    pub family_name: String,
    /// The SPID/CIE level of the login (1–3).
    pub spid_level: u8,
}

impl Person {
    pub fn display_name(&self) -> String {
        format!("{} {}", self.given_name, self.family_name)
    }
}

impl std::fmt::Debug for Person {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Person {{ level: {}, .. }}", self.spid_level)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Operatore,
    Coordinatore,
    Amministratore,
    Revisore,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "operatore" => Some(Role::Operatore),
            "coordinatore" => Some(Role::Coordinatore),
            "amministratore" => Some(Role::Amministratore),
            "revisore" => Some(Role::Revisore),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operatore => "operatore",
            Role::Coordinatore => "coordinatore",
            Role::Amministratore => "amministratore",
            Role::Revisore => "revisore",
        }
    }
}

/// A staff role held in one ente.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub ente: String,
    pub role: Role,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Principal {
    #[default]
    Anonymous,
    Citizen {
        person: Person,
    },
    Staff {
        person: Person,
        memberships: Vec<Membership>,
    },
}

impl Principal {
    pub fn person(&self) -> Option<&Person> {
        match self {
            Principal::Anonymous => None,
            Principal::Citizen { person } | Principal::Staff { person, .. } => Some(person),
        }
    }

    /// The enti in which this principal holds `role`.
    pub fn enti_with(&self, role: Role) -> Vec<&str> {
        match self {
            Principal::Staff { memberships, .. } => memberships
                .iter()
                .filter(|m| m.role == role)
                .map(|m| m.ente.as_str())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A label for the audit log: the role, never the name.
    pub fn role_label(&self) -> String {
        match self {
            Principal::Anonymous => "anonimo".into(),
            Principal::Citizen { .. } => "cittadino".into(),
            Principal::Staff { memberships, .. } => memberships
                .iter()
                .map(|m| format!("{}@{}", m.role.as_str(), m.ente))
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

impl FromRequest for Principal {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Principal, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let principal = crate::web::session::current(req)
            .map(|s| s.principal())
            .unwrap_or_default();
        std::future::ready(Ok(principal))
    }
}
