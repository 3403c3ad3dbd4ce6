//! Appointments in the database. A slot's places are a row (`slots`) with `taken` and `capacity`
//! and a CHECK between them: a place is taken by a conditional `UPDATE … SET taken = taken + 1
//! WHERE taken < capacity`, so two citizens can never get the last place, on SQLite (one writer at
//! a time) as on PostgreSQL (the second update waits for the first and re-reads the row).
//!
//! The life of an appointment: `trattenuto` (the place held while the citizen finishes, or offered
//! from the waiting list) → `prenotato` → `presentato` / `assente`; or `scaduto` (the hold lapsed),
//! `annullato`, `spostato` (moved: a new appointment replaces it). A place freed by a cancellation,
//! a move or an unanswered offer goes to the first citizen of the waiting list for that office and
//! topic; a lapsed hold of a few minutes simply returns to the pool.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use sqlx::{Any, Row, Transaction};
use time::Date;

use super::calendar::{Closed, Rules, Week};
use crate::db::Db;

#[derive(Debug, Clone, Serialize)]
pub struct Office {
    pub id: String,
    pub ente_code: String,
    pub name: String,
    pub address: String,
    pub comune: String,
    pub patron_day: Option<String>,
    pub opening_hours: String,
    pub accessibility: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Topic {
    pub id: String,
    pub ente_code: String,
    pub title: String,
    pub service_code: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Calendar {
    pub id: String,
    pub office_id: String,
    pub name: String,
    pub week: Week,
    pub slot_minutes: i64,
    pub places: i64,
    pub min_notice_minutes: i64,
    pub max_days: i64,
    pub cancel_minutes: i64,
    pub topics: Vec<String>,
    pub operators: Vec<String>,
}

impl Calendar {
    /// The calendar's rules; hours that no longer parse (they are checked when saved) open nothing.
    pub fn rules(&self) -> Rules {
        Rules {
            hours: self.week.parse().unwrap_or_default(),
            slot_minutes: u16::try_from(self.slot_minutes).unwrap_or(30),
            min_notice_minutes: self.min_notice_minutes,
            max_days: self.max_days,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Appointment {
    pub id: String,
    pub calendar_id: String,
    pub starts_at: i64,
    pub ends_at: i64,
    pub citizen_cf: String,
    pub status: String,
    pub hold_until: Option<i64>,
    pub waiting_id: Option<i64>,
    pub topic_id: Option<String>,
    pub reason: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub booked_at: Option<i64>,
}

const APPOINTMENT: &str = "id, calendar_id, starts_at, ends_at, citizen_cf, status, hold_until, \
    waiting_id, topic_id, reason, email, phone, booked_at";

fn appointment(row: &sqlx::any::AnyRow) -> Result<Appointment, sqlx::Error> {
    Ok(Appointment {
        id: row.try_get("id")?,
        calendar_id: row.try_get("calendar_id")?,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        citizen_cf: row.try_get("citizen_cf")?,
        status: row.try_get("status")?,
        hold_until: row.try_get("hold_until")?,
        waiting_id: row.try_get("waiting_id")?,
        topic_id: row.try_get("topic_id")?,
        reason: row.try_get("reason")?,
        email: row.try_get("email")?,
        phone: row.try_get("phone")?,
        booked_at: row.try_get("booked_at")?,
    })
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

// ---- Offices, topics, calendars ----

const OFFICE: &str =
    "id, ente_code, name, address, comune, patron_day, opening_hours, accessibility";

fn office(row: &sqlx::any::AnyRow) -> Result<Office, sqlx::Error> {
    Ok(Office {
        id: row.try_get("id")?,
        ente_code: row.try_get("ente_code")?,
        name: row.try_get("name")?,
        address: row.try_get("address")?,
        comune: row.try_get("comune")?,
        patron_day: row.try_get("patron_day")?,
        opening_hours: row.try_get("opening_hours")?,
        accessibility: row.try_get("accessibility")?,
    })
}

pub async fn offices(db: &Db) -> Result<Vec<Office>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {OFFICE} FROM offices ORDER BY ente_code, name"
    ))
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(office).collect()
}

pub async fn office_by_id(db: &Db, id: &str) -> Result<Option<Office>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {OFFICE} FROM offices WHERE id = $1"))
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(office).transpose()
}

pub async fn save_office(db: &Db, now: i64, o: &Office) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO offices (id, ente_code, name, address, comune, patron_day, opening_hours, accessibility, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
         ON CONFLICT (id) DO UPDATE SET name = $3, address = $4, comune = $5, patron_day = $6, \
         opening_hours = $7, accessibility = $8, updated_at = $9",
    )
    .bind(&o.id)
    .bind(&o.ente_code)
    .bind(&o.name)
    .bind(&o.address)
    .bind(&o.comune)
    .bind(&o.patron_day)
    .bind(&o.opening_hours)
    .bind(&o.accessibility)
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct Closure {
    pub id: i64,
    pub from: String,
    pub to: String,
    pub reason: String,
}

pub async fn closures(db: &Db, office_id: &str) -> Result<Vec<Closure>, sqlx::Error> {
    let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT id, from_date, to_date, reason FROM office_closures WHERE office_id = $1 ORDER BY from_date",
    )
    .bind(office_id)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, from, to, reason)| Closure {
            id,
            from,
            to,
            reason,
        })
        .collect())
}

