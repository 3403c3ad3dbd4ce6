//! PDF inspection with lopdf: a file is refused when it is not a PDF, cannot be parsed, is
//! encrypted, carries active or hidden content (JavaScript, launch actions, embedded files, rich
//! media, XFA forms) or has more pages than the policy allows; otherwise its page count and its
//! text layer, when it has one, come back — or, for a scan without one, its pages' pictures
//! (`scan`).

use lopdf::{Dictionary, Document, Object};

use crate::image::ImagePolicy;

/// The limits a PDF must respect.
#[derive(Debug, Clone, Copy)]
pub struct PdfPolicy {
    pub max_pages: usize,
    /// The most decompressed content read from one page when extracting text.
    pub max_page_content_bytes: usize,
}

impl Default for PdfPolicy {
    fn default() -> Self {
        PdfPolicy {
            max_pages: 50,
            max_page_content_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Why a PDF is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PdfRefusal {
    NotPdf,
    Unreadable,
    /// Cut short, or missing the objects its pages need (an upload or a save interrupted).
    Damaged,
    Encrypted,
    JavaScript,
    LaunchAction,
    EmbeddedFiles,
    RichMedia,
    Xfa,
    TooManyPages {
        pages: usize,
        max: usize,
    },
    /// A page whose content inflates beyond the policy's bound (a decompression bomb).
    Bomb,
}

impl PdfRefusal {
    /// What the citizen reads: what was wrong and what to do.
    pub fn message(&self) -> String {
        match self {
            PdfRefusal::NotPdf => "Il file non è un PDF valido. Carica un PDF, o una foto JPEG o PNG del documento.".into(),
            PdfRefusal::Unreadable => "Il PDF è danneggiato e non si riesce a leggere. Prova a salvarlo di nuovo o a stamparlo in PDF, poi ricaricalo.".into(),
            PdfRefusal::Damaged => "Il PDF è incompleto o danneggiato: forse il salvataggio o lo scaricamento si è interrotto. Aprilo per controllare che si veda tutto, salvalo di nuovo (o stampalo in PDF) e ricaricalo.".into(),
            PdfRefusal::Encrypted => "Il PDF è protetto da password. Togli la protezione (o stampalo in PDF) e ricaricalo.".into(),
            PdfRefusal::JavaScript | PdfRefusal::LaunchAction => "Il PDF contiene codice o comandi automatici, che non accettiamo per sicurezza. Stampalo in PDF (\"Stampa\" → \"Salva come PDF\") e ricarica quel file.".into(),
            PdfRefusal::EmbeddedFiles => "Il PDF contiene altri file allegati al suo interno. Carica ogni documento come file separato.".into(),
            PdfRefusal::RichMedia => "Il PDF contiene video o contenuti multimediali. Stampalo in PDF e ricarica quel file.".into(),
            PdfRefusal::Xfa => "Il PDF è un modulo dinamico (XFA) che non si può leggere in sicurezza. Stampalo in PDF e ricarica quel file.".into(),
            PdfRefusal::TooManyPages { pages, max } => format!("Il PDF ha {pages} pagine: il massimo è {max}. Dividilo in più file."),
            PdfRefusal::Bomb => "Il PDF contiene pagine che, aperte, diventano enormi: non si può leggere in sicurezza. Stampalo in PDF e ricarica quel file.".into(),
        }
    }
}

/// An accepted PDF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdfReport {
    pub pages: usize,
    /// The text layer, when the file has one (a scan has none: it goes to OCR).
    pub text: Option<String>,
    /// Without a text layer: each page's picture (page number, grey PNG), for OCR.
    pub scans: Vec<(u32, Vec<u8>)>,
}

/// Inspects `bytes` as a PDF under `policy`; the pictures of a scan are decoded under `images`.
pub fn inspect(
    bytes: &[u8],
    policy: &PdfPolicy,
    images: &ImagePolicy,
) -> Result<PdfReport, PdfRefusal> {
    // The header may follow a little junk, as readers allow; nothing else is a PDF.
    let head = &bytes[..bytes.len().min(1024)];
    if !head.windows(5).any(|w| w == b"%PDF-") {
        return Err(PdfRefusal::NotPdf);
    }
    if !complete(bytes) {
        return Err(PdfRefusal::Damaged);
    }
    let doc = Document::load_mem(bytes).map_err(|e| match e {
        lopdf::Error::Decryption(_) | lopdf::Error::InvalidPassword => PdfRefusal::Encrypted,
        // A protection lopdf cannot open still says so in its trailer.
        _ if bytes.windows(8).any(|w| w == b"/Encrypt") => PdfRefusal::Encrypted,
        _ => PdfRefusal::Unreadable,
    })?;
    if doc.was_encrypted() || doc.is_encrypted() || doc.trailer.get(b"Encrypt").is_ok() {
        return Err(PdfRefusal::Encrypted);
    }
    for object in doc.objects.values() {
        walk(object, 0)?;
    }
    let pages = doc.get_pages();
    if pages.is_empty() {
        return Err(PdfRefusal::Unreadable);
    }
    if pages.len() > policy.max_pages {
        return Err(PdfRefusal::TooManyPages {
            pages: pages.len(),
            max: policy.max_pages,
        });
    }
    // Every page's content must be there: a reader that rebuilt a broken cross-reference table
    // may have found the pages but not what is drawn on them.
    for id in pages.values() {
        if doc
            .get_page_contents(*id)
            .iter()
            .any(|content| doc.get_object(*content).is_err())
        {
            return Err(PdfRefusal::Damaged);
        }
    }
    let numbers: Vec<u32> = pages.keys().copied().collect();
    let text = match doc.extract_text_with_limit(&numbers, policy.max_page_content_bytes) {
        Ok(t) => Some(t.trim().to_string()).filter(|t| !t.is_empty()),
        Err(lopdf::Error::Decompress(lopdf::DecompressError::MemoryLimitExceeded { .. })) => {
            return Err(PdfRefusal::Bomb)
        }
        // No text layer that can be read: a scan, for OCR.
        Err(_) => None,
    };
    let scans = match text {
        Some(_) => Vec::new(),
        None => crate::scan::page_images(&doc, images),
    };
    Ok(PdfReport {
        pages: pages.len(),
        text,
        scans,
    })
}

/// Whether the file ends as a PDF does: `startxref` and `%%EOF` in its last 2 KiB (a little
/// trailing junk allowed). A file cut short lacks them; its earlier objects may still parse.
fn complete(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(2048)..];
    let has = |needle: &[u8]| tail.windows(needle.len()).any(|w| w == needle);
    has(b"startxref") && has(b"%%EOF")
}

fn name_is(dict: &Dictionary, key: &[u8], value: &[u8]) -> bool {
    dict.get(key)
        .and_then(Object::as_name)
        .is_ok_and(|n| n == value)
}

/// Checks every dictionary in `object`, nested ones included (inline action dictionaries are not
/// objects of their own). Referenced objects are checked where they stand, so references are not
/// followed; nesting deeper than any real file needs is refused as unreadable.
fn walk(object: &Object, depth: usize) -> Result<(), PdfRefusal> {
    if depth > 64 {
        return Err(PdfRefusal::Unreadable);
    }
    match object {
        Object::Dictionary(d) => walk_dictionary(d, depth),
        Object::Stream(s) => walk_dictionary(&s.dict, depth),
        Object::Array(items) => items.iter().try_for_each(|o| walk(o, depth + 1)),
        _ => Ok(()),
    }
}

fn walk_dictionary(dict: &Dictionary, depth: usize) -> Result<(), PdfRefusal> {
    check_dictionary(dict)?;
    dict.iter().try_for_each(|(_, v)| walk(v, depth + 1))
}

/// Refuses a dictionary that makes the file active or hides content in it.
fn check_dictionary(dict: &Dictionary) -> Result<(), PdfRefusal> {
    if dict.has(b"JS") || dict.has(b"JavaScript") || name_is(dict, b"S", b"JavaScript") {
        return Err(PdfRefusal::JavaScript);
    }
    if name_is(dict, b"S", b"Launch") {
        return Err(PdfRefusal::LaunchAction);
    }
    if dict.has(b"EmbeddedFiles")
        || name_is(dict, b"Type", b"EmbeddedFile")
        || name_is(dict, b"Type", b"Filespec") && dict.has(b"EF")
    {
        return Err(PdfRefusal::EmbeddedFiles);
    }
    if name_is(dict, b"Subtype", b"RichMedia") || dict.has(b"RichMediaContent") {
        return Err(PdfRefusal::RichMedia);
    }
    if dict.has(b"XFA") {
        return Err(PdfRefusal::Xfa);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lopdf::content::{Content, Operation};
    use lopdf::{dictionary, Stream};

    /// A PDF of `pages` pages saying `text`, with `extra` added to the catalog.
    fn pdf(pages: usize, text: &str, extra: Option<(&str, Object)>) -> Vec<u8> {
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
        });
        let mut kids = Vec::new();
        for _ in 0..pages {
            let content = Content {
                operations: vec![
                    Operation::new("BT", vec![]),
                    Operation::new("Tf", vec!["F1".into(), 12.into()]),
                    Operation::new("Td", vec![72.into(), 720.into()]),
                    Operation::new("Tj", vec![Object::string_literal(text)]),
                    Operation::new("ET", vec![]),
                ],
            };
            let stream = doc.add_object(Stream::new(
                dictionary! {},
                content.encode().unwrap_or_default(),
            ));
            let page = doc.add_object(dictionary! {
                "Type" => "Page", "Parent" => pages_id, "Contents" => stream,
            });
            kids.push(Object::from(page));
        }
        let count = kids.len() as i64;
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! {
                "Type" => "Pages", "Kids" => kids, "Count" => count,
                "Resources" => dictionary! { "Font" => dictionary! { "F1" => font } },
                "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            }),
        );
        let mut catalog = dictionary! { "Type" => "Catalog", "Pages" => pages_id };
        if let Some((key, value)) = extra {
            catalog.set(key, value);
        }
        let catalog = doc.add_object(catalog);
        doc.trailer.set("Root", catalog);
        let mut out = Vec::new();
        let _ = doc.save_to(&mut out);
        out
    }

