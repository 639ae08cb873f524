//! LinkedIn's "Little Text Format" for post commentary (platform-facts §8.2).
//!
//! The characters `\ | { } @ [ ] ( ) < > * _ ~` are reserved and must be backslash-escaped to
//! be plain text. Elements: mentions `@[Name](urn:li:person:…|urn:li:organization:…)`, the
//! hashtag template `{hashtag|\#|tag}` and plain `#tag` hashtags (so `#` may stay unescaped).
//! LinkedIn does not refuse malformed text: third-party reports agree that it silently cuts
//! the post at the first unescaped reserved character. The twin does the same and says so in
//! its state dump.

/// Characters that must be escaped in commentary.
pub const RESERVED: &[char] = &[
    '\\', '|', '{', '}', '@', '[', ']', '(', ')', '<', '>', '*', '_', '~',
];

/// Escapes every reserved character, so `text` shows verbatim.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if RESERVED.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What LinkedIn shows for `commentary`, and whether it was cut at an unescaped reserved
/// character.
pub fn render(commentary: &str) -> (String, bool) {
    let chars: Vec<char> = commentary.chars().collect();
    let mut out = String::with_capacity(commentary.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            match chars.get(i + 1) {
                Some(next) => {
                    out.push(*next);
                    i += 2;
                }
                // A trailing lone backslash escapes nothing.
                None => return (out, true),
            }
            continue;
        }
        if c == '@' {
            if let Some((name, end)) = mention(&chars, i) {
                out.push_str(&name);
                i = end;
                continue;
            }
        }
        if c == '{' {
            if let Some((tag, end)) = hashtag_template(&chars, i) {
                out.push('#');
                out.push_str(&tag);
                i = end;
                continue;
            }
        }
        if RESERVED.contains(&c) {
            return (out, true);
        }
        out.push(c);
        i += 1;
    }
    (out, false)
}

/// `@[Name](urn:li:person:…)` starting at `start`: the name and the index after it.
fn mention(chars: &[char], start: usize) -> Option<(String, usize)> {
    if chars.get(start + 1) != Some(&'[') {
        return None;
    }
    let close = (start + 2..chars.len()).find(|&j| chars[j] == ']')?;
    if chars.get(close + 1) != Some(&'(') {
        return None;
    }
    let end = (close + 2..chars.len()).find(|&j| chars[j] == ')')?;
    let urn: String = chars[close + 2..end].iter().collect();
    let valid = ["urn:li:person:", "urn:li:organization:"]
        .iter()
        .any(|p| urn.strip_prefix(p).is_some_and(|id| !id.is_empty()));
    valid.then(|| (chars[start + 2..close].iter().collect(), end + 1))
}

/// `{hashtag|\#|tag}` starting at `start`: the tag and the index after it.
fn hashtag_template(chars: &[char], start: usize) -> Option<(String, usize)> {
    let end = (start + 1..chars.len()).find(|&j| chars[j] == '}')?;
    let inner: String = chars[start + 1..end].iter().collect();
    let tag = inner.strip_prefix("hashtag|\\#|")?;
    (!tag.is_empty() && tag.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .then(|| (tag.to_owned(), end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_text_renders_verbatim() {
        let text = r"Launch (beta) [v2] @home <b> *bold* _x_ ~y~ a|b {c} back\slash #tag";
        let (shown, cut) = render(&escape(text));
        assert_eq!(shown, text);
        assert!(!cut);
    }

    #[test]
    fn unescaped_reserved_character_cuts_the_text() {
        assert_eq!(render("Hello (world)"), ("Hello ".to_owned(), true));
        assert_eq!(
            render("plain #hashtag"),
            ("plain #hashtag".to_owned(), false)
        );
    }

    #[test]
    fn templates_render() {
        assert_eq!(
            render(r"Hi @[Eddy](urn:li:person:1234) {hashtag|\#|rust}"),
            ("Hi Eddy #rust".to_owned(), false)
        );
        assert!(render("mail @[x](http://e)").1);
    }
}
