//! Text helpers the platform adapters share.

/// `text` cut to `max_chars` characters, with an ellipsis when cut: what a platform says in an
/// error is kept, but bounded, in failures and events.
pub fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Whitespace-insensitive text, for matching a post the platform may have re-spaced.
pub fn normalize_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_cuts_at_characters_not_bytes_and_marks_the_cut() {
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("ééé", 2), "éé…");
    }

    #[test]
    fn normalize_whitespace_collapses_runs_and_trims() {
        assert_eq!(normalize_whitespace(" a \n b\t\tc "), "a b c");
    }
}
