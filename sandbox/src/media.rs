//! Sample media files, so a sandboxed Herald can publish images and videos without reaching the
//! internet: `GET /media/{name}.{png|jpg|gif|webp|mp4|mov|pdf|docx|pptx}?bytes=N` serves `N`
//! deterministic bytes (default 64 KiB, at most 512 MiB) with the matching Content-Type and a
//! Content-Length. Videos start with a real MP4 header (`ftyp` + `moov`, then `mdat`)
//! describing `duration_ms` (default 10 s) and `width`x`height` (default 1280x720), so Herald's
//! probe reads them like a real file; documents start with their format's signature (`%PDF-`,
//! or the zip header of an Office Open XML file), so a platform twin can tell them from noise. `Range: bytes=a-b` is honoured (206), as CDNs do. Every
//! request is recorded with the range it asked for ([`MediaRequest`]).
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

const DEFAULT_BYTES: u64 = 64 * 1024;
const MAX_BYTES: u64 = 512 * 1024 * 1024;
const BLOCK: usize = 64 * 1024;

/// One request for a sample file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MediaRequest {
    /// The file name asked for (`long.mp4`).
    pub name: String,
    /// The `Range` header as sent, if any.
    pub range: Option<String>,
}

/// The requests `/media` received, oldest first.
#[derive(Debug, Default)]
pub struct MediaRequests(std::sync::Mutex<Vec<MediaRequest>>);

impl MediaRequests {
    fn record(&self, request: MediaRequest) {
        self.0.lock().expect("media log lock").push(request);
    }

    /// Every request so far.
    pub fn all(&self) -> Vec<MediaRequest> {
        self.0.lock().expect("media log lock").clone()
    }
}

#[derive(Debug, Deserialize)]
struct MediaQuery {
    bytes: Option<u64>,
    duration_ms: Option<u32>,
    width: Option<u32>,
    height: Option<u32>,
}

/// A box: 32-bit size, four-character type, body.
fn mp4_box(name: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&(8 + body.len() as u32).to_be_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(body);
    out
}

