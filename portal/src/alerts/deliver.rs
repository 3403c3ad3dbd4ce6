//! Delivering a due alert: check it still applies, write the inbox message (once per key), send
//! the e-mail (unless the person opted out of the kind or has no address), and schedule the
//! reminders that follow it. Messages say what happened and link to the portal; the details stay
//! behind the login, and no message names the service (which can reveal health or income, special
//! categories under the GDPR): the pratica's number is enough.

use serde::Serialize;
use sha2::{Digest, Sha256};
use tera::{Context, Tera};
use time::{Date, Duration};

use super::mail::{Email, Mailer};
use super::{schedule_now, Alert, Kind};
use crate::applications::catalogue::Catalogue;
use crate::applications::status::Status;
use crate::applications::store as applications;
use crate::appointments::calendar::{clock_label, day_label};
use crate::appointments::store as appointments;
use crate::config::AlertsConfig;
use crate::db::Db;
use crate::domain::italian_time::{date_time, long_date, rome_date, rome_instant};
use crate::jobs::{BoxFuture, Job, JobContext, JobError, JobHandler};

/// What the job runner needs to deliver alerts.
#[derive(Debug)]
pub struct Deliver {
    pub mailer: Mailer,
    pub from: String,
    pub public_url: String,
    pub ente_name: String,
    pub templates: Tera,
    pub catalogue: Catalogue,
    pub config: AlertsConfig,
}

/// The message an alert becomes.
#[derive(Debug, Default, Serialize)]
struct Message {
    subject: String,
    paragraphs: Vec<String>,
    link: Option<String>,
    link_label: String,
    #[serde(skip)]
    attachments: Vec<(String, String, Vec<u8>)>,
    /// The address to write to instead of the person's (confirming a new address).
    #[serde(skip)]
    to: Option<String>,
    /// Not kept in the inbox (a confirmation link).
    #[serde(skip)]
    email_only: bool,
}

fn err(e: impl std::fmt::Display) -> JobError {
    JobError(e.to_string())
}

/// 9:00 in Italy, `days` before `date`.
fn morning_before(date: Date, days: i64) -> i64 {
    rome_instant(date - Duration::days(days), 9 * 60)
}

impl Deliver {
    /// A reminder `days` before `deadline` that should not go out at `now`: the deadline has passed,
    /// or a closer reminder is already due (after downtime, only the latest one is sent).
    fn stale(&self, now: i64, deadline: Date, days: i64) -> bool {
        rome_date(now) > deadline
            || self
                .config
                .deadline_reminder_days
                .iter()
                .any(|&closer| closer < days && now >= morning_before(deadline, closer))
    }

    fn pratica_link(&self, id: &str) -> Option<String> {
        Some(format!("{}/domande/{id}", self.public_url))
    }

