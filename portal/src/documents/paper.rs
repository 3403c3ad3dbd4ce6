//! The portal's own paper forms (`forms/paper/*.toml`): printed prefilled as a PDF with a QR code
//! (form, version, the pratica it belongs to) and four registration marks; read back from a photo
//! or a scan by `intake::form`; each value read is then checked for its kind (a codice fiscale's
//! check character, a date, a number) and compared with what the pratica says.
//!
//! The layout of a form is computed from its list of fields, the same way for printing and for
//! reading, so a form's data file holds no coordinates.

use std::path::{Path, PathBuf};

use intake::form::{FieldReading, Layout, Rect, Zone};
use qrcode::{EcLevel, QrCode};
use serde::{Deserialize, Serialize};

use crate::domain::CodiceFiscale;
use crate::pdf::{PdfError, Writer, PAGE_H, PAGE_W};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Testo,
    CodiceFiscale,
    Data,
    Numero,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PaperField {
    pub id: String,
    pub label: String,
    pub kind: Kind,
    /// Where the printed value comes from: an answer of the pratica (or a value the page gives).
    pub from: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PaperForm {
    pub code: String,
    pub version: u32,
    /// The service whose pratiche it belongs to, if any.
    pub service: Option<String>,
    pub title: String,
    pub intro: String,
    /// The signature box's label; no box when absent.
    pub signature: Option<String>,
    pub fields: Vec<PaperField>,
}

#[derive(Debug, Clone, Default)]
pub struct PaperForms {
    pub forms: Vec<PaperForm>,
}

const MARK: f32 = 16.0;
/// Clear of the text (which stops at 420 points) and of the top-right mark by its quiet zone.
const QR: Rect = Rect {
    x: 440.0,
    y: 60.0,
    w: 90.0,
    h: 90.0,
};
const FIRST_FIELD: f32 = 230.0;
const FIELD_STEP: f32 = 54.0;
const BOX_X: f32 = 60.0;
const BOX_W: f32 = 400.0;
const BOX_H: f32 = 26.0;

/// The field's label baseline, for field `i`.
fn field_top(i: usize) -> f32 {
    FIRST_FIELD + FIELD_STEP * i as f32
}

fn charset(kind: Kind) -> Option<String> {
    match kind {
        Kind::Testo => None,
        Kind::CodiceFiscale => Some("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".into()),
        Kind::Data => Some("0123456789/".into()),
        Kind::Numero => Some("0123456789,.".into()),
    }
}

impl PaperForm {
    /// Where everything is on the page.
    pub fn layout(&self) -> Layout {
        let corner = |x: f32, y: f32| Rect {
            x,
            y,
            w: MARK,
            h: MARK,
        };
        let fields = self
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| Zone {
                id: f.id.clone(),
                // Inside the printed box, clear of its border.
                rect: Rect {
                    x: BOX_X + 3.0,
                    y: field_top(i) + 6.0 + 3.0,
                    w: BOX_W - 6.0,
                    h: BOX_H - 6.0,
                },
                charset: charset(f.kind),
            })
            .collect();
        let signature = self.signature.as_ref().map(|_| Rect {
            x: 300.0,
            y: field_top(self.fields.len()) + 6.0,
            w: 235.0,
            h: 70.0,
        });
        Layout {
            marks: [
                corner(24.0, 24.0),
                corner(PAGE_W - 24.0 - MARK, 24.0),
                corner(PAGE_W - 24.0 - MARK, PAGE_H - 24.0 - MARK),
                corner(24.0, PAGE_H - 24.0 - MARK),
            ],
            qr: QR,
            fields,
            signature,
        }
    }

    /// What the QR code says: `SPORTELLO|<form>|<version>|<reference>`.
    pub fn code_for(&self, reference: &str) -> String {
        format!("SPORTELLO|{}|{}|{reference}", self.code, self.version)
    }

    /// The form as a PDF, each field printed with `value_of(field)`; `reference` is the pratica
    /// (or the delegation) it belongs to.
    pub fn pdf(
        &self,
        ente_name: &str,
        reference: &str,
        value_of: &dyn Fn(&PaperField) -> String,
    ) -> Result<Vec<u8>, PdfError> {
        let layout = self.layout();
        let mut w = Writer::for_reading_back();
        for m in &layout.marks {
            w.rect_top(m.x, m.y, m.w, m.h, true);
        }
        let code =
            QrCode::with_error_correction_level(self.code_for(reference).as_bytes(), EcLevel::M)
                .map_err(|e| PdfError::Pdf(e.to_string()))?;
        let module = QR.w / code.width() as f32;
        w.qr(&code, QR.x, PAGE_H - QR.y, module);
        w.text_top(60.0, 60.0, 10.0, false, ente_name);
        w.y = PAGE_H - 72.0;
        // The title and the introduction, wrapped left of the QR code.
        for line in crate::pdf::wrap(&self.title, 45) {
            w.y -= 18.0;
            let y = PAGE_H - w.y;
            w.text_top(60.0, y, 13.0, true, &line);
        }
        w.y -= 6.0;
        // Fixed-width text is wider: clear of the QR code at 66 characters of 9 points.
        for line in crate::pdf::wrap(&self.intro, 66) {
            w.y -= 12.0;
            let y = PAGE_H - w.y;
            w.text_top(60.0, y, 9.0, false, &line);
        }
        for (i, field) in self.fields.iter().enumerate() {
            let top = field_top(i);
            w.text_top(BOX_X, top, 9.0, true, &field.label);
            w.rect_top(BOX_X, top + 6.0, BOX_W, BOX_H, false);
            let value = value_of(field);
            // Every value in the embedded fixed-width bold face: I, l and 1, O and 0, U and O, the
            // accents stand apart; codes and figures a little larger.
            let size = if field.kind == Kind::Testo {
                13.0
            } else {
                14.0
            };
            w.mono_top(BOX_X + 8.0, top + 6.0 + 18.0, size, &value);
        }
        if let (Some(label), Some(r)) = (&self.signature, layout.signature) {
            w.text_top(r.x, r.y - 6.0, 9.0, true, label);
            w.rect_top(r.x, r.y, r.w, r.h, false);
            w.text_top(
                60.0,
                r.y + 20.0,
                9.0,
                false,
                "Luogo e data ____________________",
            );
        }
        w.text_top(
            60.0,
            PAGE_H - 50.0,
            8.0,
            false,
            &format!(
                "Modulo {} v{} — riferimento {reference}",
                self.code, self.version
            ),
        );
        w.finish(&self.title, &format!("Modulo {}", self.code))
    }

    pub fn field(&self, id: &str) -> Option<&PaperField> {
        self.fields.iter().find(|f| f.id == id)
    }
}

