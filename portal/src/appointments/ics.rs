//! The `.ics` file of a booked appointment, to add it to a calendar (RFC 5545, through `icalendar`).

use chrono::{DateTime, Utc};
use icalendar::{Calendar, Component, Event, EventLike, EventStatus};

use super::booking::AppointmentView;
use super::store::Appointment;

pub fn event(a: &Appointment, v: &AppointmentView, host: &str) -> String {
    let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let office = v.office.as_ref();
    let mut description = String::from("Appuntamento con il segretariato sociale");
    if let Some(topic) = &v.topic {
        description.push_str(&format!("\nMotivo: {topic}"));
    }
    if let Some(accessibility) = office
        .map(|o| o.accessibility.as_str())
        .filter(|s| !s.is_empty())
    {
        description.push_str(&format!("\nAccessibilità: {accessibility}"));
    }
    description.push_str(&format!(
        "\nSi può annullare o spostare dall'area personale fino al {}.",
        v.change_until
    ));
    let event = Event::new()
        .uid(&format!("{}@{host}", a.id))
        .summary(&format!(
            "Segretariato sociale — {}",
            office.map(|o| o.name.as_str()).unwrap_or("appuntamento")
        ))
        .description(&description)
        .location(&office.map(|o| o.address.clone()).unwrap_or_default())
        .starts(at(a.starts_at))
        .ends(at(a.ends_at))
        .status(EventStatus::Confirmed)
        .done();
    let mut calendar = Calendar::new();
    calendar.push(event);
    calendar.done().to_string()
}
