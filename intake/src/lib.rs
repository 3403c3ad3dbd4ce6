//! Sportello intake: untrusted documents in, typed verdicts out.
//!
//! This crate will hold the code that touches hostile input (PDF inspection with lopdf, image
//! re-encoding, OCR of the standard forms with Tesseract), knowing nothing of HTTP or the database,
//! and run in a child process with time and memory limits. It arrives with the document-intake issue;
//! today it is an empty crate, so that the workspace has its final shape.
