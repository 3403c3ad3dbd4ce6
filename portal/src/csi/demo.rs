//! A reference CSI client (`sportello csi-demo`), for demos and tests: it gets a token, reads the
//! feed from where it acknowledged, prints each event, answers every new pratica by taking it in
//! charge (an event with a stable id, so a second run changes nothing), and acknowledges. With
//! `--broker` it does the same through RabbitMQ: it drains the CSI's queue and publishes its
//! answers to the portal's queue.

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{json, Value};

use super::broker::{declare, Names};

/// The line printed for an event.
fn line(e: &Value) -> String {
    format!(
        "{} {} {} ente={}",
        e["time"].as_str().unwrap_or_default(),
        e["type"].as_str().unwrap_or_default(),
        e["subject"].as_str().unwrap_or_default(),
        e["data"]["ente"].as_str().unwrap_or_default()
    )
}

/// The answer to a new pratica: taken in charge, with an id stable for that pratica.
fn answer(e: &Value, source: &str) -> Option<Value> {
    if e["type"] != "it.sportello.pratica.inviata.v1" {
        return None;
    }
    let subject = e["subject"].as_str()?;
    Some(json!({
        "specversion": "1.0",
        "id": format!("csi-demo-presa-in-carico-{subject}"),
        "source": format!("urn:sportello:csi-demo:{source}"),
        "type": "it.sportello.csi.stato.v1",
        "datacontenttype": "application/json",
        "data": { "pratica": subject, "stato": "presa_in_carico" },
    }))
}

/// One pass over the broker's queue for the CSI (`<prefix>.csi`); returns the lines it printed.
pub async fn broker_once(url: &str, prefix: &str) -> Result<Vec<String>, String> {
    let names = Names::new(prefix);
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .map_err(|e| format!("broker: {e}"))?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| format!("broker: {e}"))?;
    declare(&channel, &names, &[]).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| format!("broker: {e}"))?;
    let mut lines = Vec::new();
    while let Some(message) = channel
        .basic_get(names.csi_queue.as_str().into(), BasicGetOptions::default())
        .await
        .map_err(|e| format!("broker: {e}"))?
    {
        let e: Value = serde_json::from_slice(&message.delivery.data).unwrap_or(Value::Null);
        lines.push(line(&e));
        if let Some(reply) = answer(&e, prefix) {
            let confirm = channel
                .basic_publish(
                    "".into(),
                    names.inbound_queue.as_str().into(),
                    BasicPublishOptions::default(),
                    reply.to_string().as_bytes(),
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_content_type("application/cloudevents+json".into()),
                )
                .await
                .map_err(|e| format!("answer: {e}"))?
                .await
                .map_err(|e| format!("answer: {e}"))?;
            lines.push(format!(
                "  → presa in carico: {}",
                if confirm.is_ack() {
                    "pubblicata"
                } else {
                    "rifiutata dal broker"
                }
            ));
        }
        message
            .delivery
            .ack(BasicAckOptions::default())
            .await
            .map_err(|e| format!("ack: {e}"))?;
    }
    let _ = connection.close(200, "arrivederci".into()).await;
    Ok(lines)
}

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
            lines.push(line(e));
            if let Some(answer) = answer(e, client_id) {
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