/// The parts of a form's QR code: form, version, reference.
pub fn parse_code(code: &str) -> Option<(&str, u32, &str)> {
    let mut parts = code.split('|');
    if parts.next()? != "SPORTELLO" {
        return None;
    }
    let form = parts.next()?;
    let version = parts.next()?.parse().ok()?;
    let reference = parts.next()?;
    parts.next().is_none().then_some((form, version, reference))
}

impl PaperForms {
    pub fn load(forms_dir: &Path) -> Result<PaperForms, String> {
        let dir = forms_dir.join("paper");
        let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect(),
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        };
        paths.sort();
        let mut forms: Vec<PaperForm> = Vec::new();
        for path in paths {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let form: PaperForm =
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            if form.fields.is_empty() || form.fields.len() > 9 {
                return Err(format!(
                    "{}: fields: a form holds 1 to 9 fields on its page",
                    path.display()
                ));
            }
            if forms.iter().any(|f| f.code == form.code) {
                return Err(format!(
                    "{}: code: '{}' is used by another form",
                    path.display(),
                    form.code
                ));
            }
            forms.push(form);
        }
        Ok(PaperForms { forms })
    }

    pub fn get(&self, code: &str) -> Option<&PaperForm> {
        self.forms.iter().find(|f| f.code == code)
    }

    /// The form a QR code names (its version too).
    pub fn for_code(&self, code: &str) -> Option<&PaperForm> {
        let (form, version, _) = parse_code(code)?;
        self.get(form).filter(|f| f.version == version)
    }

    /// The forms of a service.
    pub fn of_service(&self, service: &str) -> Vec<&PaperForm> {
        self.forms
            .iter()
            .filter(|f| f.service.as_deref() == Some(service))
            .collect()
    }
}

/// A value read from a form, as checked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckedField {
    pub id: String,
    pub label: String,
    /// The value as read, normalised for its kind.
    pub value: String,
    pub confidence: u8,
    /// What is wrong with it, for the citizen and the operator (Italian); `None` when all is well.
    pub problem: Option<String>,
    /// What the pratica says, when the two differ.
    pub expected: Option<String>,
}