pub async fn add_closure(
    db: &Db,
    office_id: &str,
    from: Date,
    to: Date,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO office_closures (office_id, from_date, to_date, reason) VALUES ($1, $2, $3, $4)",
    )
    .bind(office_id)
    .bind(from.to_string())
    .bind(to.to_string())
    .bind(reason)
    .execute(&db.pool)
    .await?;
    Ok(())
}

pub async fn remove_closure(db: &Db, office_id: &str, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM office_closures WHERE office_id = $1 AND id = $2")
        .bind(office_id)
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// What closes the office on some days: its comune's patron day and its closures.
pub async fn closed_days(db: &Db, office: &Office) -> Result<Closed, sqlx::Error> {
    let closures = closures(db, &office.id)
        .await?
        .into_iter()
        .filter_map(|c| {
            let from = Date::parse(
                &c.from,
                &time::format_description::well_known::Iso8601::DATE,
            );
            let to = Date::parse(&c.to, &time::format_description::well_known::Iso8601::DATE);
            Some((from.ok()?, to.ok()?))
        })
        .collect();
    Ok(Closed {
        patron_day: office.patron_day.clone(),
        closures,
    })
}

pub async fn topics(db: &Db) -> Result<Vec<Topic>, sqlx::Error> {
    let rows: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT id, ente_code, title, service_code FROM topics ORDER BY ente_code, title",
    )
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, ente_code, title, service_code)| Topic {
            id,
            ente_code,
            title,
            service_code,
        })
        .collect())
}

pub async fn save_topic(db: &Db, t: &Topic) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO topics (id, ente_code, title, service_code) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET title = $3, service_code = $4",
    )
    .bind(&t.id)
    .bind(&t.ente_code)
    .bind(&t.title)
    .bind(&t.service_code)
    .execute(&db.pool)
    .await?;
    Ok(())
}

const CALENDAR: &str = "id, office_id, name, hours, slot_minutes, places, min_notice_minutes, \
    max_days, cancel_minutes";

async fn calendars_where(
    db: &Db,
    condition: &str,
    value: &str,
) -> Result<Vec<Calendar>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {CALENDAR} FROM calendars WHERE {condition} = $1 ORDER BY name, id"
    ))
    .bind(value)
    .fetch_all(&db.pool)
    .await?;
    // The topics and operators of all those calendars, in two queries.
    let mut topics: HashMap<String, Vec<String>> = HashMap::new();
    let mut operators: HashMap<String, Vec<String>> = HashMap::new();
    for (table, column, into) in [
        ("calendar_topics", "topic_id", &mut topics),
        ("calendar_operators", "cf", &mut operators),
    ] {
        let pairs: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT t.calendar_id, t.{column} FROM {table} t JOIN calendars c ON c.id = t.calendar_id \
             WHERE c.{condition} = $1 ORDER BY t.{column}"
        ))
        .bind(value)
        .fetch_all(&db.pool)
        .await?;
        for (calendar, item) in pairs {
            into.entry(calendar).or_default().push(item);
        }
    }
    let mut calendars = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: String = row.try_get("id")?;
        let hours: String = row.try_get("hours")?;
        calendars.push(Calendar {
            office_id: row.try_get("office_id")?,
            name: row.try_get("name")?,
            week: serde_json::from_str(&hours).unwrap_or_default(),
            slot_minutes: row.try_get("slot_minutes")?,
            places: row.try_get("places")?,
            min_notice_minutes: row.try_get("min_notice_minutes")?,
            max_days: row.try_get("max_days")?,
            cancel_minutes: row.try_get("cancel_minutes")?,
            topics: topics.remove(&id).unwrap_or_default(),
            operators: operators.remove(&id).unwrap_or_default(),
            id,
        });
    }
    Ok(calendars)
}

pub async fn calendars_of(db: &Db, office_id: &str) -> Result<Vec<Calendar>, sqlx::Error> {
    calendars_where(db, "office_id", office_id).await
}

pub async fn calendar_by_id(db: &Db, id: &str) -> Result<Option<Calendar>, sqlx::Error> {
    Ok(calendars_where(db, "id", id).await?.into_iter().next())
}

pub async fn save_calendar(db: &Db, now: i64, c: &Calendar) -> Result<(), sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    sqlx::query(
        "INSERT INTO calendars (id, office_id, name, hours, slot_minutes, places, min_notice_minutes, max_days, cancel_minutes, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
         ON CONFLICT (id) DO UPDATE SET name = $3, hours = $4, slot_minutes = $5, places = $6, \
         min_notice_minutes = $7, max_days = $8, cancel_minutes = $9, updated_at = $10",
    )
    .bind(&c.id)
    .bind(&c.office_id)
    .bind(&c.name)
    .bind(serde_json::to_string(&c.week).unwrap_or_default())
    .bind(c.slot_minutes)
    .bind(c.places)
    .bind(c.min_notice_minutes)
    .bind(c.max_days)
    .bind(c.cancel_minutes)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM calendar_topics WHERE calendar_id = $1")
        .bind(&c.id)
        .execute(&mut *tx)
        .await?;
    for topic in &c.topics {
        sqlx::query("INSERT INTO calendar_topics (calendar_id, topic_id) VALUES ($1, $2)")
            .bind(&c.id)
            .bind(topic)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM calendar_operators WHERE calendar_id = $1")
        .bind(&c.id)
        .execute(&mut *tx)
        .await?;
    for cf in &c.operators {
        sqlx::query("INSERT INTO calendar_operators (calendar_id, cf) VALUES ($1, $2)")
            .bind(&c.id)
            .bind(cf)
            .execute(&mut *tx)
            .await?;
    }
    // Future slots not yet full follow a new number of places; the CHECK keeps those already
    // taken beyond it as they are.
    sqlx::query(
        "UPDATE slots SET capacity = $2 WHERE calendar_id = $1 AND starts_at > $3 AND taken <= $2",
    )
    .bind(&c.id)
    .bind(c.places)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    places_changed(db);
    Ok(())
}

