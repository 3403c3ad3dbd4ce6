//! The contract with the CSI: CloudEvents 1.0 in JSON (structured mode), versioned types
//! (`it.sportello.pratica.inviata.v1`), a JSON Schema for each event's data in `schemas/`
//! (embedded, served at `/csi/schemi/<name>.json`) and the AsyncAPI document that describes the
//! whole interface (`asyncapi.yaml`, served at `/csi/asyncapi.yaml`).

use std::collections::HashMap;
use std::sync::OnceLock;

use include_dir::{include_dir, Dir};
use serde_json::Value;

static SCHEMAS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/src/csi/schemas");
pub const ASYNCAPI: &str = include_str!("asyncapi.yaml");

const PREFIX: &str = "it.sportello.";
const VERSION: &str = ".v1";

/// `pratica.inviata` → `it.sportello.pratica.inviata.v1`.
pub fn cloud_type(event_type: &str) -> String {
    format!("{PREFIX}{event_type}{VERSION}")
}

/// `it.sportello.csi.stato.v1` → `csi.stato`.
pub fn short_type(cloud_type: &str) -> Option<&str> {
    cloud_type.strip_prefix(PREFIX)?.strip_suffix(VERSION)
}

/// The text of the schema `name` (`pratica.inviata`, `cloudevent`…).
pub fn schema_text(name: &str) -> Option<&'static str> {
    SCHEMAS
        .get_file(format!("{name}.json"))
        .and_then(|f| f.contents_utf8())
}

fn validators() -> &'static HashMap<String, Result<jsonschema::Validator, String>> {
    static VALIDATORS: OnceLock<HashMap<String, Result<jsonschema::Validator, String>>> =
        OnceLock::new();
    VALIDATORS.get_or_init(|| {
        SCHEMAS
            .files()
            .filter_map(|f| {
                let name = f.path().file_stem()?.to_str()?.to_string();
                let schema: Value = serde_json::from_str(f.contents_utf8()?).ok()?;
                let validator = jsonschema::validator_for(&schema).map_err(|e| e.to_string());
                Some((name, validator))
            })
            .collect()
    })
}

/// Checks `value` against the schema `name`; the error says where and what, for the dead letter.
pub fn validate(name: &str, value: &Value) -> Result<(), String> {
    match validators().get(name) {
        None => Err(format!("tipo di evento sconosciuto: {name}")),
        Some(Err(e)) => Err(format!("schema {name} non valido: {e}")),
        Some(Ok(v)) => match v.iter_errors(value).next() {
            None => Ok(()),
            Some(e) => Err(format!("{}: {e}", e.instance_path())),
        },
    }
}

/// An outbox row as the CloudEvent the CSI reads.
/// The CloudEvent of an outbox row: `created_at` in Unix milliseconds, `payload` as stored.
pub fn cloud_event(
    source: &str,
    event_id: &str,
    event_type: &str,
    subject: &str,
    created_at: i64,
    payload: &str,
) -> Value {
    let time = time::OffsetDateTime::from_unix_timestamp(created_at.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let data: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    serde_json::json!({
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": cloud_type(event_type),
        "subject": subject,
        "time": time,
        "datacontenttype": "application/json",
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_compiles_and_types_read_back() {
        assert!(validators().len() >= 20);
        for (name, v) in validators() {
            assert!(v.is_ok(), "{name}");
        }
        assert_eq!(
            cloud_type("pratica.inviata"),
            "it.sportello.pratica.inviata.v1"
        );
        assert_eq!(short_type("it.sportello.csi.stato.v1"), Some("csi.stato"));
        assert_eq!(short_type("org.other.csi.stato.v1"), None);
    }

    #[test]
    fn a_bad_event_says_what_is_wrong() {
        let e = validate(
            "csi.protocollo",
            &serde_json::json!({ "pratica": "x", "protocollo": "" }),
        );
        assert!(e.is_err_and(|m| m.contains("/protocollo")));
        assert!(validate(
            "csi.protocollo",
            &serde_json::json!({ "pratica": "x", "protocollo": "P1" })
        )
        .is_ok());
        assert!(validate("csi.sconosciuto", &serde_json::json!({})).is_err());
    }
}
