//! The services a citizen can apply for, defined as data in `forms/services/*.toml`. A definition
//! with an error stops start-up with a message naming the file and the field.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
            if service.code.is_empty()
                || !service
                    .code
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return Err(invalid(
                    "code: use lowercase letters, digits and dashes".into(),
                ));
            }
            if service.title.trim().is_empty() {
                return Err(invalid("title: must not be empty".into()));
            }
            if service.enti.is_empty() {
                return Err(invalid(
                    "enti: at least one ente must offer the service".into(),
                ));
            }
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

    #[test]
    fn an_error_names_the_file_and_the_field() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("services"))?;
        std::fs::write(
            dir.path().join("services/a.toml"),
            "code = \"a\"\ntitle = \"A\"\nsummary = \"s\"\narea = \"anziani\"\nenti = []\n",
        )?;
        let err = Catalogue::load(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("a.toml") && err.contains("enti"), "{err}");
        Ok(())
    }

    #[test]
    fn the_shipped_services_load() -> Result<(), CatalogueError> {
        let catalogue = Catalogue::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../forms"))?;
        assert!(catalogue.services.len() >= 3);
        Ok(())
    }
}
