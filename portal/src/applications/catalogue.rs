//! The services a citizen can apply for, defined as data in `forms/services/*.toml`. A definition
//! with an error stops start-up with a message naming the file and the field.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::Date;

use super::form::{parse_date, Form};

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("service definitions: cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("service definition {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Stable code, used in addresses: lowercase letters, digits and dashes.
    pub code: String,
    pub title: String,
    /// One sentence for the list of services.
    pub summary: String,
    /// The area of need (minori e famiglia, anziani, disabilità, …).
    pub area: String,
    /// The enti that offer it.
    pub enti: Vec<String>,
    /// The SPID/CIE level needed to apply (2 or 3).
    pub spid_level: u8,
    /// The maximum term for the outcome, in days from submission (L. 241/1990: 30 unless set).
    pub term_days: u32,
    pub availability: Availability,
    pub page: ServicePage,
    pub form: Form,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AvailabilityState {
    /// Open all year.
    Attivo,
    /// Not taking applications.
    Sospeso,
    /// Open between `opens` and `closes` (both included).
    Finestra,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Availability {
    pub state: AvailabilityState,
    /// "YYYY-MM-DD".
    pub opens: Option<String>,
    pub closes: Option<String>,
}

/// Whether the service takes applications on a given day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    Yes { closes: Option<Date> },
    Suspended,
    NotYet { opens: Date },
    Closed { closed: Date },
}

impl Availability {
    pub fn opens(&self) -> Option<Date> {
        self.opens.as_deref().and_then(parse_date)
    }

    pub fn closes(&self) -> Option<Date> {
        self.closes.as_deref().and_then(parse_date)
    }

    pub fn on(&self, today: Date) -> Open {
        match self.state {
            AvailabilityState::Attivo => Open::Yes { closes: None },
            AvailabilityState::Sospeso => Open::Suspended,
            AvailabilityState::Finestra => match (self.opens(), self.closes()) {
                (Some(opens), _) if today < opens => Open::NotYet { opens },
                (_, Some(closes)) if today > closes => Open::Closed { closed: closes },
                (_, closes) => Open::Yes { closes },
            },
        }
    }
}

/// The sections of a service page in the order of the Italian design model ("modello comuni").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePage {
    pub a_chi_e_rivolto: String,
    pub come_fare: String,
    pub cosa_serve: String,
    pub cosa_si_ottiene: String,
    pub tempi_e_scadenze: String,
    pub costi: String,
    pub accedi_al_servizio: String,
    pub condizioni: String,
    pub contatti: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PageSection {
    pub slug: &'static str,
    pub title: &'static str,
    /// The text split into paragraphs at blank lines.
    pub paragraphs: Vec<String>,
}

impl ServicePage {
    pub fn sections(&self) -> Vec<PageSection> {
        [
            ("a-chi-e-rivolto", "A chi è rivolto", &self.a_chi_e_rivolto),
            ("come-fare", "Come fare", &self.come_fare),
            ("cosa-serve", "Cosa serve", &self.cosa_serve),
            ("cosa-si-ottiene", "Cosa si ottiene", &self.cosa_si_ottiene),
            (
                "tempi-e-scadenze",
                "Tempi e scadenze",
                &self.tempi_e_scadenze,
            ),
            ("costi", "Costi", &self.costi),
            (
                "accedi-al-servizio",
                "Accedi al servizio",
                &self.accedi_al_servizio,
            ),
            ("condizioni", "Condizioni di servizio", &self.condizioni),
            ("contatti", "Contatti", &self.contatti),
        ]
        .into_iter()
        .map(|(slug, title, text)| PageSection {
            slug,
            title,
            paragraphs: text
                .split("\n\n")
                .map(|p| p.trim().replace('\n', " "))
                .filter(|p| !p.is_empty())
                .collect(),
        })
        .collect()
    }

    fn check(&self) -> Result<(), String> {
        for section in self.sections() {
            if section.paragraphs.is_empty() {
                return Err(format!(
                    "page.{}: the section must not be empty",
                    section.slug.replace('-', "_")
                ));
            }
        }
        Ok(())
    }
}

impl Service {
    /// Checks what serde cannot: the message names the field.
    fn check(&self) -> Result<(), String> {
        if self.code.is_empty()
            || !self
                .code
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err("code: use lowercase letters, digits and dashes".into());
        }
        if self.title.trim().is_empty() {
            return Err("title: must not be empty".into());
        }
        if self.enti.is_empty() {
            return Err("enti: at least one ente must offer the service".into());
        }
        if !(2..=3).contains(&self.spid_level) {
            return Err("spid_level: 2 or 3 (personal data needs at least level 2)".into());
        }
        if self.term_days == 0 || self.term_days > 365 {
            return Err("term_days: between 1 and 365".into());
        }
        let a = &self.availability;
        for (name, value) in [("opens", &a.opens), ("closes", &a.closes)] {
            if let Some(v) = value {
                if parse_date(v).is_none() {
                    return Err(format!("availability.{name}: a date as YYYY-MM-DD"));
                }
            }
        }
        if a.state == AvailabilityState::Finestra && a.closes.is_none() {
            return Err("availability.closes: a window needs its closing date".into());
        }
        if let (Some(o), Some(c)) = (a.opens(), a.closes()) {
            if o > c {
                return Err("availability.opens: after closes".into());
            }
        }
        self.page.check()?;
        self.form.check()
    }
}

impl Catalogue {
    pub fn get(&self, code: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.code == code)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    pub services: Vec<Service>,
}

impl Catalogue {
    pub fn load(forms_dir: &Path) -> Result<Catalogue, CatalogueError> {
        let dir = forms_dir.join("services");
        let read_err = |reason: String| CatalogueError::Read {
            path: dir.clone(),
            reason,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| read_err(e.to_string()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut services: Vec<Service> = Vec::new();
        for path in paths {
            let invalid = |reason: String| CatalogueError::Invalid {
                path: path.clone(),
                reason,
            };
            let text = std::fs::read_to_string(&path).map_err(|e| invalid(e.to_string()))?;
            let service: Service = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
            service.check().map_err(invalid)?;
            if services.iter().any(|s| s.code == service.code) {
                return Err(invalid(format!(
                    "code: '{}' is used by another service",
                    service.code
                )));
            }
            services.push(service);
        }
        Ok(Catalogue { services })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../forms/services")
            .join(name);
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// The shipped SAD definition with one change; the error start-up would report.
    fn error_with(change: impl Fn(String) -> String) -> String {
        let Ok(dir) = tempfile::tempdir() else {
            return "no temporary folder".into();
        };
        let _ = std::fs::create_dir(dir.path().join("services"));
        let _ = std::fs::write(
            dir.path().join("services/sad.toml"),
            change(shipped("sad.toml")),
        );
        Catalogue::load(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn an_error_names_the_file_and_the_field() {
        let cases: [(&dyn Fn(String) -> String, &str); 6] = [
            (
                &|s| s.replace("enti = [\"valleverde\", \"montebello\"]", "enti = []"),
                "enti",
            ),
            (
                &|s| s.replace("spid_level = 2", "spid_level = 1"),
                "spid_level",
            ),
            (
                &|s| s.replace("kind = \"textarea\"", "kind = \"paragrafo\""),
                "unknown variant `paragrafo`",
            ),
            (
                &|s| s.replace("any_of = [\"familiare\"]", "any_of = []"),
                "field 'assistito_nome': show_if",
            ),
            (
                &|s| s.replace("field = \"per_chi\"", "field = \"bisogno\""),
                "'bisogno' is not an earlier field",
            ),
            (
                &|s| s.replace("term_days = 30", "term_days = 0"),
                "term_days",
            ),
        ];
        for (change, expected) in cases {
            let err = error_with(change);
            assert!(
                err.contains("sad.toml") && err.contains(expected),
                "{expected}: {err}"
            );
        }
        assert_eq!(error_with(|s| s), "", "the unchanged definition loads");
    }

    #[test]
    fn the_shipped_services_load() -> Result<(), CatalogueError> {
        let catalogue = Catalogue::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../forms"))?;
        assert!(catalogue.services.len() >= 3);
        Ok(())
    }
}