// ---- Availability ----

/// A time a citizen can choose: the calendar with the most free places at that start.
#[derive(Debug, Clone, Serialize)]
pub struct FreeSlot {
    pub calendar_id: String,
    pub starts_at: i64,
    pub free: i64,
}

/// What a change of places (or of a calendar) tells the availability kept in memory.
fn places_changed(db: &Db) {
    db.generations
        .places
        .fetch_add(1, std::sync::atomic::Ordering::Release);
}

/// The free times of each day, as [`availability`] gives them.
pub type Days = Arc<Vec<(Date, Vec<FreeSlot>)>>;

/// Availability shown recently, per set of calendars and minute: when a thousand citizens ask for
/// the same time, those who lose it see the page again without a dozen queries each. A change of
/// places made through this process's store drops it at once; one made by another process is seen
/// within [`AvailabilityCache::FRESH`]. Only what is shown is kept: whether a place is taken is
/// always decided by the database's transaction, so a page a moment old can never overbook.
#[derive(Debug, Default)]
pub struct AvailabilityCache {
    kept: std::sync::Mutex<HashMap<String, (std::time::Instant, u64, Days)>>,
}

impl AvailabilityCache {
    pub const FRESH: std::time::Duration = std::time::Duration::from_secs(1);

    /// [`availability`], from memory when it is fresh.
    pub async fn get(
        &self,
        db: &Db,
        now: i64,
        calendars: &[Calendar],
        closed: &Closed,
    ) -> Result<Days, sqlx::Error> {
        let generation = db
            .generations
            .places
            .load(std::sync::atomic::Ordering::Acquire);
        let key = format!(
            "{}|{:?}|{}",
            calendars
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join(","),
            closed,
            now.div_euclid(60_000)
        );
        if let Ok(kept) = self.kept.lock() {
            if let Some((at, g, days)) = kept.get(&key) {
                if *g == generation && at.elapsed() < Self::FRESH {
                    return Ok(days.clone());
                }
            }
        }
        let days = Arc::new(availability(db, now, calendars, closed).await?);
        if let Ok(mut kept) = self.kept.lock() {
            kept.retain(|_, (at, _, _)| at.elapsed() < Self::FRESH);
            kept.insert(key, (std::time::Instant::now(), generation, days.clone()));
        }
        Ok(days)
    }
}

/// The places free at each start of `calendar` between `from` and `to` (inclusive), counting a
/// lapsed hold as free.
async fn free_places(
    db: &Db,
    now: i64,
    calendar: &Calendar,
    from: i64,
    to: i64,
) -> Result<HashMap<i64, i64>, sqlx::Error> {
    let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT starts_at, capacity, taken FROM slots WHERE calendar_id = $1 AND starts_at BETWEEN $2 AND $3",
    )
    .bind(&calendar.id)
    .bind(from)
    .bind(to)
    .fetch_all(&db.pool)
    .await?;
    let lapsed: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT starts_at, COUNT(*) FROM appointments WHERE calendar_id = $1 AND starts_at BETWEEN $2 AND $3 \
         AND status = 'trattenuto' AND waiting_id IS NULL AND hold_until < $4 GROUP BY starts_at",
    )
    .bind(&calendar.id)
    .bind(from)
    .bind(to)
    .bind(now)
    .fetch_all(&db.pool)
    .await?;
    let lapsed: HashMap<i64, i64> = lapsed.into_iter().collect();
    Ok(rows
        .into_iter()
        .map(|(start, capacity, taken)| {
            (
                start,
                capacity - taken + lapsed.get(&start).copied().unwrap_or(0),
            )
        })
        .collect())
}

/// The days of the window of an office's `calendars` with at least one free place, and their times.
pub async fn availability(
    db: &Db,
    now: i64,
    calendars: &[Calendar],
    closed: &Closed,
) -> Result<Vec<(Date, Vec<FreeSlot>)>, sqlx::Error> {
    let mut by_day: std::collections::BTreeMap<Date, HashMap<i64, FreeSlot>> =
        std::collections::BTreeMap::new();
    for calendar in calendars {
        let window = calendar.rules().window(now, closed);
        let (Some(first), Some(last)) = (
            window.first().and_then(|d| d.1.first().copied()),
            window.last().and_then(|d| d.1.last().copied()),
        ) else {
            continue;
        };
        let free = free_places(db, now, calendar, first, last).await?;
        for (date, starts) in window {
            for start in starts {
                let n = free.get(&start).copied().unwrap_or(calendar.places);
                if n <= 0 {
                    continue;
                }
                let day = by_day.entry(date).or_default();
                let better = day.get(&start).is_none_or(|s| s.free < n);
                if better {
                    day.insert(
                        start,
                        FreeSlot {
                            calendar_id: calendar.id.clone(),
                            starts_at: start,
                            free: n,
                        },
                    );
                }
            }
        }
    }
    Ok(by_day
        .into_iter()
        .map(|(date, slots)| {
            let mut slots: Vec<FreeSlot> = slots.into_values().collect();
            slots.sort_by_key(|s| s.starts_at);
            (date, slots)
        })
        .collect())
}

