//! Post text for LinkedIn: commentary is "Little Text Format" (platform-facts §8.2), where
//! `\ | { } @ [ ] ( ) < > * _ ~` are reserved. Unescaped, LinkedIn silently cuts the post at the
//! first one, so every reserved character is backslash-escaped. `#` is left alone: `#word` is a
//! hashtag element and should stay clickable.

/// Characters that must be escaped in commentary.
const RESERVED: &[char] = &[
    '\\', '|', '{', '}', '@', '[', ']', '(', ')', '<', '>', '*', '_', '~',
];

/// `text` as Little Text Format plain text.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if RESERVED.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A title for an article share that has none: the text's first line cut at a word boundary
/// to `limit` characters, or the link itself.
pub(crate) fn derive_title(text: &str, link: &str, limit: usize) -> String {
    let first = text.trim().lines().next().unwrap_or("").trim();
    if first.is_empty() {
        return link.chars().take(limit).collect();
    }
    if first.chars().count() <= limit {
        return first.to_owned();
    }
    let keep = limit.saturating_sub(1);
    let cut: String = first.chars().take(keep).collect();
    let ends_a_word = first.chars().nth(keep).is_some_and(char::is_whitespace);
    let at_word = match cut.rfind(char::is_whitespace) {
        Some(i) if i > 0 && !ends_a_word => cut[..i].trim_end().to_owned(),
        _ => cut,
    };
    format!("{at_word}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_characters_are_escaped_and_hashtags_kept() {
        assert_eq!(
            escape(r"(a) [b] {c} @d <e> *f* _g_ ~h~ i|j \k #tag"),
            r"\(a\) \[b\] \{c\} \@d \<e\> \*f\* \_g\_ \~h\~ i\|j \\k #tag"
        );
    }

    #[test]
    fn titles_come_from_the_first_line_or_the_link() {
        assert_eq!(
            derive_title("Hello world\nmore", "https://x", 400),
            "Hello world"
        );
        assert_eq!(
            derive_title("", "https://x.test/a", 400),
            "https://x.test/a"
        );
        assert_eq!(derive_title("aaaa bbbb cccc", "l", 10), "aaaa bbbb…");
        assert_eq!(derive_title("aaaa bbbbbb cc", "l", 10), "aaaa…");
    }
}
