//! The test personas of the development identity provider. Fictional people with valid codici
//! fiscali; the demo data gives the two operators their roles.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Persona {
    pub id: &'static str,
    pub cf: &'static str,
    pub given_name: &'static str,
    pub family_name: &'static str,
    pub birthdate: &'static str,
    pub email: &'static str,
    pub phone: &'static str,
    /// One line for the chooser.
    pub description: &'static str,
}

pub const PERSONAS: &[Persona] = &[
    Persona {
        id: "mario-rossi",
        cf: "RSSMRA80A01H501U",
        given_name: "Mario",
        family_name: "Rossi",
        birthdate: "1980-01-01",
        email: "mario.rossi@example.it",
        phone: "+393331234567",
        description: "Cittadino, 46 anni, residente a Valleverde",
    },
    Persona {
        id: "giulia-bianchi",
        cf: "BNCGLI85D52F205W",
        given_name: "Giulia",
        family_name: "Bianchi",
        birthdate: "1985-04-12",
        email: "giulia.bianchi@example.it",
        phone: "+393387654321",
        description: "Cittadina, caregiver della madre anziana",
    },
    Persona {
        id: "anna-verdi",
        cf: "VRDNNA78M41L219W",
        given_name: "Anna",
        family_name: "Verdi",
        birthdate: "1978-08-01",
        email: "anna.verdi@example.it",
        phone: "+393401112233",
        description: "Cittadina, genitore di Luca Verdi (minore, CF VRDLCU15C10L219Q)",
    },
    Persona {
        id: "paolo-neri",
        cf: "NREPLA75E15D969F",
        given_name: "Paolo",
        family_name: "Neri",
        birthdate: "1975-05-15",
        email: "paolo.neri@example.it",
        phone: "+393475556677",
        description: "Operatore del segretariato sociale, Comune di Valleverde",
    },
    Persona {
        id: "laura-gallo",
        cf: "GLLLRA82H60A944Y",
        given_name: "Laura",
        family_name: "Gallo",
        birthdate: "1982-06-20",
        email: "laura.gallo@example.it",
        phone: "+393489998877",
        description: "Operatrice dei servizi sociali, Comune di Montebello",
    },
    Persona {
        id: "elena-ferri",
        cf: "FRRLNE70R48L219D",
        given_name: "Elena",
        family_name: "Ferri",
        birthdate: "1970-10-08",
        email: "elena.ferri@example.it",
        phone: "+393465554433",
        description: "Amministratrice del portale, Comune di Valleverde",
    },
];

/// The staff roles the demo data grants: (codice fiscale, ente, role).
pub const DEMO_STAFF: &[(&str, &str, &str)] = &[
    ("NREPLA75E15D969F", "valleverde", "operatore"),
    ("GLLLRA82H60A944Y", "montebello", "operatore"),
    ("FRRLNE70R48L219D", "valleverde", "amministratore"),
];

/// The demo enti: (code, name).
pub const DEMO_ENTI: &[(&str, &str)] = &[
    ("valleverde", "Comune di Valleverde"),
    ("montebello", "Comune di Montebello"),
];

pub fn find(id: &str) -> Option<&'static Persona> {
    PERSONAS.iter().find(|p| p.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CodiceFiscale;

    #[test]
    fn every_persona_has_a_valid_codice_fiscale() {
        for p in PERSONAS {
            assert!(CodiceFiscale::parse(p.cf).is_ok(), "{}", p.id);
        }
        assert!(CodiceFiscale::parse("VRDLCU15C10L219Q").is_ok());
    }
}