// ---- Taking and freeing places ----

/// Takes one place of the slot in `tx`, after returning the slot's lapsed holds to the pool; false
/// when the slot is full.
async fn take_place(
    tx: &mut Transaction<'_, Any>,
    now: i64,
    calendar: &Calendar,
    start: i64,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "INSERT INTO slots (calendar_id, starts_at, capacity, taken) VALUES ($1, $2, $3, 0) \
         ON CONFLICT (calendar_id, starts_at) DO NOTHING",
    )
    .bind(&calendar.id)
    .bind(start)
    .bind(calendar.places)
    .execute(&mut **tx)
    .await?;
    let lapsed = sqlx::query(
        "UPDATE appointments SET status = 'scaduto', ended_at = $3, updated_at = $3 \
         WHERE calendar_id = $1 AND starts_at = $2 AND status = 'trattenuto' AND waiting_id IS NULL AND hold_until < $3",
    )
    .bind(&calendar.id)
    .bind(start)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if lapsed > 0 {
        sqlx::query(
            "UPDATE slots SET taken = taken - $3 WHERE calendar_id = $1 AND starts_at = $2",
        )
        .bind(&calendar.id)
        .bind(start)
        .bind(i64::try_from(lapsed).unwrap_or(0))
        .execute(&mut **tx)
        .await?;
    }
    let taken = sqlx::query(
        "UPDATE slots SET taken = taken + 1 WHERE calendar_id = $1 AND starts_at = $2 AND taken < capacity",
    )
    .bind(&calendar.id)
    .bind(start)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(taken == 1)
}

/// Gives a freed place of a slot to the first citizen waiting for that office and one of the
/// calendar's topics, as an offer held for `offer_ms` (not beyond the minimum notice before the
/// start); when nobody waits, or the start is too near, the place returns to the pool.
async fn free_place(
    tx: &mut Transaction<'_, Any>,
    now: i64,
    calendar_id: &str,
    start: i64,
    ends_at: i64,
    offer_ms: i64,
) -> Result<(), sqlx::Error> {
    let notice: Option<i64> =
        sqlx::query_scalar("SELECT min_notice_minutes FROM calendars WHERE id = $1")
            .bind(calendar_id)
            .fetch_optional(&mut **tx)
            .await?;
    let answer_by = (now + offer_ms).min(start - notice.unwrap_or(0) * 60_000);
    if answer_by - now >= 3_600_000 {
        let first: Option<(i64, String, String)> = sqlx::query_as(
            "SELECT w.id, w.citizen_cf, w.topic_id FROM waiting_list w \
             JOIN calendars c ON c.office_id = w.office_id \
             JOIN calendar_topics t ON t.calendar_id = c.id AND t.topic_id = w.topic_id \
             WHERE c.id = $1 AND w.status = 'in_attesa' ORDER BY w.id LIMIT 1",
        )
        .bind(calendar_id)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some((waiting_id, cf, topic)) = first {
            let claimed = sqlx::query(
                "UPDATE waiting_list SET status = 'offerto', updated_at = $2 WHERE id = $1 AND status = 'in_attesa'",
            )
            .bind(waiting_id)
            .bind(now)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if claimed == 1 {
                insert_hold(
                    tx,
                    now,
                    &NewHold {
                        calendar_id,
                        starts_at: start,
                        ends_at,
                        cf: &cf,
                        hold_until: answer_by,
                        waiting_id: Some(waiting_id),
                        topic_id: Some(&topic),
                    },
                )
                .await?;
                return Ok(());
            }
        }
    }
    sqlx::query("UPDATE slots SET taken = taken - 1 WHERE calendar_id = $1 AND starts_at = $2")
        .bind(calendar_id)
        .bind(start)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

struct NewHold<'a> {
    calendar_id: &'a str,
    starts_at: i64,
    ends_at: i64,
    cf: &'a str,
    hold_until: i64,
    waiting_id: Option<i64>,
    topic_id: Option<&'a str>,
}