    #[test]
    fn a_plain_pdf_is_accepted_with_its_text() {
        let report = inspect(
            &pdf(2, "Verbale di invalidita civile", None),
            &PdfPolicy::default(),
            &ImagePolicy::default(),
        );
        assert_eq!(report.as_ref().map(|r| r.pages), Ok(2), "{report:?}");
        assert!(report
            .ok()
            .and_then(|r| r.text)
            .is_some_and(|t| t.contains("Verbale di invalidita civile")));
    }

    #[test]
    fn active_or_hidden_content_is_refused() {
        let js =
            dictionary! { "S" => "JavaScript", "JS" => Object::string_literal("app.alert(1)") };
        let launch = dictionary! { "S" => "Launch", "F" => Object::string_literal("calc.exe") };
        let cases = [
            (
                (
                    "Annot",
                    Object::Dictionary(dictionary! { "Subtype" => "RichMedia" }),
                ),
                PdfRefusal::RichMedia,
            ),
            (
                ("OpenAction", Object::Dictionary(js)),
                PdfRefusal::JavaScript,
            ),
            (
                ("OpenAction", Object::Dictionary(launch)),
                PdfRefusal::LaunchAction,
            ),
            (
                (
                    "Names",
                    Object::Dictionary(dictionary! { "EmbeddedFiles" => dictionary! {} }),
                ),
                PdfRefusal::EmbeddedFiles,
            ),
            (
                (
                    "AcroForm",
                    Object::Dictionary(dictionary! { "XFA" => Object::string_literal("<xdp/>") }),
                ),
                PdfRefusal::Xfa,
            ),
        ];
        for ((key, value), refusal) in cases {
            assert_eq!(
                inspect(
                    &pdf(1, "x", Some((key, value))),
                    &PdfPolicy::default(),
                    &ImagePolicy::default()
                ),
                Err(refusal)
            );
        }
    }

