//! Sample media files, so a sandboxed Herald can publish images and videos without reaching the
//! internet: `GET /media/{name}.{png|jpg|gif|mp4|mov}?bytes=N` serves `N` deterministic bytes
//! (default 64 KiB, at most 512 MiB) with the matching Content-Type and a Content-Length.
use actix_web::{web, HttpResponse};
use serde::Deserialize;

const DEFAULT_BYTES: u64 = 64 * 1024;
const MAX_BYTES: u64 = 512 * 1024 * 1024;
const BLOCK: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
struct MediaQuery {
    bytes: Option<u64>,
}

fn content_type(name: &str) -> Option<&'static str> {
    let extension = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        _ => return None,
    })
}

async fn serve(name: web::Path<String>, query: web::Query<MediaQuery>) -> HttpResponse {
    let Some(mime) = content_type(&name) else {
        return HttpResponse::NotFound()
            .body("unknown media type; use .png, .jpg, .gif, .webp, .mp4 or .mov");
    };
    let length = query.bytes.unwrap_or(DEFAULT_BYTES).min(MAX_BYTES);
    // Streamed in blocks so a large sample never sits whole in memory.
    let seed = name.bytes().fold(0u8, |acc, b| acc.wrapping_add(b));
    let blocks = length.div_ceil(BLOCK as u64);
    let body = futures::stream::iter((0..blocks).map(move |i| {
        let size = (length - i * BLOCK as u64).min(BLOCK as u64) as usize;
        let block: Vec<u8> = (0..size)
            .map(|j| seed.wrapping_add((j % 251) as u8))
            .collect();
        Ok::<_, actix_web::Error>(web::Bytes::from(block))
    }));
    HttpResponse::Ok()
        .content_type(mime)
        .no_chunking(length)
        .streaming(body)
}

/// The `/media` routes.
pub fn scope() -> actix_web::Scope {
    web::scope("/media").route("/{name}", web::get().to(serve))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_follow_the_extension() {
        assert_eq!(content_type("a.PNG"), Some("image/png"));
        assert_eq!(content_type("clip.mp4"), Some("video/mp4"));
        assert_eq!(content_type("notes.txt"), None);
    }
}