async fn insert_hold(
    tx: &mut Transaction<'_, Any>,
    now: i64,
    h: &NewHold<'_>,
) -> Result<String, sqlx::Error> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO appointments (id, calendar_id, starts_at, ends_at, citizen_cf, status, hold_until, waiting_id, topic_id, email, phone, created_at, updated_at) \
         SELECT $1, $2, $3, $4, $5, 'trattenuto', $6, $7, $8, \
         (SELECT email FROM people WHERE cf = $5), (SELECT phone FROM people WHERE cf = $5), $9, $9",
    )
    .bind(&id)
    .bind(h.calendar_id)
    .bind(h.starts_at)
    .bind(h.ends_at)
    .bind(h.cf)
    .bind(h.hold_until)
    .bind(h.waiting_id)
    .bind(h.topic_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// Returns the citizen's other holds (not offers from the waiting list) to the pool: one citizen
/// keeps one place at a time while booking.
async fn drop_own_holds(
    tx: &mut Transaction<'_, Any>,
    now: i64,
    cf: &str,
) -> Result<(), sqlx::Error> {
    let held: Vec<(String, i64)> = sqlx::query_as(
        "UPDATE appointments SET status = 'scaduto', ended_at = $2, updated_at = $2 \
         WHERE citizen_cf = $1 AND status = 'trattenuto' AND waiting_id IS NULL RETURNING calendar_id, starts_at",
    )
    .bind(cf)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    for (calendar_id, start) in held {
        sqlx::query("UPDATE slots SET taken = taken - 1 WHERE calendar_id = $1 AND starts_at = $2")
            .bind(&calendar_id)
            .bind(start)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The slot has every place taken and none of its holds has lapsed: a citizen asking for it is
/// told at once, with one read, instead of queueing a write transaction behind those who are
/// taking its last places. (A place freed a moment later is found by the next request; whether a
/// place is given is only ever decided inside [`take_place`]'s transaction.)
async fn plainly_full(
    db: &Db,
    now: i64,
    calendar_id: &str,
    start: i64,
) -> Result<bool, sqlx::Error> {
    let full: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(CASE WHEN s.taken >= s.capacity AND NOT EXISTS (SELECT 1 FROM appointments a \
           WHERE a.calendar_id = s.calendar_id AND a.starts_at = s.starts_at AND a.status = 'trattenuto' \
             AND a.waiting_id IS NULL AND a.hold_until < $3) THEN 1 ELSE 0 END AS BIGINT) \
         FROM slots s WHERE s.calendar_id = $1 AND s.starts_at = $2",
    )
    .bind(calendar_id)
    .bind(start)
    .bind(now)
    .fetch_optional(&db.pool)
    .await?;
    Ok(full == Some(1))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// The id of the new appointment, held until the time given at the call.
    Held(String),
    /// Somebody else took the last place.
    Full,
}

/// Holds a place of `calendar` at `start` for the citizen until `now + hold_ms`. The caller has
/// checked that `start` is a bookable slot of the calendar.
pub async fn hold(
    db: &Db,
    now: i64,
    calendar: &Calendar,
    start: i64,
    cf: &str,
    hold_ms: i64,
) -> Result<Hold, sqlx::Error> {
    if plainly_full(db, now, &calendar.id, start).await? {
        return Ok(Hold::Full);
    }
    let mut tx = db.pool.begin().await?;
    drop_own_holds(&mut tx, now, cf).await?;
    if !take_place(&mut tx, now, calendar, start).await? {
        tx.rollback().await?;
        return Ok(Hold::Full);
    }
    let id = insert_hold(
        &mut tx,
        now,
        &NewHold {
            calendar_id: &calendar.id,
            starts_at: start,
            ends_at: start + calendar.slot_minutes * 60_000,
            cf,
            hold_until: now + hold_ms,
            waiting_id: None,
            topic_id: None,
        },
    )
    .await?;
    tx.commit().await?;
    places_changed(db);
    Ok(Hold::Held(id))
}

/// The citizen's appointment `id`; `None` when it is not theirs (or does not exist).
pub async fn owned(db: &Db, id: &str, cf: &str) -> Result<Option<Appointment>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {APPOINTMENT} FROM appointments WHERE id = $1 AND citizen_cf = $2"
    ))
    .bind(id)
    .bind(cf)
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref().map(appointment).transpose()
}

pub async fn by_id(db: &Db, id: &str) -> Result<Option<Appointment>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {APPOINTMENT} FROM appointments WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref().map(appointment).transpose()
}

/// Saves the details of a held appointment (steps 3 and 4); false when the hold has lapsed.
pub async fn save_details(
    db: &Db,
    now: i64,
    id: &str,
    cf: &str,
    details: &Details,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE appointments SET topic_id = COALESCE($4, topic_id), reason = COALESCE($5, reason), \
         email = COALESCE($6, email), phone = COALESCE($7, phone), updated_at = $3 \
         WHERE id = $1 AND citizen_cf = $2 AND status = 'trattenuto' AND hold_until >= $3",
    )
    .bind(id)
    .bind(cf)
    .bind(now)
    .bind(&details.topic_id)
    .bind(&details.reason)
    .bind(&details.email)
    .bind(&details.phone)
    .execute(&db.pool)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// What steps 3 and 4 change; `None` leaves a value as it is.
#[derive(Debug, Default)]
pub struct Details {
    pub topic_id: Option<String>,
    pub reason: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    Booked,
    /// Already booked (a second click): nothing changes.
    Already,
    /// The hold lapsed before the confirmation.
    Lapsed,
}

fn event(a: &Appointment, ente: &str, office: &str) -> serde_json::Value {
    serde_json::json!({
        "appuntamento": a.id,
        "ente": ente,
        "sede": office,
        "calendario": a.calendar_id,
        "inizio": a.starts_at,
        "fine": a.ends_at,
        "codice_fiscale": a.citizen_cf,
        "motivo": a.topic_id,
        "descrizione": a.reason,
    })
}

async fn ente_and_office(
    tx: &mut Transaction<'_, Any>,
    calendar_id: &str,
) -> Result<(String, String), sqlx::Error> {
    sqlx::query_as(
        "SELECT o.ente_code, o.id FROM calendars c JOIN offices o ON o.id = c.office_id WHERE c.id = $1",
    )
    .bind(calendar_id)
    .fetch_one(&mut **tx)
    .await
}

