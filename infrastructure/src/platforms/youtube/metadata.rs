//! The `video` resource sent when an upload session opens: title, description, tags,
//! category, privacy and the made-for-kids declaration, as YouTube accepts them (facts §7.1).
use herald_domain::options::YoutubeOptions;
use serde_json::{json, Value};

use crate::platforms::PostDraft;

/// Longest title, in characters.
pub(crate) const MAX_TITLE_CHARS: usize = 100;
/// Longest description, in UTF-8 bytes.
pub(crate) const MAX_DESCRIPTION_BYTES: usize = 5000;
/// Longest tag text altogether (YouTube counts a tag with a space as quoted).
const MAX_TAGS_CHARS: usize = 500;
/// "People & Blogs": YouTube's usual default category.
pub(crate) const DEFAULT_CATEGORY: &str = "22";
const SHORTS_TAG: &str = "#Shorts";

/// YouTube refuses `<` and `>` in titles, descriptions and tags.
fn without_angle_brackets(text: &str) -> String {
    text.replace(['<', '>'], "")
}

/// `text` cut to at most `max` by `measure`, at a word boundary where there is one.
fn cut_at_word(text: &str, max: usize, measure: impl Fn(&str) -> usize) -> String {
    if measure(text) <= max {
        return text.to_owned();
    }
    let mut end = 0;
    let mut last_space = None;
    for (i, c) in text.char_indices() {
        let next = i + c.len_utf8();
        if measure(&text[..next]) > max {
            break;
        }
        if c.is_whitespace() {
            last_space = Some(i);
        }
        end = next;
    }
    text[..last_space.filter(|&s| s > 0).unwrap_or(end)]
        .trim_end()
        .to_owned()
}

/// The title: the post's own, else the text's first line, cut at a word to 100 characters.
pub(crate) fn title(post: &PostDraft) -> String {
    let source = post
        .title
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| post.text.trim().lines().next().unwrap_or("").to_owned());
    let clean = without_angle_brackets(&source);
    let clean = clean.split_whitespace().collect::<Vec<_>>().join(" ");
    let title = cut_at_word(&clean, MAX_TITLE_CHARS, |t| t.chars().count());
    if title.is_empty() {
        // YouTube requires a title; the content rules normally guarantee one.
        "Untitled".to_owned()
    } else {
        title
    }
}

/// The tags YouTube accepts: without angle brackets, within 500 characters altogether.
fn tags(options: &YoutubeOptions) -> Vec<String> {
    let mut total = 0;
    let mut kept = Vec::new();
    for tag in &options.tags {
        let tag = without_angle_brackets(tag).trim().to_owned();
        if tag.is_empty() {
            continue;
        }
        let cost = tag.chars().count() + if tag.contains(' ') { 2 } else { 0 };
        let separator = usize::from(!kept.is_empty());
        if total + separator + cost > MAX_TAGS_CHARS {
            break;
        }
        total += separator + cost;
        kept.push(tag);
    }
    kept
}

/// The `snippet` and `status` of the video to insert.
pub(crate) fn video_resource(post: &PostDraft) -> Value {
    let options = &post.options.youtube;
    let mut title = title(post);
    let mut description = cut_at_word(
        &without_angle_brackets(post.text.trim()),
        MAX_DESCRIPTION_BYTES,
        str::len,
    );
    if options.shorts {
        // A Short is a vertical video of at most three minutes; the hashtag helps YouTube file
        // it under Shorts. The title takes it when there is room, else the description.
        let tagged = |s: &str| s.to_lowercase().contains("#shorts");
        if !tagged(&title) && !tagged(&description) {
            if title.chars().count() + 1 + SHORTS_TAG.len() <= MAX_TITLE_CHARS {
                title = format!("{title} {SHORTS_TAG}");
            } else {
                let room = MAX_DESCRIPTION_BYTES.saturating_sub(SHORTS_TAG.len() + 2);
                description = cut_at_word(&description, room, str::len);
                description = if description.is_empty() {
                    SHORTS_TAG.to_owned()
                } else {
                    format!("{description}\n\n{SHORTS_TAG}")
                };
            }
        }
    }
    let mut snippet = json!({
        "title": title,
        "description": description,
        "categoryId": options.category_id.clone().unwrap_or_else(|| DEFAULT_CATEGORY.to_owned()),
    });
    let tags = tags(options);
    if !tags.is_empty() {
        snippet["tags"] = json!(tags);
    }
    let mut status = json!({
        // Nothing goes public by accident.
        "privacyStatus": options.privacy.clone().unwrap_or_else(|| "private".to_owned()),
    });
    if let Some(kids) = options.made_for_kids {
        status["selfDeclaredMadeForKids"] = json!(kids);
    }
    json!({ "snippet": snippet, "status": status })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(text: &str, title: Option<&str>) -> PostDraft {
        PostDraft {
            text: text.to_owned(),
            title: title.map(str::to_owned),
            ..PostDraft::default()
        }
    }

    #[test]
    fn title_is_given_or_derived_at_a_word_boundary() {
        assert_eq!(
            title(&post("ignored", Some(" My <b>video</b> "))),
            "My bvideo/b"
        );
        let long = "word ".repeat(40);
        let derived = title(&post(&format!("{long}\nsecond line"), None));
        assert!(derived.chars().count() <= 100);
        assert!(derived.ends_with("word"), "{derived}");
        assert_eq!(title(&post("First line\nmore", None)), "First line");
        assert_eq!(title(&post("", None)), "Untitled");
    }

    #[test]
    fn description_fits_5000_bytes_and_defaults_are_safe() {
        let text = "é ".repeat(3000);
        let v = video_resource(&post(&text, Some("t")));
        let description = v["snippet"]["description"].as_str().unwrap();
        assert!(description.len() <= MAX_DESCRIPTION_BYTES);
        assert_eq!(v["status"]["privacyStatus"], "private");
        assert_eq!(v["snippet"]["categoryId"], "22");
        assert!(v["status"].get("selfDeclaredMadeForKids").is_none());
    }

    #[test]
    fn options_tags_and_shorts() {
        let mut p = post("A clip", Some("Clip"));
        p.options.youtube.privacy = Some("unlisted".into());
        p.options.youtube.category_id = Some("10".into());
        p.options.youtube.made_for_kids = Some(false);
        p.options.youtube.tags = vec!["music".into(), "<live>".into(), "x".repeat(600)];
        p.options.youtube.shorts = true;
        let v = video_resource(&p);
        assert_eq!(v["snippet"]["title"], "Clip #Shorts");
        assert_eq!(v["snippet"]["tags"], json!(["music", "live"]));
        assert_eq!(v["status"]["privacyStatus"], "unlisted");
        assert_eq!(v["status"]["selfDeclaredMadeForKids"], false);
        // No room in a 100-character title: the description carries the hashtag.
        let mut p = post("Text", Some(&"t".repeat(95)));
        p.options.youtube.shorts = true;
        let v = video_resource(&p);
        assert_eq!(v["snippet"]["description"], "Text\n\n#Shorts");
    }
}