    /// The message for `alert`, or `None` when it no longer applies (a booking cancelled, documents
    /// already sent, a draft already sent…).
    async fn message(&self, db: &Db, now: i64, alert: &Alert) -> Result<Option<Message>, JobError> {
        match alert.kind {
            Kind::ConfermaEmail => {
                let to = alert.extra["email"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let link = alert.extra["link"].as_str().unwrap_or_default().to_string();
                Ok(Some(Message {
                    subject: "Conferma il tuo nuovo indirizzo e-mail".into(),
                    paragraphs: vec![
                        format!("Hai chiesto di ricevere gli avvisi di {} a questo indirizzo.", self.ente_name),
                        "Per confermarlo apri il collegamento qui sotto entro 48 ore. Se non sei stato tu, ignora questo messaggio: non cambierà nulla.".into(),
                    ],
                    link: Some(link),
                    link_label: "Conferma l'indirizzo".into(),
                    to: Some(to),
                    email_only: true,
                    ..Message::default()
                }))
            }
            Kind::Appuntamento | Kind::PromemoriaAppuntamento => {
                self.appointment(db, now, alert).await
            }
            Kind::Delega => {
                let mandate = crate::delegations::store::get(db, &alert.about)
                    .await
                    .map_err(err)?
                    .filter(|m| m.state == crate::delegations::State::Proposta);
                Ok(mandate.map(|m| Message {
                    subject: format!("{} ti ha delegato", m.principal_name()),
                    paragraphs: vec![
                        format!(
                            "{} ti ha delegato a operare per suo conto presso {}: potrai {}, fino al {}.",
                            m.principal_name(),
                            self.ente_name,
                            m.scopes_text(),
                            m.valid_until_text()
                        ),
                        "La delega vale solo se la accetti, dalla sezione Deleghe della tua area personale. Se non conosci questa persona, rifiutala.".into(),
                    ],
                    link: Some(format!("{}/area-personale/deleghe", self.public_url)),
                    link_label: "Vedi la delega".into(),
                    ..Message::default()
                }))
            }
            _ => self.pratica(db, now, alert).await,
        }
    }

    async fn pratica(&self, db: &Db, now: i64, alert: &Alert) -> Result<Option<Message>, JobError> {
        let Some(app) = applications::get(db, &alert.about).await.map_err(err)? else {
            return Ok(None);
        };
        let numero = app.numero.clone().unwrap_or_default();
        let link = self.pratica_link(&app.id);
        let open = "Apri la pratica".to_string();
        let message = |subject: String, paragraphs: Vec<String>| Message {
            subject,
            paragraphs,
            link: link.clone(),
            link_label: open.clone(),
            ..Message::default()
        };
        Ok(match alert.kind {
            Kind::Ricevuta => {
                if app.numero.is_none() {
                    return Ok(None);
                }
                let mut m = message(
                    format!("Domanda inviata: pratica {numero}"),
                    vec![
                        format!(
                            "Abbiamo ricevuto la tua domanda il {}. Il numero di pratica è {numero}.",
                            app.submitted_at.map(date_time).unwrap_or_default()
                        ),
                        match app.due_date {
                            Some(due) => format!("L'esito arriverà entro il {}.", long_date(due)),
                            None => String::new(),
                        },
                        "In allegato trovi la ricevuta in PDF; puoi seguire la pratica nell'area personale.".into(),
                    ],
                );
                let (pdf, name) =
                    crate::applications::receipt::for_application(&app, &self.public_url)
                        .map_err(err)?;
                m.attachments.push((name, "application/pdf".into(), pdf));
                Some(m)
            }
            Kind::Stato => {
                let to = alert.extra["to"].as_str().and_then(Status::parse);
                let Some(to) = to.filter(|t| *t == app.status) else {
                    return Ok(None);
                };
                let mut paragraphs =
                    vec![format!("La tua pratica {numero} è ora: {}.", to.label())];
                if let (Status::Protocollata, Some(p)) = (to, &app.protocollo) {
                    paragraphs.push(format!("Numero di protocollo: {p}."));
                }
                if let (Status::PresaInCarico, Some(due)) = (to, app.due_date) {
                    paragraphs.push(format!("L'esito arriverà entro il {}.", long_date(due)));
                }
                if to.is_final() {
                    paragraphs.push("Trovi i dettagli e le motivazioni nella pratica.".into());
                }
                Some(message(
                    format!("Pratica {numero}: {}", to.label()),
                    paragraphs,
                ))
            }
            Kind::Risposta => Some(message(
                format!("Pratica {numero}: l'ufficio ti ha scritto"),
                vec!["L'ufficio ha risposto al tuo messaggio sulla pratica: leggilo nella pratica, dove puoi anche rispondere.".into()],
            )),
            Kind::Integrazioni | Kind::ScadenzaIntegrazioni => {
                if app.status != Status::InAttesaDiIntegrazioni {
                    return Ok(None);
                }
                let requests = applications::requests(db, &app.id).await.map_err(err)?;
                let Some(deadline) = requests
                    .iter()
                    .rev()
                    .find(|r| r.answered_at.is_none())
                    .and_then(|r| r.deadline)
                else {
                    return Ok(None);
                };
                if alert.kind == Kind::Integrazioni {
                    for days in &self.config.deadline_reminder_days {
                        let due = morning_before(deadline, *days);
                        if due > now {
                            let reminder = Alert::new(
                                Kind::ScadenzaIntegrazioni,
                                &alert.cf,
                                &app.id,
                                format!("scadenza-integrazioni:{}:{deadline}:{days}", app.id),
                            )
                            .with(serde_json::json!({ "deadline": deadline.to_string(), "days": days }));
                            schedule_now(db, now, due, &reminder).await.map_err(err)?;
                        }
                    }
                    Some(message(
                        format!("Pratica {numero}: documenti da inviare entro il {}", long_date(deadline)),
                        vec![
                            format!("Per la tua pratica {numero} l'ufficio ti chiede altri documenti o informazioni."),
                            format!("Rispondi dalla pratica entro il {}: leggi la richiesta e allega quanto serve.", long_date(deadline)),
                        ],
                    ))
                } else {
                    let days = alert.extra["days"].as_i64().unwrap_or(1);
                    if alert.extra["deadline"].as_str() != Some(deadline.to_string().as_str())
                        || self.stale(now, deadline, days)
                    {
                        return Ok(None);
                    }
                    Some(message(
                        format!(
                            "Promemoria: {} per i documenti della pratica {numero}",
                            if days == 1 { "manca 1 giorno".to_string() } else { format!("mancano {days} giorni") }
                        ),
                        vec![format!(
                            "Ricorda di rispondere alla richiesta di documenti per la pratica {numero} entro il {}.",
                            long_date(deadline)
                        )],
                    ))
                }
            }
            Kind::Preavviso | Kind::ScadenzaPreavviso => {
                if app.status != Status::PreavvisoDiRigetto {
                    return Ok(None);
                }
                let Some(term) = alert.extra["term"]
                    .as_str()
                    .and_then(crate::applications::form::parse_date)
                else {
                    return Ok(None);
                };
                if alert.kind == Kind::Preavviso {
                    for days in &self.config.deadline_reminder_days {
                        let due = morning_before(term, *days);
                        if due > now {
                            let reminder = Alert::new(
                                Kind::ScadenzaPreavviso,
                                &alert.cf,
                                &app.id,
                                format!("scadenza-preavviso:{}:{term}:{days}", app.id),
                            )
                            .with(serde_json::json!({ "term": term.to_string(), "days": days }));
                            schedule_now(db, now, due, &reminder).await.map_err(err)?;
                        }
                    }
                    Some(message(
                        format!("Pratica {numero}: preavviso di rigetto"),
                        vec![
                            format!("Prima di decidere sulla tua domanda (pratica {numero}), l'ufficio ti comunica i motivi per cui potrebbe non essere accolta (art. 10-bis della legge 241/1990)."),
                            format!("Hai tempo fino al {} per presentare osservazioni e documenti dalla pratica.", long_date(term)),
                        ],
                    ))
                } else {
                    let days = alert.extra["days"].as_i64().unwrap_or(1);
                    if self.stale(now, term, days) {
                        return Ok(None);
                    }
                    Some(message(
                        format!("Promemoria: osservazioni sulla pratica {numero} entro il {}", long_date(term)),
                        vec![format!(
                            "Il termine per rispondere al preavviso di rigetto della pratica {numero} scade il {}.",
                            long_date(term)
                        )],
                    ))
                }
            }
            Kind::BozzaInScadenza => {
                if app.status != Status::Bozza {
                    return Ok(None);
                }
                let closes = alert.extra["closes"]
                    .as_str()
                    .and_then(crate::applications::form::parse_date);
                let Some(closes) = closes else {
                    return Ok(None);
                };
                Some(message(
                    format!("Una domanda in bozza va inviata entro il {}", long_date(closes)),
                    vec![
                        "Hai una domanda salvata in bozza e non ancora inviata.".into(),
                        format!("Le domande si presentano fino al {}: dopo non sarà più possibile inviarla.", long_date(closes)),
                    ],
                ))
            }
            Kind::IseeInScadenza => {
                if app.status.is_final() || app.numero.is_none() {
                    return Ok(None);
                }
                let year = rome_date(now).year();
                Some(message(
                    format!("Pratica {numero}: l'ISEE scade il 31 dicembre {year}"),
                    vec![
                        format!("L'ISEE indicato nella domanda (pratica {numero}) vale fino al 31 dicembre {year}."),
                        "Per non perdere il beneficio, presenta la nuova DSU all'inizio del nuovo anno e comunicala dalla pratica.".into(),
                    ],
                ))
            }
            Kind::TermineLegale => {
                let (Some(due), false) = (app.due_date, app.status.is_final()) else {
                    return Ok(None);
                };
                Some(Message {
                    subject: format!("Pratica {numero}: termine per l'esito il {}", long_date(due)),
                    paragraphs: vec![format!(
                        "La pratica {numero} è nello stato «{}» e il termine per concluderla scade il {} (legge 241/1990).",
                        app.status.label(),
                        long_date(due)
                    )],
                    link: None,
                    link_label: String::new(),
                    ..Message::default()
                })
            }
            _ => None,
        })
    }

    async fn appointment(
        &self,
        db: &Db,
        now: i64,
        alert: &Alert,
    ) -> Result<Option<Message>, JobError> {
        let Some(a) = appointments::by_id(db, &alert.about).await.map_err(err)? else {
            return Ok(None);
        };
        if a.status != "prenotato" {
            return Ok(None);
        }
        let calendar = appointments::calendar_by_id(db, &a.calendar_id)
            .await
            .map_err(err)?;
        let office = match &calendar {
            Some(c) => appointments::office_by_id(db, &c.office_id)
                .await
                .map_err(err)?,
            None => None,
        };
        let when = format!(
            "{} alle {}",
            day_label(rome_date(a.starts_at)),
            clock_label(a.starts_at)
        );
        let place = office
            .as_ref()
            .map(|o| format!("{}, {}", o.name, o.address))
            .unwrap_or_default();
        let link = Some(format!("{}/appuntamenti/{}", self.public_url, a.id));
        if alert.kind == Kind::Appuntamento {
            let reminder_at = a.starts_at - self.config.appointment_reminder_hours * 3_600_000;
            if reminder_at > now {
                let reminder = Alert::new(
                    Kind::PromemoriaAppuntamento,
                    &alert.cf,
                    &a.id,
                    format!("promemoria-appuntamento:{}:{}", a.id, a.starts_at),
                )
                .with(serde_json::json!({ "start": a.starts_at }));
                schedule_now(db, now, reminder_at, &reminder)
                    .await
                    .map_err(err)?;
            }
            let topic: Option<String> = match &a.topic_id {
                Some(t) => sqlx::query_scalar("SELECT title FROM topics WHERE id = $1")
                    .bind(t)
                    .fetch_optional(&db.pool)
                    .await
                    .map_err(err)?,
                None => None,
            };
            let cancel = calendar.as_ref().map_or(0, |c| c.cancel_minutes);
            let view = crate::appointments::booking::AppointmentView::new(
                &a,
                office.clone(),
                topic,
                a.starts_at - cancel * 60_000,
                now,
            );
            let host = url::Url::parse(&self.public_url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| "sportello".into());
            let ics = crate::appointments::ics::event(&a, &view, &host);
            Ok(Some(Message {
                subject: format!("Appuntamento prenotato: {when}"),
                paragraphs: vec![
                    format!("Ti aspettiamo {when} presso {place}."),
                    "Porta un documento d'identità. In allegato trovi l'appuntamento da aggiungere al tuo calendario; puoi annullarlo o spostarlo dall'area personale.".into(),
                ],
                link,
                link_label: "Vedi l'appuntamento".into(),
                attachments: vec![("appuntamento.ics".into(), "text/calendar; charset=utf-8".into(), ics.into_bytes())],
                ..Message::default()
            }))
        } else {
            if alert.extra["start"].as_i64() != Some(a.starts_at) {
                return Ok(None);
            }
            Ok(Some(Message {
                subject: format!("Promemoria: appuntamento {when}"),
                paragraphs: vec![format!(
                    "Ti ricordiamo l'appuntamento con il segretariato sociale {when} presso {place}. Se non puoi venire, annullalo dall'area personale: il posto andrà a chi è in attesa."
                )],
                link,
                link_label: "Vedi l'appuntamento".into(),
                ..Message::default()
            }))
        }
    }

    /// A one-use unsubscribe link for `kind`.
    async fn unsubscribe_link(
        &self,
        db: &Db,
        now: i64,
        cf: &str,
        kind: Kind,
    ) -> Result<String, JobError> {
        let token = crate::web::session::random_token(32);
        sqlx::query(
            "INSERT INTO email_tokens (token_hash, cf, purpose, kind, created_at) VALUES ($1, $2, 'disiscrizione', $3, $4)",
        )
        .bind(token_hash(&token))
        .bind(cf)
        .bind(kind.as_str())
        .bind(now)
        .execute(&db.pool)
        .await
        .map_err(err)?;
        Ok(format!(
            "{}/avvisi/disiscrizione?t={token}",
            self.public_url
        ))
    }

    async fn deliver(&self, db: &Db, now: i64, alert: &Alert) -> Result<(), JobError> {
        let Some(message) = self.message(db, now, alert).await? else {
            return Ok(());
        };
        if !message.email_only {
            sqlx::query(
                "INSERT INTO messages (alert_key, cf, kind, subject, body, link, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (alert_key) DO NOTHING",
            )
            .bind(&alert.key)
            .bind(&alert.cf)
            .bind(alert.kind.as_str())
            .bind(&message.subject)
            .bind(message.paragraphs.iter().filter(|p| !p.is_empty()).cloned().collect::<Vec<_>>().join("\n\n"))
            .bind(message.link.as_deref().map(|l| l.trim_start_matches(&self.public_url)))
            .bind(now)
            .execute(&db.pool)
            .await
            .map_err(err)?;
            let emailed: Option<Option<i64>> =
                sqlx::query_scalar("SELECT emailed_at FROM messages WHERE alert_key = $1")
                    .bind(&alert.key)
                    .fetch_optional(&db.pool)
                    .await
                    .map_err(err)?;
            if emailed.flatten().is_some() {
                return Ok(());
            }
        }
        let opted_out: Option<String> =
            sqlx::query_scalar("SELECT kind FROM email_optouts WHERE cf = $1 AND kind = $2")
                .bind(&alert.cf)
                .bind(alert.kind.as_str())
                .fetch_optional(&db.pool)
                .await
                .map_err(err)?;
        let to = match &message.to {
            Some(to) => Some(to.clone()),
            None if opted_out.is_some() => None,
            None => {
                sqlx::query_scalar::<_, Option<String>>("SELECT email FROM people WHERE cf = $1")
                    .bind(&alert.cf)
                    .fetch_optional(&db.pool)
                    .await
                    .map_err(err)?
                    .flatten()
                    .filter(|e| !e.is_empty())
            }
        };
        let Some(to) = to else { return Ok(()) };
        let unsubscribe = if message.email_only {
            None
        } else {
            Some(
                self.unsubscribe_link(db, now, &alert.cf, alert.kind)
                    .await?,
            )
        };
        let mut ctx = Context::new();
        ctx.insert("m", &message);
        ctx.insert("ente", &self.ente_name);
        ctx.insert("unsubscribe", &unsubscribe);
        ctx.insert("kind_label", alert.kind.label());
        let email = Email {
            to,
            subject: message.subject.clone(),
            text: self
                .templates
                .render("email/alert.text", &ctx)
                .map_err(err)?,
            html: self
                .templates
                .render("email/alert.html", &ctx)
                .map_err(err)?,
            attachments: message.attachments,
        };
        self.mailer
            .send(&self.from, &email)
            .await
            .map_err(JobError)?;
        if !message.email_only {
            sqlx::query("UPDATE messages SET emailed_at = $2 WHERE alert_key = $1")
                .bind(&alert.key)
                .bind(now)
                .execute(&db.pool)
                .await
                .map_err(err)?;
        }
        tracing::info!(kind = alert.kind.as_str(), "alert e-mailed");
        Ok(())
    }
}

pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl JobHandler for Deliver {
    fn lane(&self) -> crate::jobs::Lane {
        crate::jobs::Lane::Alerts
    }
    fn run<'a>(&'a self, ctx: &'a JobContext, job: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let alert: Alert = serde_json::from_str(&job.payload).map_err(err)?;
            self.deliver(&ctx.db, ctx.clock.now_ms(), &alert).await
        })
    }
}