/// Books the held appointment; the CSI hears of it through the outbox in the same transaction.
pub async fn confirm(db: &Db, now: i64, id: &str, cf: &str) -> Result<Confirm, sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    let row = sqlx::query(&format!(
        "UPDATE appointments SET status = 'prenotato', booked_at = $3, hold_until = NULL, updated_at = $3 \
         WHERE id = $1 AND citizen_cf = $2 AND status = 'trattenuto' AND hold_until >= $3 RETURNING {APPOINTMENT}"
    ))
    .bind(id)
    .bind(cf)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        tx.rollback().await?;
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM appointments WHERE id = $1 AND citizen_cf = $2")
                .bind(id)
                .bind(cf)
                .fetch_optional(&db.pool)
                .await?;
        return Ok(match status.as_deref() {
            Some("prenotato" | "presentato" | "assente" | "spostato" | "annullato") => {
                Confirm::Already
            }
            _ => Confirm::Lapsed,
        });
    };
    let booked = appointment(&row)?;
    if let Some(waiting_id) = booked.waiting_id {
        sqlx::query("UPDATE waiting_list SET status = 'prenotato', updated_at = $2 WHERE id = $1")
            .bind(waiting_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    let (ente, office) = ente_and_office(&mut tx, &booked.calendar_id).await?;
    crate::csi::outbox(
        &mut tx,
        now,
        "appuntamento",
        "appuntamento.prenotato",
        &booked.id,
        &event(&booked, &ente, &office),
    )
    .await?;
    let alert = crate::alerts::Alert::new(
        crate::alerts::Kind::Appuntamento,
        cf,
        &booked.id,
        format!("appuntamento:{}", booked.id),
    );
    crate::alerts::schedule(&mut tx, now, now, &alert).await?;
    tx.commit().await?;
    places_changed(db);
    Ok(Confirm::Booked)
}

/// Gives up a hold before booking, or an offer from the waiting list; the place goes back.
pub async fn release(
    db: &Db,
    now: i64,
    id: &str,
    cf: &str,
    offer_ms: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    let row: Option<(String, i64, i64, Option<i64>)> = sqlx::query_as(
        "UPDATE appointments SET status = 'annullato', ended_at = $3, updated_at = $3 \
         WHERE id = $1 AND citizen_cf = $2 AND status = 'trattenuto' RETURNING calendar_id, starts_at, ends_at, waiting_id",
    )
    .bind(id)
    .bind(cf)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((calendar_id, start, end, waiting_id)) = row {
        match waiting_id {
            Some(waiting_id) => {
                sqlx::query(
                    "UPDATE waiting_list SET status = 'ritirato', updated_at = $2 WHERE id = $1",
                )
                .bind(waiting_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                free_place(&mut tx, now, &calendar_id, start, end, offer_ms).await?;
            }
            None => {
                sqlx::query(
                    "UPDATE slots SET taken = taken - 1 WHERE calendar_id = $1 AND starts_at = $2",
                )
                .bind(&calendar_id)
                .bind(start)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    tx.commit().await?;
    places_changed(db);
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Done(String),
    /// Past the time the calendar allows changes before the appointment.
    TooLate,
    /// The new time was taken meanwhile.
    Full,
    /// Not a booked appointment of this citizen.
    NotBooked,
}

async fn booked_for_change(
    tx: &mut Transaction<'_, Any>,
    now: i64,
    id: &str,
    cf: &str,
) -> Result<Result<Appointment, Change>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {APPOINTMENT} FROM appointments WHERE id = $1 AND citizen_cf = $2 AND status = 'prenotato'"
    ))
    .bind(id)
    .bind(cf)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(Err(Change::NotBooked));
    };
    let a = appointment(&row)?;
    let cancel_minutes: i64 =
        sqlx::query_scalar("SELECT cancel_minutes FROM calendars WHERE id = $1")
            .bind(&a.calendar_id)
            .fetch_one(&mut **tx)
            .await?;
    if now > a.starts_at - cancel_minutes * 60_000 {
        return Ok(Err(Change::TooLate));
    }
    // Claim the row, so that a concurrent cancel or move of the same appointment changes nothing.
    let claimed = sqlx::query(
        "UPDATE appointments SET updated_at = $2 WHERE id = $1 AND status = 'prenotato'",
    )
    .bind(id)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(if claimed == 1 {
        Ok(a)
    } else {
        Err(Change::NotBooked)
    })
}

/// Cancels a booked appointment within the calendar's rules; the place goes to the waiting list.
pub async fn cancel(
    db: &Db,
    now: i64,
    id: &str,
    cf: &str,
    offer_ms: i64,
) -> Result<Change, sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    let a = match booked_for_change(&mut tx, now, id, cf).await? {
        Ok(a) => a,
        Err(refused) => {
            tx.rollback().await?;
            return Ok(refused);
        }
    };
    sqlx::query(
        "UPDATE appointments SET status = 'annullato', ended_at = $2, updated_at = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    free_place(
        &mut tx,
        now,
        &a.calendar_id,
        a.starts_at,
        a.ends_at,
        offer_ms,
    )
    .await?;
    let (ente, office) = ente_and_office(&mut tx, &a.calendar_id).await?;
    crate::csi::outbox(
        &mut tx,
        now,
        "appuntamento",
        "appuntamento.annullato",
        id,
        &event(&a, &ente, &office),
    )
    .await?;
    tx.commit().await?;
    places_changed(db);
    Ok(Change::Done(id.to_string()))
}

