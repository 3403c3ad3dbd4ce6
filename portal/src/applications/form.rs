//! A service's form as data: steps of fields, the rules each answer must meet, and the conversion of
//! what the browser sends into answers. Answers are kept as JSON: a string per field (normalised
//! when valid: ISO dates, euro as `1234.56`, upper-case codice fiscale), `true`/`false` for a
//! checkbox, an array of rows for a repeatable group.

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::Date;

use crate::domain::italian_time::long_date;
use crate::domain::CodiceFiscale;

pub type Answers = BTreeMap<String, Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    Text,
    Textarea,
    Number,
    Money,
    Date,
    CodiceFiscale,
    Email,
    Phone,
    Select,
    Radio,
    Checkbox,
    Group,
    Attachment,
}

/// Where a field's first value comes from (once-only: the portal never asks twice for what it knows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prefill {
    Nome,
    Cognome,
    CodiceFiscale,
    DataNascita,
    Email,
    Telefono,
    /// The answer to the same field in the person's latest application (residence, for example).
    Precedente,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    pub value: String,
    pub label: String,
}

/// Show a field only when an earlier answer (in this step or an earlier one) is one of `any_of`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub field: String,
    pub any_of: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub id: String,
    pub label: String,
    pub kind: FieldKind,
    #[serde(default)]
    pub required: bool,
    pub help: Option<String>,
    pub prefill: Option<Prefill>,
    /// Number and money (euro): the smallest and largest value.
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    /// Text: a regular expression the whole answer must match, and what to say when it does not.
    pub pattern: Option<Pattern>,
    pub pattern_message: Option<String>,
    /// Date: "passata" (today or before) or "futura" (today or after).
    pub date: Option<DateRule>,
    #[serde(default)]
    pub options: Vec<Choice>,
    pub show_if: Option<Condition>,
    /// Group: the fields of one row, how many rows, and what one row is called.
    #[serde(default)]
    pub fields: Vec<Field>,
    pub min_items: Option<usize>,
    pub max_items: Option<usize>,
    pub item_label: Option<String>,
    /// Attachment: the kinds of document accepted in this slot.
    #[serde(default)]
    pub documents: Vec<String>,
    /// What the answer is about the person filling the form, for the browser to offer (WCAG 1.3.5,
    /// input purpose). Only on fields about the applicant themselves.
    pub autocomplete: Option<Autocomplete>,
}

/// The HTML autofill purposes a form field may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Autocomplete {
    GivenName,
    FamilyName,
    Name,
    Bday,
    StreetAddress,
    PostalCode,
    AddressLevel2,
    AddressLevel1,
    Tel,
    Email,
}

/// A regular expression the whole answer must match, compiled once when the definition is read (a
/// definition whose pattern does not compile is refused then, with its file and line).
#[derive(Debug, Clone)]
pub struct Pattern(Regex);

impl Pattern {
    pub fn new(source: &str) -> Result<Pattern, regex::Error> {
        Regex::new(&format!("^(?:{source})$")).map(Pattern)
    }

