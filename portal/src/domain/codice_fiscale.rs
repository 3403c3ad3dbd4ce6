//! The Italian tax code (codice fiscale) of a natural person: 16 characters, check character last,
//! with "omocodia" (digits replaced by letters) accepted.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CodiceFiscale(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodiceFiscaleError {
    #[error("il codice fiscale deve avere 16 caratteri")]
    Length,
    #[error("il codice fiscale contiene caratteri non validi")]
    Characters,
    #[error("il carattere di controllo del codice fiscale non è corretto")]
    CheckCharacter,
}

const MONTHS: &[u8] = b"ABCDEHLMPRST";
const OMOCODIA: &[u8] = b"LMNPQRSTUV";
/// Values of the characters in odd positions (1st, 3rd, …): digits then letters share a table.
const ODD: [u32; 26] = [
    1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23,
];

impl CodiceFiscale {
    /// A valid code for the synthetic person number `i`, for tests and benchmarks that need many
    /// distinct people: six letters from `i`, a fixed birth part, the check character that fits.
    pub fn synthetic(i: usize) -> Option<CodiceFiscale> {
        let mut n = i;
        let mut letters = String::new();
        for _ in 0..6 {
            letters.push(char::from(b'A' + (n % 26) as u8));
            n /= 26;
        }
        let body = format!("{letters}80A01H501");
        ('A'..='Z').find_map(|c| CodiceFiscale::parse(&format!("{body}{c}")).ok())
    }

    pub fn parse(input: &str) -> Result<CodiceFiscale, CodiceFiscaleError> {
        let cf: String = input.trim().to_ascii_uppercase();
        let bytes = cf.as_bytes();
        if bytes.len() != 16 {
            return Err(CodiceFiscaleError::Length);
        }
        for (i, &b) in bytes.iter().enumerate() {
            let ok = match i {
                0..=5 | 8 | 11 | 15 => b.is_ascii_uppercase(),
                6 | 7 | 9 | 10 | 12..=14 => b.is_ascii_digit() || OMOCODIA.contains(&b),
                _ => false,
            };
            if !ok {
                return Err(CodiceFiscaleError::Characters);
            }
        }
        if !MONTHS.contains(&bytes[8]) {
            return Err(CodiceFiscaleError::Characters);
        }
        if check_character(&bytes[..15]) != bytes[15] {
            return Err(CodiceFiscaleError::CheckCharacter);
        }
        Ok(CodiceFiscale(cf))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The check character of the first 15 characters (which must be ASCII uppercase or digits).
pub(crate) fn check_character(first15: &[u8]) -> u8 {
    let sum: u32 = first15
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let index = if c.is_ascii_digit() {
                u32::from(c - b'0')
            } else {
                u32::from(c - b'A')
            };
            if i % 2 == 0 {
                ODD.get(index as usize).copied().unwrap_or(0)
            } else {
                index
            }
        })
        .sum();
    b'A' + (sum % 26) as u8
}

impl TryFrom<String> for CodiceFiscale {
    type Error = CodiceFiscaleError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        CodiceFiscale::parse(&value)
    }
}

impl From<CodiceFiscale> for String {
    fn from(cf: CodiceFiscale) -> String {
        cf.0
    }
}

impl fmt::Display for CodiceFiscale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Personal data: `Debug` shows only that a value is there, so it cannot leak into logs.
impl fmt::Debug for CodiceFiscale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodiceFiscale(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_codes() {
        // Published examples of valid codes.
        assert!(CodiceFiscale::parse("RSSMRA85T10A562S").is_ok());
        assert!(CodiceFiscale::parse("rssmra85t10a562s ").is_ok());
        assert_eq!(
            CodiceFiscale::parse("RSSMRA85T10A562T"),
            Err(CodiceFiscaleError::CheckCharacter)
        );
        assert_eq!(
            CodiceFiscale::parse("RSSMRA85T10A562"),
            Err(CodiceFiscaleError::Length)
        );
        assert_eq!(
            CodiceFiscale::parse("RSSMRA85Z10A562S"),
            Err(CodiceFiscaleError::Characters)
        );
    }

    #[test]
    fn debug_hides_the_code() {
        let cf = CodiceFiscale::parse("RSSMRA85T10A562S").ok();
        assert_eq!(format!("{cf:?}"), "Some(CodiceFiscale(***))");
    }

    fn valid_body() -> impl Strategy<Value = String> {
        "[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}"
    }

    proptest! {
        #[test]
        fn every_code_with_its_check_character_parses(body in valid_body()) {
            let check = check_character(body.as_bytes()) as char;
            let code = format!("{body}{check}");
            let parsed = CodiceFiscale::parse(&code.to_lowercase());
            prop_assert_eq!(parsed.map(String::from), Ok(code));
        }

        #[test]
        fn a_wrong_check_character_is_refused(body in valid_body(), shift in 1u8..26) {
            let check = check_character(body.as_bytes());
            let wrong = (b'A' + (check - b'A' + shift) % 26) as char;
            let parsed = CodiceFiscale::parse(&format!("{body}{wrong}"));
            prop_assert_eq!(parsed, Err(CodiceFiscaleError::CheckCharacter));
        }

        #[test]
        fn arbitrary_input_never_panics(s in "\\PC{0,40}") {
            let _ = CodiceFiscale::parse(&s);
        }
    }
}