/// Moves a booked appointment to another time of an office calendar: the new place is taken and
/// the old one freed in one transaction, or nothing changes.
pub async fn reschedule(
    db: &Db,
    now: i64,
    id: &str,
    cf: &str,
    calendar: &Calendar,
    start: i64,
    offer_ms: i64,
) -> Result<Change, sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    let old = match booked_for_change(&mut tx, now, id, cf).await? {
        Ok(a) => a,
        Err(refused) => {
            tx.rollback().await?;
            return Ok(refused);
        }
    };
    if !take_place(&mut tx, now, calendar, start).await? {
        tx.rollback().await?;
        return Ok(Change::Full);
    }
    let new = Appointment {
        id: new_id(),
        calendar_id: calendar.id.clone(),
        starts_at: start,
        ends_at: start + calendar.slot_minutes * 60_000,
        status: "prenotato".into(),
        hold_until: None,
        waiting_id: None,
        booked_at: Some(now),
        ..old.clone()
    };
    sqlx::query(
        "INSERT INTO appointments (id, calendar_id, starts_at, ends_at, citizen_cf, status, topic_id, reason, email, phone, created_at, booked_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'prenotato', $6, $7, $8, $9, $10, $10, $10)",
    )
    .bind(&new.id)
    .bind(&new.calendar_id)
    .bind(new.starts_at)
    .bind(new.ends_at)
    .bind(cf)
    .bind(&new.topic_id)
    .bind(&new.reason)
    .bind(&new.email)
    .bind(&new.phone)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE appointments SET status = 'spostato', ended_at = $2, updated_at = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    free_place(
        &mut tx,
        now,
        &old.calendar_id,
        old.starts_at,
        old.ends_at,
        offer_ms,
    )
    .await?;
    let (ente, office) = ente_and_office(&mut tx, &new.calendar_id).await?;
    let mut payload = event(&new, &ente, &office);
    payload["sostituisce"] = serde_json::Value::String(old.id.clone());
    crate::csi::outbox(
        &mut tx,
        now,
        "appuntamento",
        "appuntamento.spostato",
        &new.id,
        &payload,
    )
    .await?;
    let alert = crate::alerts::Alert::new(
        crate::alerts::Kind::Appuntamento,
        cf,
        &new.id,
        format!("appuntamento:{}", new.id),
    );
    crate::alerts::schedule(&mut tx, now, now, &alert).await?;
    tx.commit().await?;
    places_changed(db);
    Ok(Change::Done(new.id))
}

/// Lapsed holds and unanswered offers: a hold returns its place to the pool, an offer passes it to
/// the next citizen waiting. Returns how many were handled.
pub async fn expire_holds(db: &Db, now: i64, offer_ms: i64) -> Result<usize, sqlx::Error> {
    let lapsed: Vec<(String, String, i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT id, calendar_id, starts_at, ends_at, waiting_id FROM appointments \
         WHERE status = 'trattenuto' AND hold_until < $1 ORDER BY hold_until LIMIT 500",
    )
    .bind(now)
    .fetch_all(&db.pool)
    .await?;
    let mut handled = 0;
    for (id, calendar_id, start, end, waiting_id) in lapsed {
        let mut tx = db.pool.begin().await?;
        let claimed = sqlx::query(
            "UPDATE appointments SET status = 'scaduto', ended_at = $2, updated_at = $2 \
             WHERE id = $1 AND status = 'trattenuto' AND hold_until < $2",
        )
        .bind(&id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 1 {
            match waiting_id {
                Some(waiting_id) => {
                    sqlx::query(
                        "UPDATE waiting_list SET status = 'scaduto', updated_at = $2 WHERE id = $1",
                    )
                    .bind(waiting_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    free_place(&mut tx, now, &calendar_id, start, end, offer_ms).await?;
                }
                None => {
                    sqlx::query(
                        "UPDATE slots SET taken = taken - 1 WHERE calendar_id = $1 AND starts_at = $2",
                    )
                    .bind(&calendar_id)
                    .bind(start)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            handled += 1;
        }
        tx.commit().await?;
        places_changed(db);
    }
    Ok(handled)
}

// ---- Waiting list ----

#[derive(Debug, Clone, Serialize)]
pub struct Waiting {
    pub id: i64,
    pub office_id: String,
    pub topic_id: String,
    pub status: String,
    pub created_at: i64,
}

/// Puts the citizen on the waiting list of an office for a topic; false when already there.
pub async fn join_waiting_list(
    db: &Db,
    now: i64,
    office_id: &str,
    topic_id: &str,
    cf: &str,
) -> Result<bool, sqlx::Error> {
    let already: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM waiting_list WHERE office_id = $1 AND topic_id = $2 AND citizen_cf = $3 \
         AND status IN ('in_attesa', 'offerto')",
    )
    .bind(office_id)
    .bind(topic_id)
    .bind(cf)
    .fetch_optional(&db.pool)
    .await?;
    if already.is_some() {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO waiting_list (office_id, topic_id, citizen_cf, status, created_at, updated_at) \
         VALUES ($1, $2, $3, 'in_attesa', $4, $4)",
    )
    .bind(office_id)
    .bind(topic_id)
    .bind(cf)
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok(true)
}

pub async fn leave_waiting_list(db: &Db, now: i64, id: i64, cf: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE waiting_list SET status = 'ritirato', updated_at = $3 WHERE id = $1 AND citizen_cf = $2 AND status = 'in_attesa'",
    )
    .bind(id)
    .bind(cf)
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok(())
}

pub async fn waiting_of(db: &Db, cf: &str) -> Result<Vec<Waiting>, sqlx::Error> {
    let rows: Vec<(i64, String, String, String, i64)> = sqlx::query_as(
        "SELECT id, office_id, topic_id, status, created_at FROM waiting_list \
         WHERE citizen_cf = $1 AND status = 'in_attesa' ORDER BY id",
    )
    .bind(cf)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, office_id, topic_id, status, created_at)| Waiting {
            id,
            office_id,
            topic_id,
            status,
            created_at,
        })
        .collect())
}