/// A codice fiscale as read: letters where letters go and digits where digits go (O/0, I/1,
/// S/5, B/8, Z/2, G/6 are the usual confusions), spaces removed.
pub fn fix_codice_fiscale(text: &str) -> String {
    const LETTER_AT: [bool; 16] = [
        true, true, true, true, true, true, false, false, true, false, false, true, false, false,
        false, true,
    ];
    let raw: Vec<char> = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if raw.len() != 16 {
        return raw.into_iter().collect();
    }
    raw.into_iter()
        .zip(LETTER_AT)
        .map(|(c, letter)| match (letter, c) {
            (true, '0') => 'O',
            (true, '1') => 'I',
            (true, '5') => 'S',
            (true, '8') => 'B',
            (true, '2') => 'Z',
            (true, '6') => 'G',
            (true, '3') => 'J',
            (true, '4') => 'A',
            (true, '7') => 'T',
            (false, 'O') | (false, 'D') | (false, 'Q') => '0',
            (false, 'I') | (false, 'L') => '1',
            (false, 'S') => '5',
            (false, 'B') => '8',
            (false, 'Z') => '2',
            (false, 'G') => '6',
            (_, c) => c,
        })
        .collect()
}

/// Pairs OCR mistakes one for the other in a codice fiscale printed in Courier.
const CONFUSED: &[(char, char)] = &[
    ('O', 'Q'),
    ('Q', 'O'),
    ('I', 'J'),
    ('J', 'I'),
    ('I', 'L'),
    ('L', 'I'),
    ('O', 'D'),
    ('D', 'O'),
    ('3', '8'),
    ('8', '3'),
    ('0', '8'),
    ('5', '6'),
    ('6', '5'),
    ('0', '6'),
    ('6', '0'),
    ('0', '9'),
    ('9', '0'),
    ('1', '7'),
    ('7', '1'),
];

/// Letters a check character is misread as, one for another (in any face).
const LOOK_ALIKE: &[&str] = &["OUQDCG0", "ILJT1", "VYU", "BEFPR8", "MNH", "KX", "SZ25"];

/// A codice fiscale read with one mistake (a confused character, or one character too many),
/// mended with its check character: the only valid code one change away, if there is exactly
/// one; failing that, the code whose check character alone was misread as a look-alike (U as O).
/// The caller shows the value as uncertain.
pub fn mend_codice_fiscale(read: &str) -> Option<String> {
    let mut found = mend_candidates(read);
    if found.len() == 1 {
        return Some(found.remove(0));
    }
    if !found.is_empty() || read.len() != 16 || !read.is_ascii() {
        return None;
    }
    let (first, last) = read.split_at(15);
    if !first
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return None;
    }
    let check = char::from(crate::domain::check_character(first.as_bytes()));
    let alike = LOOK_ALIKE
        .iter()
        .any(|group| group.contains(check) && last.chars().all(|c| group.contains(c)));
    let mended = format!("{first}{check}");
    (alike && CodiceFiscale::parse(&mended).is_ok()).then_some(mended)
}

/// The valid codici fiscali one change away from `read`.
fn mend_candidates(read: &str) -> Vec<String> {
    let chars: Vec<char> = read.chars().collect();
    let mut found: Vec<String> = Vec::new();
    let mut consider = |candidate: String| {
        let candidate = fix_codice_fiscale(&candidate);
        if CodiceFiscale::parse(&candidate).is_ok() && !found.contains(&candidate) {
            found.push(candidate);
        }
    };
    match chars.len() {
        17 => {
            for skip in 0..17 {
                consider(
                    chars
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != skip)
                        .map(|(_, c)| *c)
                        .collect(),
                );
            }
        }
        16 => {
            // The check character alone misread (U read O, say): the one the other fifteen give.
            for (i, c) in chars.iter().enumerate() {
                for (from, to) in CONFUSED {
                    if c == from {
                        let mut changed = chars.clone();
                        changed[i] = *to;
                        consider(changed.into_iter().collect());
                    }
                }
            }
        }
        _ => {}
    }
    found
}

fn normalised(kind: Kind, text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match kind {
        Kind::CodiceFiscale => fix_codice_fiscale(&collapsed),
        Kind::Data | Kind::Numero => collapsed.replace(' ', ""),
        Kind::Testo => collapsed,
    }
}

