//! Reads a request the host sent through the `packed` export: the body,
//! then the request's text in one buffer (docs/architecture.md, "Packed
//! requests"). The host lowers it into the component with one allocation,
//! where the `request` record takes one per string and list.
//!
//! After the body, every string is its length (4 bytes, little-endian) and
//! its UTF-8 bytes, in this order: method, path, query, request id, client
//! address, tenant and claims (a length of `u32::MAX` for none), then the
//! number of headers and each header's name and value, then the number of
//! route parameters and each one's name and value.

use crate::request::Incoming;

/// Why a packed request could not be read: the host and the SDK disagree on
/// the encoding, a bug for the log.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

/// The length that stands for an absent optional string.
const NONE: u32 = u32::MAX;

/// The request in `buffer`, whose first `body_len` bytes are its body. The
/// body keeps the buffer's allocation; the text is copied out of it.
pub(crate) fn read(mut buffer: Vec<u8>, body_len: usize) -> Result<Incoming, Malformed> {
    let text = buffer
        .get(body_len..)
        .ok_or(Malformed("the body is longer than the request"))?;
    let mut reader = Reader(text);
    let incoming = Incoming {
        method: crate::request::method(reader.str()?),
        path: reader.string()?,
        query: reader.string()?,
        request_id: reader.string()?,
        client_addr: reader.string()?,
        tenant: reader.optional()?,
        claims: reader.optional()?,
        headers: reader.pairs()?,
        params: reader.pairs()?,
        body: Vec::new(),
    };
    if !reader.0.is_empty() {
        return Err(Malformed("bytes are left after the request"));
    }
    buffer.truncate(body_len);
    Ok(Incoming {
        body: buffer,
        ..incoming
    })
}

/// `bytes` as text. The host packs only Rust strings, so a release build
/// trusts it, as wit-bindgen trusts the strings the canonical ABI lowers
/// (its `string_lift`): checking each one took a fifth of reading the
/// request. Debug builds (the tests) check.
fn utf8(bytes: &[u8]) -> Result<&str, Malformed> {
    if cfg!(debug_assertions) {
        return std::str::from_utf8(bytes).map_err(|_| Malformed("a string is not UTF-8"));
    }
    // SAFETY: the host wrote these bytes from a `&str` (host/src/app/packed.rs).
    Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
}

/// What is left of the text to read.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn length(&mut self) -> Result<u32, Malformed> {
        let (bytes, rest) = self
            .0
            .split_first_chunk::<4>()
            .ok_or(Malformed("a length is cut short"))?;
        self.0 = rest;
        Ok(u32::from_le_bytes(*bytes))
    }

    fn text(&mut self, length: u32) -> Result<&str, Malformed> {
        let length = length as usize;
        if length > self.0.len() {
            return Err(Malformed("a string is cut short"));
        }
        let (bytes, rest) = self.0.split_at(length);
        self.0 = rest;
        utf8(bytes)
    }

    fn str(&mut self) -> Result<&str, Malformed> {
        let length = self.length()?;
        self.text(length)
    }

    fn string(&mut self) -> Result<String, Malformed> {
        self.str().map(str::to_owned)
    }

    fn optional(&mut self) -> Result<Option<String>, Malformed> {
        match self.length()? {
            NONE => Ok(None),
            length => self.text(length).map(|text| Some(text.to_owned())),
        }
    }

    fn pairs(&mut self) -> Result<Vec<(String, String)>, Malformed> {
        let count = self.length()? as usize;
        // Each pair takes 8 bytes at least: a count larger than that is a lie.
        if count > self.0.len() / 8 {
            return Err(Malformed("a count is larger than the request"));
        }
        (0..count)
            .map(|_| Ok((self.string()?, self.string()?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's encoding (`host/src/app/packed.rs`), written again.
    fn pack(body: &[u8], strings: &[Option<&str>], pairs: &[&[(&str, &str)]]) -> Vec<u8> {
        let mut out = body.to_vec();
        let put = |s: &str, out: &mut Vec<u8>| {
            out.extend((s.len() as u32).to_le_bytes());
            out.extend(s.as_bytes());
        };
        for s in strings {
            match s {
                Some(s) => put(s, &mut out),
                None => out.extend(NONE.to_le_bytes()),
            }
        }
        for list in pairs {
            out.extend((list.len() as u32).to_le_bytes());
            for (n, v) in *list {
                put(n, &mut out);
                put(v, &mut out);
            }
        }
        out
    }

    fn example(body: &[u8]) -> Vec<u8> {
        let strings = [
            Some("POST"),
            Some("/items/7"),
            Some("q=1"),
            Some("req-1"),
            Some("127.0.0.1:5000"),
            None,
            Some("{\"sub\":\"ana\"}"),
        ];
        let headers: &[(&str, &str)] = &[("host", "x"), ("accept", "*/*")];
        let params: &[(&str, &str)] = &[("id", "7")];
        pack(body, &strings, &[headers, params])
    }

    #[test]
    fn reads_every_part_and_keeps_the_body() {
        let read = read(example(b"{\"a\":1}"), 7).unwrap();
        assert_eq!(read.body, b"{\"a\":1}");
        assert_eq!(read.method, http::Method::POST);
        assert_eq!(read.path, "/items/7");
        assert_eq!(read.query, "q=1");
        assert_eq!(read.request_id, "req-1");
        assert_eq!(read.client_addr, "127.0.0.1:5000");
        assert_eq!(read.tenant, None);
        assert_eq!(read.claims.as_deref(), Some("{\"sub\":\"ana\"}"));
        let pairs = |v: &[(String, String)]| {
            v.iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(pairs(&read.headers), ["host=x", "accept=*/*"]);
        assert_eq!(pairs(&read.params), ["id=7"]);
    }

    #[test]
    fn an_empty_body_reads_as_empty() {
        let read = read(example(b""), 0).unwrap();
        assert!(read.body.is_empty());
        assert_eq!(read.method, http::Method::POST);
    }

    #[test]
    fn a_cut_or_padded_buffer_is_refused() {
        let whole = example(b"body");
        for cut in [0, 4, 10, whole.len() - 1] {
            assert!(
                read(whole[..cut].to_vec(), 4.min(cut)).is_err(),
                "cut at {cut}"
            );
        }
        let mut padded = whole.clone();
        padded.push(0);
        assert_eq!(
            read(padded, 4).err(),
            Some(Malformed("bytes are left after the request"))
        );
        assert_eq!(
            read(whole.clone(), whole.len() + 1).err(),
            Some(Malformed("the body is longer than the request"))
        );
    }

    #[test]
    fn a_huge_count_is_refused_before_anything_is_allocated() {
        let mut buffer = pack(b"", &[Some(""); 5], &[]);
        buffer.extend(NONE.to_le_bytes());
        buffer.extend(NONE.to_le_bytes());
        buffer.extend((u32::MAX - 1).to_le_bytes());
        assert_eq!(
            read(buffer, 0).err(),
            Some(Malformed("a count is larger than the request"))
        );
    }

    #[test]
    #[cfg(debug_assertions)]
    fn text_that_is_not_utf8_is_refused_in_a_debug_build() {
        let mut buffer = Vec::new();
        buffer.extend(2u32.to_le_bytes());
        buffer.extend([0xff, 0xfe]);
        assert_eq!(
            read(buffer, 0).err(),
            Some(Malformed("a string is not UTF-8"))
        );
    }
}