    pub fn matches(&self, text: &str) -> bool {
        self.0.is_match(text)
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let source = self.0.as_str();
        let inner = source
            .strip_prefix("^(?:")
            .and_then(|s| s.strip_suffix(")$"))
            .unwrap_or(source);
        serializer.serialize_str(inner)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Pattern, D::Error> {
        let source = String::deserialize(deserializer)?;
        Pattern::new(&source).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DateRule {
    Passata,
    Futura,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub id: String,
    pub title: String,
    pub intro: Option<String>,
    pub fields: Vec<Field>,
}

/// A self-declaration under DPR 445/2000, which the citizen ticks on the summary before sending.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declaration {
    pub id: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Form {
    /// Raised whenever the form changes; a pratica keeps the version it was filled with.
    pub version: u32,
    /// The privacy notice the citizen accepts before the first step.
    pub privacy: String,
    pub steps: Vec<Step>,
    pub declarations: Vec<Declaration>,
}

/// One problem with one answer, shown next to the field.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FieldError {
    /// The name of the input in the page (`id`, or `group.row.id`).
    pub name: String,
    pub label: String,
    pub message: String,
}

impl Form {
    /// Checks the definition itself; the message names the field at fault.
    pub fn check(&self) -> Result<(), String> {
        if self.steps.is_empty() {
            return Err("form.steps: at least one step".into());
        }
        if self.privacy.trim().is_empty() {
            return Err("form.privacy: the privacy notice must not be empty".into());
        }
        if self.declarations.is_empty() {
            return Err("form.declarations: at least the DPR 445/2000 declaration".into());
        }
        let mut seen: Vec<&str> = Vec::new();
        for step in &self.steps {
            if step.fields.is_empty() {
                return Err(format!("form.steps '{}': no fields", step.id));
            }
            for field in &step.fields {
                let at = format!("form.steps '{}' field '{}'", step.id, field.id);
                if seen.contains(&field.id.as_str()) {
                    return Err(format!("{at}: the id is used twice"));
                }
                check_field(field, &at, &seen)?;
                seen.push(&field.id);
            }
        }
        Ok(())
    }

    /// Every field of every step, in order.
    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        self.steps.iter().flat_map(|s| &s.fields)
    }

    pub fn field(&self, id: &str) -> Option<&Field> {
        self.fields().find(|f| f.id == id)
    }
}

fn check_field(field: &Field, at: &str, earlier: &[&str]) -> Result<(), String> {
    let valid_id = !field.id.is_empty()
        && field
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_id {
        return Err(format!("{at}: id: use lowercase letters, digits and _"));
    }
    if field.label.trim().is_empty() {
        return Err(format!("{at}: label must not be empty"));
    }
    let choices = matches!(field.kind, FieldKind::Select | FieldKind::Radio);
    if choices && field.options.is_empty() {
        return Err(format!("{at}: options: a choice needs options"));
    }
    if !choices && !field.options.is_empty() {
        return Err(format!("{at}: options: only select and radio have options"));
    }
    if field.pattern.is_some() && field.pattern_message.is_none() {
        return Err(format!(
            "{at}: pattern_message: say what a valid answer looks like"
        ));
    }
    if let (Some(min), Some(max)) = (field.min, field.max) {
        if min > max {
            return Err(format!("{at}: min is above max"));
        }
    }
    if let Some(condition) = &field.show_if {
        if !earlier.contains(&condition.field.as_str()) {
            return Err(format!(
                "{at}: show_if: '{}' is not an earlier field",
                condition.field
            ));
        }
        if condition.any_of.is_empty() {
            return Err(format!("{at}: show_if: any_of is empty"));
        }
    }
    match field.kind {
        FieldKind::Group => {
            if field.fields.is_empty() {
                return Err(format!("{at}: fields: a group needs fields"));
            }
            let mut inner: Vec<&str> = Vec::new();
            for sub in &field.fields {
                let sub_at = format!("{at} field '{}'", sub.id);
                if matches!(sub.kind, FieldKind::Group | FieldKind::Attachment) {
                    return Err(format!("{sub_at}: groups hold simple fields only"));
                }
                if inner.contains(&sub.id.as_str()) {
                    return Err(format!("{sub_at}: the id is used twice"));
                }
                check_field(sub, &sub_at, &inner)?;
                inner.push(&sub.id);
            }
        }
        FieldKind::Attachment if field.documents.is_empty() => {
            return Err(format!(
                "{at}: documents: say which documents the slot accepts"
            ));
        }
        _ if !field.fields.is_empty() => {
            return Err(format!("{at}: fields: only a group has fields"));
        }
        _ => {}
    }
    Ok(())
}

/// The answer to `field` as text, for conditions (a ticked checkbox is "si").
fn as_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(true)) => "si".into(),
        Some(Value::Bool(false)) => "no".into(),
        _ => String::new(),
    }
}