    #[test]
    fn too_many_pages_not_a_pdf_and_garbage_are_refused_clearly() {
        let policy = PdfPolicy {
            max_pages: 3,
            ..PdfPolicy::default()
        };
        assert_eq!(
            inspect(&pdf(4, "x", None), &policy, &ImagePolicy::default()),
            Err(PdfRefusal::TooManyPages { pages: 4, max: 3 })
        );
        assert_eq!(
            inspect(b"\x89PNG\r\n\x1a\n", &policy, &ImagePolicy::default()),
            Err(PdfRefusal::NotPdf)
        );
        assert_eq!(
            inspect(
                b"%PDF-1.7\n1 0 obj << /Type /Catalog",
                &policy,
                &ImagePolicy::default()
            ),
            Err(PdfRefusal::Damaged)
        );
        assert!(PdfRefusal::Encrypted.message().contains("password"));
    }

    #[test]
    fn a_pdf_cut_short_is_refused_as_damaged() {
        let whole = pdf(2, "Modulo", None);
        assert!(inspect(&whole, &PdfPolicy::default(), &ImagePolicy::default()).is_ok());
        for cut in [whole.len() / 2, whole.len() - 40, whole.len() * 3 / 4] {
            assert_eq!(
                inspect(
                    &whole[..cut],
                    &PdfPolicy::default(),
                    &ImagePolicy::default()
                ),
                Err(PdfRefusal::Damaged),
                "cut at {cut} of {}",
                whole.len()
            );
        }
        // Trailing junk after %%EOF, as some scanners write, is still accepted.
        let mut padded = whole.clone();
        padded.extend_from_slice(b"\r\n\0\0\0");
        assert!(inspect(&padded, &PdfPolicy::default(), &ImagePolicy::default()).is_ok());
    }

    #[test]
    fn truncated_files_never_panic() {
        let whole = pdf(2, "Modulo", None);
        for cut in (0..whole.len()).step_by(7) {
            let _ = inspect(
                &whole[..cut],
                &PdfPolicy::default(),
                &ImagePolicy::default(),
            );
        }
    }
}
