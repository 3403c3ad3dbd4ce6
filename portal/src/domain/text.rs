//! Text that people (and machines) send: the characters that show nothing or change how the rest
//! is shown — controls, bidirectional overrides and isolates, zero-width and other invisible
//! characters — are taken out before anything is kept, compared or displayed. So `U+200B` alone
//! does not fill a required field, and `fattura\u{202E}fdp.exe` is not shown as "fatturaexe.pdf".

/// Whether `c` is invisible or reorders text (and so is taken out). Tabs and line ends stay.
pub fn is_hidden(c: char) -> bool {
    match c {
        '\t' | '\n' | '\r' => false,
        c if c.is_control() => true,
        // Bidirectional marks, embeddings, overrides and isolates.
        '\u{061C}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}' => true,
        // Zero-width and invisible characters, the byte-order mark, soft hyphen, fillers.
        '\u{00AD}'
        | '\u{034F}'
        | '\u{115F}'
        | '\u{1160}'
        | '\u{17B4}'
        | '\u{17B5}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200D}'
        | '\u{2060}'..='\u{2064}'
        | '\u{3164}'
        | '\u{FEFF}'
        | '\u{FFA0}'
        | '\u{FFF9}'..='\u{FFFB}' => true,
        // Tag characters.
        '\u{E0000}'..='\u{E007F}' => true,
        _ => false,
    }
}

/// `text` without its hidden characters (see [`is_hidden`]).
pub fn clean(text: &str) -> String {
    text.chars().filter(|c| !is_hidden(*c)).collect()
}

/// Whether `text` shows something once cleaned and trimmed.
pub fn is_blank(text: &str) -> bool {
    text.chars().all(|c| is_hidden(c) || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn invisible_characters_go_and_visible_ones_stay() {
        assert_eq!(clean("Via Roma\u{202E} 12"), "Via Roma 12");
        assert_eq!(clean("fattura\u{202E}fdp.exe"), "fatturafdp.exe");
        assert_eq!(clean("\u{200B}\u{FEFF}\u{0000}"), "");
        assert_eq!(
            clean("Zoë D'Angelo — Niccolò\nriga 2\tcolonna"),
            "Zoë D'Angelo — Niccolò\nriga 2\tcolonna"
        );
        assert_eq!(clean("محمد"), "محمد");
        assert!(is_blank("\u{200B}"));
        assert!(is_blank(" \u{202E}\u{00A0}\u{2066} "));
        assert!(!is_blank("a"));
    }

    proptest! {
        #[test]
        fn cleaning_twice_changes_nothing_and_leaves_nothing_hidden(s in any::<String>()) {
            let once = clean(&s);
            prop_assert_eq!(clean(&once), once.clone());
            prop_assert!(!once.chars().any(is_hidden));
            prop_assert!(once.chars().count() <= s.chars().count());
        }
    }
}
