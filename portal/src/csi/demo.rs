//! A reference CSI client (`sportello csi-demo`), for demos and tests: it gets a token, reads the
//! feed from where it acknowledged, prints each event, answers every new pratica by taking it in
//! charge (an event with a stable id, so a second run changes nothing), and acknowledges.

use serde_json::{json, Value};

/// One pass over the feed; returns the lines it printed.
pub async fn run_once(base: &str, client_id: &str, secret: &str) -> Result<Vec<String>, String> {
    let http = reqwest::Client::new();
    let base = base.trim_end_matches('/');
    let token: Value = http
        .post(format!("{base}/csi/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .map_err(|e| format!("token: {e}"))?
        .error_for_status()
        .map_err(|e| format!("token: {e}"))?
        .json()
        .await
        .map_err(|e| format!("token: {e}"))?;
    let token = token["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut lines = Vec::new();
    loop {
        let page: Value = http
            .get(format!("{base}/csi/eventi?limite=100"))
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| format!("feed: {e}"))?
            .error_for_status()
            .map_err(|e| format!("feed: {e}"))?
            .json()
            .await
            .map_err(|e| format!("feed: {e}"))?;
        let events = page["eventi"].as_array().cloned().unwrap_or_default();
        if events.is_empty() {
            return Ok(lines);
        }
        for e in &events {
            let kind = e["type"].as_str().unwrap_or_default();
            let subject = e["subject"].as_str().unwrap_or_default();
            lines.push(format!(
                "{} {kind} {subject} ente={}",
                e["time"].as_str().unwrap_or_default(),
                e["data"]["ente"].as_str().unwrap_or_default()
            ));
            if kind == "it.sportello.pratica.inviata.v1" {
                let answer = json!({
                    "specversion": "1.0",
                    "id": format!("csi-demo-presa-in-carico-{subject}"),
                    "source": format!("urn:sportello:csi-demo:{client_id}"),
                    "type": "it.sportello.csi.stato.v1",
                    "datacontenttype": "application/json",
                    "data": { "pratica": subject, "stato": "presa_in_carico" },
                });
                let outcome: Value = http
                    .post(format!("{base}/csi/eventi"))
                    .bearer_auth(&token)
                    .json(&answer)
                    .send()
                    .await
                    .map_err(|e| format!("answer: {e}"))?
                    .json()
                    .await
                    .unwrap_or(Value::Null);
                lines.push(format!(
                    "  → presa in carico: {}",
                    outcome["esito"].as_str().unwrap_or("?")
                ));
            }
        }
        http.post(format!("{base}/csi/eventi/conferma"))
            .bearer_auth(&token)
            .json(&json!({ "cursore": page["cursore"] }))
            .send()
            .await
            .map_err(|e| format!("ack: {e}"))?
            .error_for_status()
            .map_err(|e| format!("ack: {e}"))?;
    }
}