/// Whether `field` is asked, given the answers so far.
pub fn visible(field: &Field, answers: &Answers) -> bool {
    match &field.show_if {
        None => true,
        Some(c) => c.any_of.contains(&as_text(answers.get(&c.field))),
    }
}

/// What the browser sent for one step.
pub struct Submitted<'a> {
    pairs: &'a [(String, String)],
}

impl<'a> Submitted<'a> {
    pub fn new(pairs: &'a [(String, String)]) -> Submitted<'a> {
        Submitted { pairs }
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The row numbers sent for a group, in order.
    fn rows(&self, group: &str) -> Vec<usize> {
        let prefix = format!("{group}.");
        let mut rows: Vec<usize> = self
            .pairs
            .iter()
            .filter_map(|(k, _)| k.strip_prefix(&prefix))
            .filter_map(|rest| rest.split('.').next())
            .filter_map(|n| n.parse().ok())
            .filter(|n| *n < 100)
            .collect();
        rows.sort_unstable();
        rows.dedup();
        rows
    }
}

fn read_simple(field: &Field, sent: &Submitted, name: &str) -> Value {
    match field.kind {
        FieldKind::Checkbox => Value::Bool(sent.get(name).is_some()),
        _ => Value::String(sent.get(name).unwrap_or("").trim().to_string()),
    }
}

/// Takes the step's answers from what was sent, into `answers`. Nothing typed is dropped, valid or
/// not (going back keeps it); answers to fields no longer shown are removed.
pub fn read_step(step: &Step, sent: &Submitted, answers: &mut Answers) {
    for field in &step.fields {
        match field.kind {
            FieldKind::Attachment => {}
            FieldKind::Group => {
                let rows: Vec<Value> = sent
                    .rows(&field.id)
                    .into_iter()
                    .map(|n| {
                        let row: serde_json::Map<String, Value> = field
                            .fields
                            .iter()
                            .map(|sub| {
                                let name = format!("{}.{n}.{}", field.id, sub.id);
                                (sub.id.clone(), read_simple(sub, sent, &name))
                            })
                            .collect();
                        Value::Object(row)
                    })
                    .collect();
                answers.insert(field.id.clone(), Value::Array(rows));
            }
            _ => {
                answers.insert(field.id.clone(), read_simple(field, sent, &field.id));
            }
        }
    }
    for field in &step.fields {
        if !visible(field, answers) {
            answers.remove(&field.id);
        }
    }
}

/// Adds an empty row to a group (the "Aggiungi" button), up to its maximum.
pub fn add_row(field: &Field, answers: &mut Answers) {
    let rows = answers
        .entry(field.id.clone())
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(rows) = rows {
        if rows.len() < field.max_items.unwrap_or(20) {
            let row: serde_json::Map<String, Value> = field
                .fields
                .iter()
                .map(|sub| {
                    let empty = match sub.kind {
                        FieldKind::Checkbox => Value::Bool(false),
                        _ => Value::String(String::new()),
                    };
                    (sub.id.clone(), empty)
                })
                .collect();
            rows.push(Value::Object(row));
        }
    }
}

pub fn remove_row(field: &Field, index: usize, answers: &mut Answers) {
    if let Some(Value::Array(rows)) = answers.get_mut(&field.id) {
        if index < rows.len() {
            rows.remove(index);
        }
    }
}

/// Checks the step's answers and normalises the valid ones in place. Returns the problems, in the
/// order of the page.
pub fn validate_step(step: &Step, answers: &mut Answers, today: Date) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for field in &step.fields {
        if !visible(field, answers) {
            continue;
        }
        match field.kind {
            FieldKind::Attachment => {}
            FieldKind::Group => {
                let mut rows = match answers.remove(&field.id) {
                    Some(Value::Array(rows)) => rows,
                    _ => Vec::new(),
                };
                let min = field.min_items.unwrap_or(usize::from(field.required));
                if rows.len() < min {
                    errors.push(FieldError {
                        name: field.id.clone(),
                        label: field.label.clone(),
                        message: format!(
                            "Aggiungi almeno {min} {}.",
                            field.item_label.as_deref().unwrap_or("riga").to_lowercase()
                        ),
                    });
                }
                for (n, row) in rows.iter_mut().enumerate() {
                    if let Value::Object(row) = row {
                        for sub in &field.fields {
                            let name = format!("{}.{n}.{}", field.id, sub.id);
                            let value = row.entry(sub.id.clone()).or_insert(Value::Null);
                            if let Err(message) = check_value(sub, value, today) {
                                errors.push(FieldError {
                                    name,
                                    label: format!(
                                        "{} {}: {}",
                                        field.item_label.as_deref().unwrap_or("Riga"),
                                        n + 1,
                                        sub.label
                                    ),
                                    message,
                                });
                            }
                        }
                    }
                }
                answers.insert(field.id.clone(), Value::Array(rows));
            }
            _ => {
                let value = answers.entry(field.id.clone()).or_insert(Value::Null);
                if let Err(message) = check_value(field, value, today) {
                    errors.push(FieldError {
                        name: field.id.clone(),
                        label: field.label.clone(),
                        message,
                    });
                }
            }
        }
    }
    errors
}

/// Checks one simple answer against its field, normalising it when valid.
fn check_value(field: &Field, value: &mut Value, today: Date) -> Result<(), String> {
    if field.kind == FieldKind::Checkbox {
        let ticked = matches!(value, Value::Bool(true));
        *value = Value::Bool(ticked);
        return if field.required && !ticked {
            Err("Questa casella è obbligatoria.".into())
        } else {
            Ok(())
        };
    }
    // Invisible and reordering characters never count: `U+200B` alone is an empty answer.
    let text = match value {
        Value::String(s) => crate::domain::text::clean(s).trim().to_string(),
        _ => String::new(),
    };
    if text.is_empty() {
        *value = Value::String(String::new());
        return if field.required {
            Err(match field.kind {
                FieldKind::Select | FieldKind::Radio => "Scegli una delle opzioni.".into(),
                _ => "Questo campo è obbligatorio.".into(),
            })
        } else {
            Ok(())
        };
    }
    let chars = text.chars().count();
    if let Some(min) = field.min_length {
        if chars < min {
            return Err(format!("Scrivi almeno {min} caratteri."));
        }
    }
    let max_length = field.max_length.unwrap_or(match field.kind {
        FieldKind::Textarea => 4000,
        _ => 200,
    });
    if chars > max_length {
        return Err(format!("Scrivi al massimo {max_length} caratteri."));
    }
    let normalised = match field.kind {
        FieldKind::Text | FieldKind::Textarea => text,
        FieldKind::Number => {
            let n = parse_number(&text).ok_or("Scrivi un numero, ad esempio 3 o 2,5.")?;
            check_range(field, n, format_number)?;
            format_number(n)
        }
        FieldKind::Money => {
            let cents =
                parse_euro(&text).ok_or("Scrivi un importo in euro, ad esempio 12.500,00.")?;
            check_range(field, cents as f64 / 100.0, |v| {
                format_euro((v * 100.0).round() as i64)
            })?;
            format!("{}.{:02}", cents / 100, cents % 100)
        }
        FieldKind::Date => {
            let date = parse_date(&text).ok_or("Scrivi una data valida, ad esempio 31/12/2026.")?;
            match field.date {
                Some(DateRule::Passata) if date > today => {
                    return Err("La data non può essere nel futuro.".into())
                }
                Some(DateRule::Futura) if date < today => {
                    return Err("La data non può essere nel passato.".into())
                }
                _ => {}
            }
            date.to_string()
        }
        FieldKind::CodiceFiscale => CodiceFiscale::parse(&text)
            .map_err(|_| "Il codice fiscale non è valido: controlla i 16 caratteri.".to_string())?
            .as_str()
            .to_string(),
        FieldKind::Email => check_email(&text)?,
        FieldKind::Phone => check_phone(&text)?,
        FieldKind::Select | FieldKind::Radio => {
            if !field.options.iter().any(|o| o.value == text) {
                return Err("Scegli una delle opzioni.".into());
            }
            text
        }
        FieldKind::Checkbox | FieldKind::Group | FieldKind::Attachment => text,
    };
    if let (Some(pattern), Some(message)) = (&field.pattern, &field.pattern_message) {
        if !pattern.matches(&normalised) {
            return Err(message.clone());
        }
    }
    *value = Value::String(normalised);
    Ok(())
}

fn check_range(field: &Field, n: f64, show: impl Fn(f64) -> String) -> Result<(), String> {
    match (field.min, field.max) {
        (Some(min), Some(max)) if n < min || n > max => Err(format!(
            "Scrivi un valore tra {} e {}.",
            show(min),
            show(max)
        )),
        (Some(min), None) if n < min => Err(format!("Scrivi un valore di almeno {}.", show(min))),
        (None, Some(max)) if n > max => {
            Err(format!("Scrivi un valore di al massimo {}.", show(max)))
        }
        _ => Ok(()),
    }
}

/// An e-mail address as typed, or the Italian message saying how to write it.
pub fn check_email(text: &str) -> Result<String, String> {
    if !valid_email(text) {
        return Err("Scrivi un indirizzo e-mail valido, ad esempio nome@esempio.it.".into());
    }
    Ok(text.to_string())
}

/// A phone number without spaces, dashes, dots or slashes, or the Italian message.
pub fn check_phone(text: &str) -> Result<String, String> {
    let compact: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '/'))
        .collect();
    let digits = compact.strip_prefix('+').unwrap_or(&compact);
    if digits.len() < 6 || digits.len() > 15 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err("Scrivi un numero di telefono valido, ad esempio 333 1234567.".into());
    }
    Ok(compact)
}

fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c == ',' || c == ';')
        && !domain.contains('@')
}

/// "2,5", "3", "1.000" (Italian) as a number.
pub fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    let canonical = if s.contains(',') {
        s.replace('.', "").replace(',', ".")
    } else {
        s.to_string()
    };
    canonical
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && n.abs() < 1e12)
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n}")
    }
}

/// An amount in euro as people write it ("12.500,00", "12500", "12500.5", "€ 1.234,56") in cents.
pub fn parse_euro(s: &str) -> Option<i64> {
    let s: String = s
        .trim()
        .trim_start_matches('€')
        .trim_end_matches('€')
        .trim()
        .chars()
        .filter(|c| *c != ' ')
        .collect();
    if s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == ',')
    {
        return None;
    }
    let (whole, decimals) = if let Some((w, d)) = s.rsplit_once(',') {
        (w.to_string(), d.to_string())
    } else {
        match s.rsplit_once('.') {
            // One dot followed by one or two digits is a decimal point ("12500.5").
            Some((w, d)) if d.len() <= 2 && !w.contains('.') => (w.to_string(), d.to_string()),
            _ => (s.clone(), String::new()),
        }
    };
    if decimals.len() > 2 || decimals.contains('.') {
        return None;
    }
    // Thousands separators must sit every three digits.
    let groups: Vec<&str> = whole.split('.').collect();
    if groups.len() > 1
        && (groups[0].is_empty() || groups[0].len() > 3 || groups[1..].iter().any(|g| g.len() != 3))
    {
        return None;
    }
    let digits: String = groups.concat();
    if digits.is_empty() || digits.len() > 12 {
        return None;
    }
    let whole: i64 = digits.parse().ok()?;
    let cents: i64 = match decimals.len() {
        0 => 0,
        1 => decimals.parse::<i64>().ok()? * 10,
        _ => decimals.parse().ok()?,
    };
    Some(whole * 100 + cents)
}

