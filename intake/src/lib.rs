//! Sportello intake: untrusted documents in, typed verdicts out.
//!
//! The code that touches hostile input, knowing nothing of HTTP or the database. So far: the
//! inspection of PDF files (`pdf`). Still to come with the document-intake issue: images decoded
//! with limits and re-encoded, OCR of the standard forms with Tesseract, and the child process with
//! time and memory limits that runs all of it.

pub mod pdf;
