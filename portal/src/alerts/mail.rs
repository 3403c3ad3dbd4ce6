//! E-mail out, through lettre: SMTP (with TLS and credentials from the URL) or, in the embedded
//! default, `.eml` files in a folder. Errors are reduced to what may be stored on a job row: never
//! an address or a server's echo of one.

use std::path::Path;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::config::EmailConfig;

pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Folder(AsyncFileTransport<Tokio1Executor>),
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mailer::Smtp(_) => write!(f, "Mailer::Smtp"),
            Mailer::Folder(_) => write!(f, "Mailer::Folder"),
        }
    }
}

/// One e-mail: plain text and HTML, and the files attached.
#[derive(Debug, Clone)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub attachments: Vec<(String, String, Vec<u8>)>,
}

impl Mailer {
    pub fn new(config: &EmailConfig, data_dir: &Path) -> Result<Mailer, String> {
        match &config.smtp_url {
            Some(url) => AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                .map(|b| Mailer::Smtp(b.build()))
                .map_err(|e| format!("email.smtp_url: {e}")),
            None => {
                let folder = data_dir.join(&config.folder);
                std::fs::create_dir_all(&folder)
                    .map_err(|e| format!("email.folder {}: {e}", folder.display()))?;
                Ok(Mailer::Folder(AsyncFileTransport::new(folder)))
            }
        }
    }

    pub async fn send(&self, from: &str, email: &Email) -> Result<(), String> {
        let message = build(from, email)?;
        match self {
            Mailer::Smtp(smtp) => smtp.send(message).await.map(|_| ()).map_err(|e| {
                let code = e.status().map(|c| c.to_string()).unwrap_or_default();
                if e.is_permanent() {
                    format!("SMTP: refused permanently {code}")
                } else if e.is_transient() {
                    format!("SMTP: refused for now {code}")
                } else {
                    "SMTP: server unreachable or connection failed".to_string()
                }
            }),
            Mailer::Folder(folder) => folder
                .send(message)
                .await
                .map(|_| ())
                .map_err(|_| "e-mail folder: could not write".to_string()),
        }
    }
}

fn build(from: &str, email: &Email) -> Result<Message, String> {
    let from: Mailbox = from.parse().map_err(|_| "email.from: not an address")?;
    let to: Mailbox = email.to.parse().map_err(|_| "recipient: not an address")?;
    let body = MultiPart::alternative_plain_html(email.text.clone(), email.html.clone());
    let builder = Message::builder()
        .from(from)
        .to(to)
        .subject(email.subject.clone());
    let message = if email.attachments.is_empty() {
        builder.multipart(body)
    } else {
        let mut mixed = MultiPart::mixed().multipart(body);
        for (name, content_type, bytes) in &email.attachments {
            let content_type =
                ContentType::parse(content_type).map_err(|_| "attachment: bad content type")?;
            mixed =
                mixed.singlepart(Attachment::new(name.clone()).body(bytes.clone(), content_type));
        }
        builder.multipart(mixed)
    };
    message.map_err(|e| format!("e-mail not built: {e}"))
}