/// Cents as "12.500,00 €".
pub fn format_euro(cents: i64) -> String {
    format!("{} €", format_euro_plain(cents))
}

/// Cents as "12.500,00", for an input.
pub fn format_euro_plain(cents: i64) -> String {
    let whole = (cents / 100).abs().to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push('.');
        }
        grouped.push(c);
    }
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{grouped},{:02}", (cents % 100).abs())
}

/// "2026-03-12" or "12/03/2026" as a date.
pub fn parse_date(s: &str) -> Option<Date> {
    let s = s.trim();
    let (y, m, d) = if let Some((y, rest)) = s.split_once('-') {
        let (m, d) = rest.split_once('-')?;
        (y, m, d)
    } else {
        let mut parts = s.split(['/', '.']);
        let d = parts.next()?;
        let m = parts.next()?;
        let y = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        (y, m, d)
    };
    if y.len() != 4 {
        return None;
    }
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
}

/// An answer as the summary and the receipt show it.
pub fn display(field: &Field, value: Option<&Value>) -> String {
    match (field.kind, value) {
        (FieldKind::Checkbox, Some(Value::Bool(true))) => "Sì".into(),
        (FieldKind::Checkbox, _) => "No".into(),
        (_, Some(Value::String(s))) if s.is_empty() => "—".into(),
        (FieldKind::Money, Some(Value::String(s))) => {
            parse_euro(s).map(format_euro).unwrap_or_else(|| s.clone())
        }
        (FieldKind::Date, Some(Value::String(s))) => {
            parse_date(s).map(long_date).unwrap_or_else(|| s.clone())
        }
        (FieldKind::Select | FieldKind::Radio, Some(Value::String(s))) => field
            .options
            .iter()
            .find(|o| &o.value == s)
            .map(|o| o.label.clone())
            .unwrap_or_else(|| s.clone()),
        (_, Some(Value::String(s))) => s.clone(),
        _ => "—".into(),
    }
}