/// The citizen's appointments, the latest first: booked, offered, and past ones (not lapsed holds).
pub async fn of_citizen(db: &Db, cf: &str) -> Result<Vec<Appointment>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {APPOINTMENT} FROM appointments WHERE citizen_cf = $1 \
         AND (status IN ('prenotato', 'presentato', 'assente', 'annullato') OR (status = 'trattenuto' AND waiting_id IS NOT NULL)) \
         ORDER BY starts_at DESC"
    ))
    .bind(cf)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(appointment).collect()
}

// ---- Staff: agenda, attendance, scheda di accesso ----

/// The booked and past appointments of `calendars` between two instants, with the citizen's name.
pub async fn agenda(
    db: &Db,
    calendar_ids: &[String],
    from: i64,
    to: i64,
) -> Result<Vec<(Appointment, String)>, sqlx::Error> {
    let mut out = Vec::new();
    for calendar_id in calendar_ids {
        let rows = sqlx::query(&format!(
            "SELECT {}, COALESCE(p.given_name || ' ' || p.family_name, '') AS name FROM appointments a \
             LEFT JOIN people p ON p.cf = a.citizen_cf \
             WHERE a.calendar_id = $1 AND a.starts_at >= $2 AND a.starts_at < $3 \
             AND a.status IN ('prenotato', 'presentato', 'assente') ORDER BY a.starts_at",
            APPOINTMENT
                .split(", ")
                .map(|c| format!("a.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(calendar_id)
        .bind(from)
        .bind(to)
        .fetch_all(&db.pool)
        .await?;
        for row in &rows {
            out.push((appointment(row)?, row.try_get("name")?));
        }
    }
    out.sort_by_key(|(a, _)| a.starts_at);
    Ok(out)
}

/// Marks a booked appointment attended or missed (`presentato` / `assente`); false when it was
/// not booked (already marked, or cancelled).
pub async fn mark(
    db: &Db,
    now: i64,
    id: &str,
    outcome: &str,
    staff_cf: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    let row = sqlx::query(&format!(
        "UPDATE appointments SET status = $2, ended_at = $3, updated_at = $3 \
         WHERE id = $1 AND status = 'prenotato' RETURNING {APPOINTMENT}"
    ))
    .bind(id)
    .bind(outcome)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        tx.rollback().await?;
        return Ok(false);
    };
    let a = appointment(&row)?;
    let (ente, office) = ente_and_office(&mut tx, &a.calendar_id).await?;
    let mut payload = event(&a, &ente, &office);
    payload["operatore"] = serde_json::Value::String(staff_cf.to_string());
    crate::csi::outbox(
        &mut tx,
        now,
        "appuntamento",
        &format!("appuntamento.{outcome}"),
        id,
        &payload,
    )
    .await?;
    tx.commit().await?;
    places_changed(db);
    Ok(true)
}

#[derive(Debug, Clone, Serialize)]
pub struct Scheda {
    pub need: String,
    pub area: String,
    pub outcome: String,
    pub notes: Option<String>,
    pub recorded_by: String,
    pub recorded_at: i64,
}

pub async fn scheda(db: &Db, appointment_id: &str) -> Result<Option<Scheda>, sqlx::Error> {
    let row: Option<(String, String, String, Option<String>, String, i64)> = sqlx::query_as(
        "SELECT need, area, outcome, notes, recorded_by, recorded_at FROM access_records WHERE appointment_id = $1",
    )
    .bind(appointment_id)
    .fetch_optional(&db.pool)
    .await?;
    Ok(row.map(
        |(need, area, outcome, notes, recorded_by, recorded_at)| Scheda {
            need,
            area,
            outcome,
            notes,
            recorded_by,
            recorded_at,
        },
    ))
}

/// Records the scheda di accesso e orientamento of an attended appointment (marking it attended if
/// it was still booked) and hands it to the CSI; false when one was already recorded.
pub async fn record_scheda(
    db: &Db,
    now: i64,
    a: &Appointment,
    s: &Scheda,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO access_records (appointment_id, need, area, outcome, notes, recorded_by, recorded_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (appointment_id) DO NOTHING",
    )
    .bind(&a.id)
    .bind(&s.need)
    .bind(&s.area)
    .bind(&s.outcome)
    .bind(&s.notes)
    .bind(&s.recorded_by)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    sqlx::query(
        "UPDATE appointments SET status = 'presentato', ended_at = $2, updated_at = $2 WHERE id = $1 AND status = 'prenotato'",
    )
    .bind(&a.id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let (ente, office) = ente_and_office(&mut tx, &a.calendar_id).await?;
    let mut payload = event(a, &ente, &office);
    payload["scheda"] = serde_json::json!({
        "bisogno": s.need,
        "area": s.area,
        "esito": s.outcome,
        "note": s.notes,
        "operatore": s.recorded_by,
    });
    crate::csi::outbox(
        &mut tx,
        now,
        "appuntamento",
        "appuntamento.scheda",
        &a.id,
        &payload,
    )
    .await?;
    tx.commit().await?;
    places_changed(db);
    Ok(true)
}