/// What a value means, for comparing: dates as dates, numbers as numbers, text case-blind.
fn comparable(kind: Kind, text: &str) -> String {
    let text = normalised(kind, text);
    match kind {
        Kind::Data => crate::applications::form::parse_date(&text)
            .map(|d| d.to_string())
            .unwrap_or(text),
        Kind::Numero => text.replace(',', "."),
        Kind::CodiceFiscale => text,
        Kind::Testo => text.to_lowercase(),
    }
}

/// The problem of a value of `kind`, if any.
fn invalid(kind: Kind, value: &str) -> Option<&'static str> {
    match kind {
        _ if value.is_empty() => Some("Non si legge nulla in questa casella."),
        Kind::CodiceFiscale if CodiceFiscale::parse(value).is_err() => {
            Some("Il codice fiscale letto non è valido: controlla che sia scritto per intero e leggibile.")
        }
        Kind::Data if crate::applications::form::parse_date(value).is_none() => {
            Some("La data letta non è una data valida (gg/mm/aaaa).")
        }
        Kind::Numero if value.replace(',', ".").parse::<f64>().is_err() => {
            Some("Il numero letto non è valido.")
        }
        _ => None,
    }
}

impl PaperForm {
    /// Whether `text`, read in the box of `field`, can be a right value (for reading again one
    /// that cannot).
    pub fn plausible(&self, field: &str, text: &str) -> bool {
        self.field(field)
            .is_some_and(|f| invalid(f.kind, &normalised(f.kind, text)).is_none())
    }
}

/// Below this mean confidence a value is shown as uncertain.
pub const LOW_CONFIDENCE: u8 = 70;

/// Text as OCR cannot tell it apart: lower case, accents off (é, è and ë alike), I, l, 1 and |
/// one letter (Roman numerals: "II" read "Il"), O and 0 one, apostrophes of any shape with no
/// space around them, punctuation off, spaces collapsed.
pub fn fold(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        let c = match c {
            'à' | 'á' | 'â' | 'ä' | 'ã' | 'å' => 'a',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' | 'l' | '1' | '|' | '!' => 'i',
            'ò' | 'ó' | 'ô' | 'ö' | 'õ' | '0' => 'o',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            'ñ' => 'n',
            '’' | '‘' | '`' | '´' => '\'',
            '.' | ',' | ';' | ':' | '"' | '«' | '»' => ' ',
            c => c,
        };
        out.push(c);
    }
    let collapsed = out.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed
        .replace(" '", "'")
        .replace("' ", "'")
        .replace("rn", "m")
}

/// Whether `read` can be `expected` misread by OCR: the same value for its kind, but for the
/// confusions OCR makes (see [`fold`]); a codice fiscale one character away (its check character
/// tells).
pub fn same(kind: Kind, expected: &str, read: &str) -> bool {
    let read = normalised(kind, read);
    match kind {
        Kind::Testo => fold(expected) == fold(&read),
        Kind::CodiceFiscale => {
            let expected = normalised(kind, expected);
            read == expected
                || mend_candidates(&read).contains(&expected)
                || mend_codice_fiscale(&read).as_deref() == Some(expected.as_str())
        }
        Kind::Numero => {
            let number = |t: &str| t.replace(',', ".").parse::<f64>().ok();
            match (number(expected), number(&read)) {
                (Some(a), Some(b)) => (a - b).abs() < 1e-9,
                _ => false,
            }
        }
        Kind::Data => comparable(kind, expected) == comparable(kind, &read),
    }
}