/// An answer as an input shows it again (Italian amounts, ISO dates for the date picker).
pub fn input_value(field: &Field, value: Option<&Value>) -> String {
    match (field.kind, value) {
        (FieldKind::Money, Some(Value::String(s))) => match s.split_once('.') {
            Some((w, d)) if d.len() == 2 && w.chars().all(|c| c.is_ascii_digit()) => parse_euro(s)
                .map(format_euro_plain)
                .unwrap_or_else(|| s.clone()),
            _ => s.clone(),
        },
        (_, Some(Value::String(s))) => s.clone(),
        _ => String::new(),
    }
}

/// One line of the summary: a label and the answer; a group gives one line per row and field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryLine {
    pub label: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummarySection {
    pub title: String,
    pub step: usize,
    pub lines: Vec<SummaryLine>,
}

pub fn summary(form: &Form, answers: &Answers) -> Vec<SummarySection> {
    form.steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let mut lines = Vec::new();
            for field in step.fields.iter().filter(|f| visible(f, answers)) {
                match field.kind {
                    FieldKind::Attachment => {}
                    FieldKind::Group => {
                        let rows = match answers.get(&field.id) {
                            Some(Value::Array(rows)) => rows.as_slice(),
                            _ => &[],
                        };
                        if rows.is_empty() {
                            lines.push(SummaryLine {
                                label: field.label.clone(),
                                value: "Nessuno".into(),
                            });
                        }
                        for (n, row) in rows.iter().enumerate() {
                            let parts: Vec<String> = field
                                .fields
                                .iter()
                                .map(|sub| {
                                    format!("{}: {}", sub.label, display(sub, row.get(&sub.id)))
                                })
                                .collect();
                            lines.push(SummaryLine {
                                label: format!(
                                    "{} {}",
                                    field.item_label.as_deref().unwrap_or("Riga"),
                                    n + 1
                                ),
                                value: parts.join("; "),
                            });
                        }
                    }
                    _ => lines.push(SummaryLine {
                        label: field.label.clone(),
                        value: display(field, answers.get(&field.id)),
                    }),
                }
            }
            SummarySection {
                title: step.title.clone(),
                step: i + 1,
                lines,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn euro_as_italians_write_it() {
        assert_eq!(parse_euro("12.500,00"), Some(1_250_000));
        assert_eq!(parse_euro("12500"), Some(1_250_000));
        assert_eq!(parse_euro("12500,5"), Some(1_250_050));
        assert_eq!(parse_euro("12500.50"), Some(1_250_050));
        assert_eq!(parse_euro("€ 1.234,56"), Some(123_456));
        assert_eq!(parse_euro("1.234.567"), Some(123_456_700));
        assert_eq!(parse_euro("12,345"), None);
        assert_eq!(parse_euro("1.23.4"), None);
        assert_eq!(parse_euro("dieci"), None);
        assert_eq!(parse_euro("-5"), None);
        assert_eq!(format_euro(1_250_000), "12.500,00 €");
        assert_eq!(format_euro(5), "0,05 €");
    }

    proptest! {
        #[test]
        fn any_amount_reads_back(cents in 0i64..100_000_000_000) {
            prop_assert_eq!(parse_euro(&format_euro_plain(cents)), Some(cents));
            prop_assert_eq!(parse_euro(&format_euro(cents)), Some(cents));
        }
    }

    #[test]
    fn dates_in_both_forms() {
        let d = Date::from_calendar_date(2026, time::Month::March, 12).ok();
        assert_eq!(parse_date("2026-03-12"), d);
        assert_eq!(parse_date("12/03/2026"), d);
        assert_eq!(parse_date("31/02/2026"), None);
        assert_eq!(parse_date("12/03/26"), None);
    }

    fn field(kind: FieldKind) -> Field {
        Field {
            id: "x".into(),
            label: "X".into(),
            kind,
            required: true,
            help: None,
            prefill: None,
            min: None,
            max: None,
            min_length: None,
            max_length: None,
            pattern: None,
            pattern_message: None,
            date: None,
            options: Vec::new(),
            show_if: None,
            fields: Vec::new(),
            min_items: None,
            max_items: None,
            item_label: None,
            documents: Vec::new(),
            autocomplete: None,
        }
    }

    #[test]
    fn answers_are_checked_and_normalised() {
        let today = Date::from_calendar_date(2026, time::Month::November, 22).unwrap_or(Date::MIN);
        let mut money = field(FieldKind::Money);
        money.max = Some(40000.0);
        let mut v = Value::String("12.500,5".into());
        assert_eq!(check_value(&money, &mut v, today), Ok(()));
        assert_eq!(v, Value::String("12500.50".into()));
        let mut v = Value::String("45.000".into());
        assert!(check_value(&money, &mut v, today).is_err());

        let mut cf = field(FieldKind::CodiceFiscale);
        let mut v = Value::String("rssmra80a01h501u".into());
        assert_eq!(check_value(&cf, &mut v, today), Ok(()));
        assert_eq!(v, Value::String("RSSMRA80A01H501U".into()));
        cf.required = false;
        let mut v = Value::String("RSSMRA80A01H501X".into());
        assert!(check_value(&cf, &mut v, today).is_err());

        let mut born = field(FieldKind::Date);
        born.date = Some(DateRule::Passata);
        let mut v = Value::String("01/01/2030".into());
        assert!(check_value(&born, &mut v, today).is_err());

        let mut v = Value::String(String::new());
        let err = check_value(&field(FieldKind::Text), &mut v, today);
        assert_eq!(err, Err("Questo campo è obbligatorio.".into()));

        let mut cap = field(FieldKind::Text);
        cap.pattern = Pattern::new("[0-9]{5}").ok();
        cap.pattern_message = Some("Il CAP è di 5 cifre.".into());
        let mut v = Value::String("1234".into());
        assert_eq!(
            check_value(&cap, &mut v, today),
            Err("Il CAP è di 5 cifre.".into())
        );
    }
}
