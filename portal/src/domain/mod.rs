//! Domain newtypes shared by every capability: parsed once at the edge, trusted inside.

mod codice_fiscale;
pub mod italian_time;
pub mod text;

pub(crate) use codice_fiscale::check_character;
pub use codice_fiscale::{CodiceFiscale, CodiceFiscaleError};