/// Each field read, checked for its kind and against `expected` (the value the pratica holds).
///
/// What the pratica says is the first hypothesis: if any reading of a box (the chosen one or an
/// alternative) is that value but for OCR's confusions, the box says it. Otherwise the chosen
/// reading is judged: not valid for its kind, different from the pratica (only when read with
/// confidence: an unsure reading is "Lettura incerta", never a difference), or unsure. A box with
/// nothing written in it is fine where the pratica has nothing.
pub fn check(
    form: &PaperForm,
    readings: &[FieldReading],
    expected: &dyn Fn(&PaperField) -> Option<String>,
) -> Vec<CheckedField> {
    form.fields
        .iter()
        .map(|field| {
            let reading = readings.iter().find(|r| r.id == field.id);
            let wanted = expected(field).filter(|e| !e.trim().is_empty());
            let checked = |value: String, confidence: u8, problem: Option<String>| CheckedField {
                id: field.id.clone(),
                label: field.label.clone(),
                value,
                confidence,
                problem,
                expected: None,
            };
            if reading.is_some_and(|r| r.blank) {
                return match &wanted {
                    None => checked(String::new(), 100, None),
                    Some(_) => checked(
                        String::new(),
                        100,
                        Some("Non si legge nulla in questa casella.".into()),
                    ),
                };
            }
            let candidates: Vec<(&str, u8)> = reading
                .map(|r| {
                    std::iter::once((r.text.as_str(), r.confidence))
                        .chain(
                            r.alternatives
                                .iter()
                                .map(|a| (a.text.as_str(), a.confidence)),
                        )
                        .collect()
                })
                .unwrap_or_default();
            if let Some(w) = &wanted {
                if let Some((_, confidence)) = candidates
                    .iter()
                    .find(|(text, _)| same(field.kind, w, text))
                {
                    return checked(normalised(field.kind, w), *confidence, None);
                }
            }
            let mut value = normalised(field.kind, reading.map_or("", |r| r.text.as_str()));
            let mut mended = false;
            if field.kind == Kind::CodiceFiscale && CodiceFiscale::parse(&value).is_err() {
                if let Some(m) = mend_codice_fiscale(&value) {
                    value = m;
                    mended = true;
                }
            }
            let confidence = reading.map_or(0, |r| r.confidence);
            let sure = confidence >= LOW_CONFIDENCE && !mended;
            let differs = wanted
                .as_ref()
                .filter(|e| comparable(field.kind, e) != comparable(field.kind, &value))
                .cloned();
            let invalid = invalid(field.kind, &value);
            let problem = invalid
                .map(str::to_string)
                .or_else(|| {
                    differs
                        .as_ref()
                        .filter(|_| sure)
                        .map(|e| format!("Diverso da quanto scritto nella domanda: «{e}»."))
                })
                .or_else(|| {
                    (!sure || differs.is_some())
                        .then(|| "Lettura incerta: controlla il valore.".to_string())
                });
            CheckedField {
                // The pratica's value is shown only beside a difference (not an invalid reading).
                expected: differs.filter(|_| sure && invalid.is_none()),
                ..checked(value, confidence, problem)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> PaperForms {
        PaperForms::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../forms")).unwrap()
    }

    #[test]
    fn the_shipped_forms_load_and_their_zones_fit_the_page() {
        let forms = shipped();
        assert!(forms.get("delega").is_some() && forms.get("autodichiarazione-sad").is_some());
        for form in &forms.forms {
            let layout = form.layout();
            assert!(layout.qr.x > 420.0 && layout.qr.x + layout.qr.w < layout.marks[1].x - 12.0);
            let bottom = layout.signature.map_or(0.0, |s| s.y + s.h).max(
                layout
                    .fields
                    .iter()
                    .map(|z| z.rect.y + z.rect.h)
                    .fold(0.0, f32::max),
            );
            assert!(bottom < PAGE_H - 60.0, "{}: {bottom}", form.code);
            assert!(form.pdf("Comune", "x", &|f| f.label.clone()).is_ok());
        }
    }

    #[test]
    fn the_printed_form_has_a_readable_title_and_every_font_embedded() {
        let form = shipped().get("autodichiarazione-sad").cloned().unwrap();
        let pdf = form.pdf("Comune", "x", &|f| f.label.clone()).unwrap();
        let doc = lopdf::Document::load_mem(&pdf).unwrap();
        let info = doc
            .trailer
            .get(b"Info")
            .and_then(|o| o.as_reference())
            .unwrap();
        let title = doc.get_dictionary(info).unwrap().get(b"Title").unwrap();
        let lopdf::Object::String(bytes, _) = title else {
            panic!("title: {title:?}")
        };
        // UTF-16BE with its byte-order mark: "notorietà", not "notorietÃ ".
        let units: Vec<u16> = bytes[2..]
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(bytes[..2], [0xFE, 0xFF]);
        assert_eq!(String::from_utf16(&units).unwrap(), form.title);
        // Every font travels with the file: the page prints the same on every machine.
        let fonts: Vec<&lopdf::Dictionary> = doc
            .objects
            .values()
            .filter_map(|o| o.as_dict().ok())
            .filter(|d| d.get(b"Type").and_then(|t| t.as_name()).ok() == Some(b"Font".as_slice()))
            .collect();
        assert!(fonts.len() >= 2);
        for font in fonts {
            let descriptor = font
                .get(b"FontDescriptor")
                .and_then(|r| r.as_reference())
                .and_then(|r| doc.get_dictionary(r))
                .unwrap_or_else(|_| panic!("not embedded: {font:?}"));
            assert!(descriptor.has(b"FontFile2"), "{descriptor:?}");
        }
    }

    #[test]
    fn a_codice_fiscale_read_with_one_mistake_is_mended_by_its_check_character() {
        // Mistakes seen in the OCR benchmark: a character too many, O for Q, 3 for 8.
        for (read, on_paper) in [
            ("JINBAAA80A01H501X", "JNBAAA80A01H501X"),
            ("TNBAAA80A01H501O", "TNBAAA80A01H501Q"),
            ("UNBAAA80A01H5015S", "UNBAAA80A01H501S"),
            ("RSSMRA30A01H501U", "RSSMRA80A01H501U"),
        ] {
            assert_eq!(
                mend_codice_fiscale(read).as_deref(),
                Some(on_paper),
                "{read}"
            );
        }
        // The check character alone misread as a look-alike (U as O, in Courier): mended by the
        // other fifteen; one that looks nothing like it is not.
        assert_eq!(
            mend_codice_fiscale("RSSMRA80A01H501O").as_deref(),
            Some("RSSMRA80A01H501U")
        );
        assert_eq!(mend_codice_fiscale("RSSMRA80A01H501K"), None);
        assert_eq!(mend_candidates("BOBAAA80A01H501F").len(), 2);
        assert_eq!(mend_codice_fiscale("BOBAAA80A01H501F"), None);
    }

    #[test]
    fn what_ocr_confuses_is_no_difference_and_an_unsure_reading_is_never_one() {
        let form = shipped().get("autodichiarazione-sad").cloned().unwrap();
        let read = |id: &str, text: &str, confidence, alternatives: &[(&str, u8)]| FieldReading {
            id: id.into(),
            text: text.into(),
            confidence,
            alternatives: alternatives
                .iter()
                .map(|(t, c)| intake::ocr::Reading {
                    text: (*t).into(),
                    confidence: *c,
                })
                .collect(),
            ..FieldReading::default()
        };
        let pratica = |f: &PaperField| match f.id.as_str() {
            "cognome" => Some("Dell'Acqua".to_string()),
            "nome" => Some("Zoë".to_string()),
            "codice_fiscale" => Some("RSSMRA80A01H501U".to_string()),
            "indirizzo" => Some("Corso Vittorio Emanuele II 128".to_string()),
            "ore" => Some("7,5".to_string()),
            _ => None,
        };
        let readings = vec![
            read("cognome", "Dell’ Acqua", 88, &[]),
            read("nome", "Zoé", 91, &[]),
            // The check character misread (Courier's U as O).
            read("codice_fiscale", "RSSMRA80A01H501O", 90, &[]),
            read("indirizzo", "Corso Vittorio Emanuele Il 128", 90, &[]),
            // The first reading wrong, another preparation of the picture right.
            read("ore", "7.9", 75, &[("7,5", 62)]),
        ];
        let checked = check(&form, &readings, &pratica);
        for c in &checked {
            assert_eq!(c.problem, None, "{c:?}");
            assert_eq!(Some(c.value.clone()), pratica(form.field(&c.id).unwrap()));
        }

        // A reading with no confidence is uncertain, not a difference; a sure one that differs is
        // a difference.
        let readings = vec![read("ore", "88", 0, &[]), read("nome", "Luisa", 93, &[])];
        let checked = check(&form, &readings, &pratica);
        let of = |id: &str| checked.iter().find(|c| c.id == id).unwrap();
        assert!(of("ore").problem.as_deref().unwrap().contains("incerta"));
        assert_eq!(of("ore").expected, None);
        assert!(of("nome").problem.as_deref().unwrap().contains("«Zoë»"));

        // An optional field left empty on the pratica and on the paper: nothing to say; a blank
        // box where the pratica has a value: said.
        let blank = FieldReading {
            id: "ore".into(),
            blank: true,
            ..FieldReading::default()
        };
        let checked = check(&form, std::slice::from_ref(&blank), &|_| None);
        assert_eq!(
            checked.iter().find(|c| c.id == "ore").unwrap().problem,
            None
        );
        let checked = check(&form, &[blank], &pratica);
        assert!(checked
            .iter()
            .find(|c| c.id == "ore")
            .unwrap()
            .problem
            .as_deref()
            .unwrap()
            .contains("nulla"));
    }

    #[test]
    fn a_codice_fiscale_is_mended_where_ocr_confuses_letters_and_digits() {
        assert_eq!(fix_codice_fiscale("RSSMRA8OA0IH5OIU"), "RSSMRA80A01H501U");
        // A J read as 3 where only a letter can be (seen on a colour photo).
        assert_eq!(fix_codice_fiscale("PRBAAA80A01H5013"), "PRBAAA80A01H501J");
        assert_eq!(
            fix_codice_fiscale("rss mra 80a01 h501u"),
            "RSSMRA80A01H501U"
        );
    }

    #[test]
    fn values_are_checked_for_their_kind_and_against_the_pratica() {
        let form = shipped().get("delega").cloned().unwrap();
        let read = |id: &str, text: &str, confidence| FieldReading {
            id: id.into(),
            text: text.into(),
            confidence,
            ..FieldReading::default()
        };
        let readings = vec![
            read("delegante_cognome", "ROSSI", 93),
            read("delegante_nome", "Mario", 91),
            read("delegante_cf", "RSSMRA80A01H501U", 95),
            read("delegato_cognome", "Verdi", 90),
            read("delegato_nome", "Anna", 40),
            read("delegato_cf", "BNCGLI85D52F205X", 95),
            read("fino_al", "31/13/2027", 95),
        ];
        let checked = check(&form, &readings, &|f| match f.id.as_str() {
            "delegante_cognome" => Some("Rossi".into()),
            "delegato_cognome" => Some("Bianchi".into()),
            _ => None,
        });
        let problem = |id: &str| {
            checked
                .iter()
                .find(|c| c.id == id)
                .and_then(|c| c.problem.clone())
        };
        assert_eq!(problem("delegante_cognome"), None, "case does not matter");
        assert_eq!(problem("delegante_cf"), None);
        assert!(problem("delegato_cognome").unwrap().contains("«Bianchi»"));
        assert!(problem("delegato_nome").unwrap().contains("incerta"));
        assert!(problem("delegato_cf").unwrap().contains("non è valido"));
        assert!(problem("fino_al").unwrap().contains("data"));
        assert_eq!(
            parse_code("SPORTELLO|delega|1|abc"),
            Some(("delega", 1, "abc"))
        );
        assert_eq!(parse_code("https://example.it"), None);
    }
}

/// The form `code` of the pratica `id`'s service, printed with the pratica's answers: what the
/// citizen prints, signs and sends back as a photo or a scan.
#[actix_web::get("/domande/{id}/moduli/{code}.pdf")]
async fn printed(
    state: actix_web::web::Data<crate::server::AppState>,
    req: actix_web::HttpRequest,
    principal: crate::auth::Principal,
    path: actix_web::web::Path<(String, String)>,
) -> Result<actix_web::HttpResponse, crate::web::error::AppError> {
    use crate::delegations::Scope;
    use crate::web::error::AppError;
    let (id, code) = path.into_inner();
    let (_, app, service) = crate::applications::flow::owned(
        &state,
        &req,
        &principal,
        &id,
        &[Scope::Domande, Scope::Integrazioni],
    )
    .await?;
    let form = state
        .paper_forms
        .get(&code)
        .filter(|f| f.service.as_deref() == Some(service.code.as_str()))
        .ok_or(AppError::NotFound)?;
    let ente: Option<String> = sqlx::query_scalar("SELECT name FROM enti WHERE code = $1")
        .bind(&app.ente_code)
        .fetch_optional(&state.db.pool)
        .await?;
    let value_of = |f: &PaperField| match f.from.as_deref().and_then(|from| app.answers.get(from)) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string().replace('.', ","),
        _ => String::new(),
    };
    let pdf = form
        .pdf(&ente.unwrap_or_default(), &app.id, &value_of)
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(actix_web::HttpResponse::Ok()
        .content_type("application/pdf")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{}.pdf\"", form.code),
        ))
        .body(pdf))
}

pub fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.service(printed);
}
