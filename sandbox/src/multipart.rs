//! A small `multipart/form-data` parser over a fully buffered body.
//!
//! The twins buffer request bodies anyway (they are bounded), so parsing from a
//! byte slice keeps this simple and avoids a streaming multipart dependency.

use actix_web::web::Bytes;

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The `name` from `Content-Disposition`.
    pub name: String,
    /// The `filename` from `Content-Disposition`, if any.
    pub filename: Option<String>,
    /// The part's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The part's raw bytes.
    pub data: Bytes,
}

impl Part {
    /// The data as UTF-8 text, if it is.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.data).ok()
    }
}

/// The `boundary` parameter of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let mime = params.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty())
    })
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > haystack.len() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Parses `body` using `boundary`; errors describe the first malformation.
pub fn parse(body: &Bytes, boundary: &str) -> Result<Vec<Part>, String> {
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    let next_delim = [b"\r\n".as_slice(), delim].concat();

    let mut pos = find(body, delim, 0).ok_or("multipart body has no opening boundary")?;
    let mut parts = Vec::new();
    loop {
        pos += delim.len();
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err("malformed multipart boundary line".to_owned());
        }
        pos += 2;
        let headers_end =
            find(body, b"\r\n\r\n", pos).ok_or("multipart part has no header terminator")?;
        let headers = std::str::from_utf8(&body[pos..headers_end])
            .map_err(|_| "multipart headers are not UTF-8")?;
        let data_start = headers_end + 4;
        let data_end =
            find(body, &next_delim, data_start).ok_or("multipart part is not terminated")?;

        let mut name = None;
        let mut filename = None;
        let mut content_type = None;
        for line in headers.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                for param in v.split(';').skip(1) {
                    if let Some((pk, pv)) = param.trim().split_once('=') {
                        let pv = pv.trim().trim_matches('"').to_owned();
                        match pk.trim().to_ascii_lowercase().as_str() {
                            "name" => name = Some(pv),
                            "filename" => filename = Some(pv),
                            _ => {}
                        }
                    }
                }
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                content_type = Some(v.trim().to_owned());
            }
        }
        parts.push(Part {
            name: name.ok_or("multipart part has no name")?,
            filename,
            content_type,
            data: body.slice(data_start..data_end),
        });
        pos = data_end + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_and_binary() {
        let body = Bytes::from_static(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"segment_index\"\r\n\r\n3\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"media\"; filename=\"a.bin\"\r\n\
Content-Type: application/octet-stream\r\n\r\n\x00\r\n\x01\xff\r\n--XyZ--\r\n",
        );
        let ct = "multipart/form-data; boundary=\"XyZ\"";
        let parts = parse(&body, &boundary(ct).unwrap()).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "segment_index");
        assert_eq!(parts[0].text(), Some("3"));
        assert_eq!(parts[1].filename.as_deref(), Some("a.bin"));
        assert_eq!(&parts[1].data[..], b"\x00\r\n\x01\xff");
    }

    #[test]
    fn rejects_garbage() {
        assert!(boundary("application/json").is_none());
        assert!(parse(&Bytes::from_static(b"nothing"), "b").is_err());
        assert!(parse(&Bytes::from_static(b"--b\r\nno-terminator"), "b").is_err());
    }
}