/// The identity transformation matrix of `mvhd` and `tkhd`.
fn identity_matrix() -> Vec<u8> {
    [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

/// `ftyp` + `moov` for one video track of `duration_ms` at `width`x`height` (ISO 14496-12
/// version-0 boxes, timescale 1000), followed by the `mdat` header for `mdat_len` bytes.
fn mp4_header(duration_ms: u32, width: u32, height: u32, mdat_len: u64) -> Vec<u8> {
    let ftyp = mp4_box(b"ftyp", b"isom\0\0\x02\0isomiso2avc1mp41");
    let mut mvhd = vec![0u8; 12]; // version/flags, creation and modification times
    mvhd.extend_from_slice(&1000u32.to_be_bytes());
    mvhd.extend_from_slice(&duration_ms.to_be_bytes());
    mvhd.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // rate 1.0
    mvhd.extend_from_slice(&0x0100u16.to_be_bytes()); // volume 1.0
    mvhd.extend_from_slice(&[0u8; 10]);
    mvhd.extend_from_slice(&identity_matrix());
    mvhd.extend_from_slice(&[0u8; 24]);
    mvhd.extend_from_slice(&2u32.to_be_bytes()); // next track id
    let mut tkhd = vec![0, 0, 0, 3]; // version 0, enabled + in movie
    tkhd.extend_from_slice(&[0u8; 8]);
    tkhd.extend_from_slice(&1u32.to_be_bytes()); // track id
    tkhd.extend_from_slice(&[0u8; 4]);
    tkhd.extend_from_slice(&duration_ms.to_be_bytes());
    tkhd.extend_from_slice(&[0u8; 16]); // reserved, layer, group, volume, reserved
    tkhd.extend_from_slice(&identity_matrix());
    tkhd.extend_from_slice(&(width << 16).to_be_bytes());
    tkhd.extend_from_slice(&(height << 16).to_be_bytes());
    let mut mdhd = vec![0u8; 12];
    mdhd.extend_from_slice(&1000u32.to_be_bytes());
    mdhd.extend_from_slice(&duration_ms.to_be_bytes());
    mdhd.extend_from_slice(&0x55c4u16.to_be_bytes()); // language "und"
    mdhd.extend_from_slice(&[0u8; 2]);
    let mut hdlr = vec![0u8; 8];
    hdlr.extend_from_slice(b"vide");
    hdlr.extend_from_slice(&[0u8; 12]);
    hdlr.extend_from_slice(b"VideoHandler\0");
    let empty_table = |name: &[u8; 4], extra: usize| mp4_box(name, &vec![0u8; 8 + extra]);
    let stbl = [
        empty_table(b"stsd", 0),
        empty_table(b"stts", 0),
        empty_table(b"stsc", 0),
        empty_table(b"stsz", 4),
        empty_table(b"stco", 0),
    ]
    .concat();
    let dref = mp4_box(
        b"dref",
        &[
            &[0u8, 0, 0, 0, 0, 0, 0, 1][..],
            &mp4_box(b"url ", &[0, 0, 0, 1]),
        ]
        .concat(),
    );
    let minf = [
        mp4_box(b"vmhd", &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
        mp4_box(b"dinf", &dref),
        mp4_box(b"stbl", &stbl),
    ]
    .concat();
    let mdia = [
        mp4_box(b"mdhd", &mdhd),
        mp4_box(b"hdlr", &hdlr),
        mp4_box(b"minf", &minf),
    ]
    .concat();
    let trak = [mp4_box(b"tkhd", &tkhd), mp4_box(b"mdia", &mdia)].concat();
    let moov = mp4_box(
        b"moov",
        &[mp4_box(b"mvhd", &mvhd), mp4_box(b"trak", &trak)].concat(),
    );
    let mut out = [ftyp, moov].concat();
    out.extend_from_slice(&((8 + mdat_len) as u32).to_be_bytes());
    out.extend_from_slice(b"mdat");
    out
}

/// `Range: bytes=a-b` / `bytes=a-` as an inclusive range within `length`.
fn requested_range(req: &HttpRequest, length: u64) -> Option<(u64, u64)> {
    let value = req.headers().get(header::RANGE)?.to_str().ok()?;
    let (start, end) = value.strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end = match end.trim() {
        "" => length.checked_sub(1)?,
        end => end.parse::<u64>().ok()?.min(length.checked_sub(1)?),
    };
    (start <= end).then_some((start, end))
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
        "pdf" => "application/pdf",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        _ => return None,
    })
}

async fn serve(
    req: HttpRequest,
    name: web::Path<String>,
    query: web::Query<MediaQuery>,
    requests: web::Data<MediaRequests>,
) -> HttpResponse {
    requests.record(MediaRequest {
        name: name.to_string(),
        range: req
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    let Some(mime) = content_type(&name) else {
        return HttpResponse::NotFound().body(
            "unknown media type; use .png, .jpg, .gif, .webp, .mp4, .mov, .pdf, .docx or .pptx",
        );
    };
    let length = query.bytes.unwrap_or(DEFAULT_BYTES).min(MAX_BYTES);
    let header = if mime.starts_with("video/") {
        let mut header = mp4_header(
            query.duration_ms.unwrap_or(10_000),
            query.width.unwrap_or(1280),
            query.height.unwrap_or(720),
            0,
        );
        let mdat_len = length.saturating_sub(header.len() as u64);
        header = mp4_header(
            query.duration_ms.unwrap_or(10_000),
            query.width.unwrap_or(1280),
            query.height.unwrap_or(720),
            mdat_len,
        );
        header.truncate(length as usize);
        header
    } else if mime == "application/pdf" {
        b"%PDF-1.7\n".to_vec()
    } else if mime.starts_with("application/vnd.openxmlformats") {
        b"PK\x03\x04".to_vec()
    } else {
        Vec::new()
    };
    let (start, end, partial) = match requested_range(&req, length) {
        Some((start, end)) => (start, end, true),
        None => (0, length.saturating_sub(1), false),
    };
    let served = if length == 0 { 0 } else { end + 1 - start };
    // Streamed in blocks so a large sample never sits whole in memory.
    let seed = name.bytes().fold(0u8, |acc, b| acc.wrapping_add(b));
    let byte_at = move |i: u64| match header.get(i as usize) {
        Some(b) => *b,
        None => seed.wrapping_add(((i % BLOCK as u64) % 251) as u8),
    };
    let blocks = served.div_ceil(BLOCK as u64);
    let body = futures::stream::iter((0..blocks).map(move |i| {
        let from = start + i * BLOCK as u64;
        let to = (from + BLOCK as u64).min(start + served);
        let block: Vec<u8> = (from..to).map(&byte_at).collect();
        Ok::<_, actix_web::Error>(web::Bytes::from(block))
    }));
    let mut response = if partial {
        let mut partial = HttpResponse::PartialContent();
        partial.insert_header((
            header::CONTENT_RANGE,
            format!("bytes {start}-{end}/{length}"),
        ));
        partial
    } else {
        HttpResponse::Ok()
    };
    response
        .content_type(mime)
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .no_chunking(served)
        .streaming(body)
}

/// The `/media` routes, recording into `requests`.
pub fn scope(requests: web::Data<MediaRequests>) -> actix_web::Scope {
    web::scope("/media")
        .app_data(requests)
        .route("/{name}", web::get().to(serve))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_follow_the_extension() {
        assert_eq!(content_type("a.PNG"), Some("image/png"));
        assert_eq!(content_type("clip.mp4"), Some("video/mp4"));
        assert_eq!(content_type("deck.pdf"), Some("application/pdf"));
        assert_eq!(content_type("notes.txt"), None);
    }
}
