//! Packs a request for a component's `packed` export: the body, then the
//! request's text, in one buffer (docs/architecture.md, "Packed requests").
//! Lowered into the guest, it takes one allocation there, and one call
//! from the host into the guest to make it; the `request` record takes one
//! of each per string and list, some eleven for a plain GET.
//!
//! After the body, every string is its length (4 bytes, little-endian) and
//! its UTF-8 bytes, in this order: method, path, query, request id, client
//! address, tenant and claims (a length of `u32::MAX` for none), then the
//! number of headers and each header's name and value, then the number of
//! route parameters and each one's name and value. The Rust SDK reads it in
//! `guest-rust/sdk/src/packed.rs`.
//!
//! A `def` call packs straight from the request as the pipeline holds it
//! ([`Fields`]); the `request` record is made only for a call that needs it
//! (a cached route's, whose request the cache keeps).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::bindings::Request;

/// The length that stands for an absent optional string.
const NONE: u32 = u32::MAX;

/// A request packed for a `def` call: what the call sends, and what the
/// host keeps of it to name the call in logs.
pub struct Packed {
    pub route: u32,
    pub request_id: Arc<str>,
    /// How many of `bytes`' first bytes are the body.
    pub body_len: u32,
    pub bytes: Vec<u8>,
}

/// A request's parts, borrowed from wherever it is held, in the order they
/// are packed. Headers go to [`Fields::pack`] apart: they are read from an
/// `http::HeaderMap` or from the `request` record.
pub struct Fields<'a> {
    pub body: &'a [u8],
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub request_id: &'a str,
    pub client_addr: Address<'a>,
    pub tenant: Option<&'a str>,
    pub claims: Option<&'a str>,
    pub params: &'a [(String, String)],
}

/// The client's address: as text already, or as the socket address it is
/// written from (into the buffer, with no string of its own).
pub enum Address<'a> {
    Text(&'a str),
    Socket(SocketAddr),
}

impl Fields<'_> {
    /// The body's length and the request packed, with `headers`: `count`
    /// of them, their names and values `headers_len` bytes in all (a
    /// lossily read value may come out longer). None when a part is too
    /// long for its 4-byte length: that request goes through `handle`. The
    /// body is copied in, once more than `handle` copies it: a memcpy,
    /// which costs a large upload less than the ten calls into the guest
    /// saved cost a small request.
    pub fn pack<'h>(
        &self,
        (count, headers_len): (usize, usize),
        headers: impl Iterator<Item = (&'h str, Cow<'h, str>)>,
    ) -> Option<(u32, Vec<u8>)> {
        let body_len = u32::try_from(self.body.len()).ok()?;
        let strings = [
            self.method,
            self.path,
            self.query,
            self.request_id,
            self.tenant.unwrap_or(""),
            self.claims.unwrap_or(""),
        ];
        // The exact length for what is already text; room for an address.
        let text_len = strings.iter().map(|s| 4 + s.len()).sum::<usize>()
            + 4
            + match self.client_addr {
                Address::Text(text) => text.len(),
                Address::Socket(_) => ADDRESS_ROOM,
            }
            + 8
            + 8 * count
            + headers_len
            + (self.params.iter())
                .map(|(n, v)| 8 + n.len() + v.len())
                .sum::<usize>();
        let mut out = Vec::with_capacity(self.body.len() + text_len);
        out.extend_from_slice(self.body);
        for s in [self.method, self.path, self.query, self.request_id] {
            put(&mut out, s)?;
        }
        match self.client_addr {
            Address::Text(text) => put(&mut out, text)?,
            Address::Socket(peer) => {
                let at = out.len();
                out.extend_from_slice(&[0; 4]);
                write_address(&mut out, peer);
                let len = (out.len() - at - 4) as u32;
                out[at..at + 4].copy_from_slice(&len.to_le_bytes());
            }
        }
        for s in [self.tenant, self.claims] {
            match s {
                Some(s) => put(&mut out, s)?,
                None => out.extend_from_slice(&NONE.to_le_bytes()),
            }
        }
        out.extend_from_slice(&u32::try_from(count).ok()?.to_le_bytes());
        for (name, value) in headers {
            put(&mut out, name)?;
            put(&mut out, &value)?;
        }
        out.extend_from_slice(&u32::try_from(self.params.len()).ok()?.to_le_bytes());
        for (name, value) in self.params {
            put(&mut out, name)?;
            put(&mut out, value)?;
        }
        Some((body_len, out))
    }
}

/// The longest address text: an IPv6 address with a scope and a port.
const ADDRESS_ROOM: usize = 64;

/// `request` packed: for a call whose `request` record was made anyway.
pub(super) fn pack(request: &Request) -> Option<(u32, Vec<u8>)> {
    let context = &request.context;
    let fields = Fields {
        body: &request.body,
        method: &request.method,
        path: &request.path,
        query: &request.query,
        request_id: &context.request_id,
        client_addr: Address::Text(&context.client_addr),
        tenant: context.tenant.as_deref(),
        claims: context.claims.as_deref(),
        params: &request.params,
    };
    let pairs = &request.headers;
    let size = (
        pairs.len(),
        pairs.iter().map(|(n, v)| n.len() + v.len()).sum(),
    );
    let headers = pairs
        .iter()
        .map(|(n, v)| (n.as_str(), Cow::Borrowed(v.as_str())));
    fields.pack(size, headers)
}

/// How many `headers` there are, and their names' and values' bytes.
pub fn header_size(headers: &http::HeaderMap) -> (usize, usize) {
    let bytes = (headers.iter()).map(|(n, v)| n.as_str().len() + v.len());
    (headers.len(), bytes.sum())
}

/// Header values as text: bytes that are not UTF-8 read lossily, as the
/// `request` record has them (the guest trusts the packed text is UTF-8).
pub fn header_text(headers: &http::HeaderMap) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
    headers.iter().map(|(name, value)| {
        let value = match value.to_str() {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(value.as_bytes()),
        };
        (name.as_str(), value)
    })
}

fn put(out: &mut Vec<u8>, s: &str) -> Option<()> {
    let len = u32::try_from(s.len()).ok().filter(|&len| len != NONE)?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Some(())
}

/// Writes `peer` as its `Display` does, without the formatting machinery
/// for the common IPv4 case: it is written for every request.
pub fn write_address(out: &mut Vec<u8>, peer: SocketAddr) {
    let SocketAddr::V4(v4) = peer else {
        out.extend_from_slice(peer.to_string().as_bytes());
        return;
    };
    let mut numbers = itoa::Buffer::new();
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        out.extend_from_slice(numbers.format(octet).as_bytes());
    }
    out.push(b':');
    out.extend_from_slice(numbers.format(v4.port()).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::cello::component::types::Context;

    fn request() -> Request {
        Request {
            method: "GET".into(),
            path: "/hello/ana".into(),
            query: "greeting=Hi".into(),
            headers: vec![("host".into(), "example".into())],
            body: b"abc".to_vec(),
            route: 1,
            params: vec![("name".into(), "ana".into())],
            context: Context {
                request_id: "r1".into(),
                client_addr: "127.0.0.1:9".into(),
                tenant: Some("acme".into()),
                claims: None,
            },
        }
    }

    #[test]
    fn the_body_comes_first_then_each_string_after_its_length() {
        let (body_len, packed) = pack(&request()).unwrap();
        assert_eq!(body_len, 3);
        let mut expected = b"abc".to_vec();
        for s in [
            "GET",
            "/hello/ana",
            "greeting=Hi",
            "r1",
            "127.0.0.1:9",
            "acme",
        ] {
            expected.extend((s.len() as u32).to_le_bytes());
            expected.extend(s.as_bytes());
        }
        expected.extend(u32::MAX.to_le_bytes());
        for (n, v) in [("host", "example"), ("name", "ana")] {
            expected.extend(1u32.to_le_bytes());
            for s in [n, v] {
                expected.extend((s.len() as u32).to_le_bytes());
                expected.extend(s.as_bytes());
            }
        }
        assert_eq!(packed, expected);
        assert_eq!(packed.capacity(), packed.len(), "sized exactly");
    }

    #[test]
    fn packing_from_the_pipeline_matches_packing_the_record() {
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "example".parse().unwrap());
        headers.append("x-raw", http::HeaderValue::from_bytes(b"caf\xe9").unwrap());
        headers.append("x-raw", "two".parse().unwrap());
        for peer in ["127.0.0.1:9", "[::1]:443", "[fe80::1%2]:8080"] {
            let peer: SocketAddr = peer.parse().unwrap();
            let mut record = request();
            record.headers = vec![
                ("host".into(), "example".into()),
                ("x-raw".into(), "caf\u{fffd}".into()),
                ("x-raw".into(), "two".into()),
            ];
            record.context.client_addr = peer.to_string();
            record.context.claims = Some("{\"sub\":\"ana\"}".into());
            let fields = Fields {
                body: b"abc",
                method: "GET",
                path: "/hello/ana",
                query: "greeting=Hi",
                request_id: "r1",
                client_addr: Address::Socket(peer),
                tenant: Some("acme"),
                claims: Some("{\"sub\":\"ana\"}"),
                params: &record.params,
            };
            let direct = fields.pack(header_size(&headers), header_text(&headers));
            assert_eq!(direct, pack(&record), "from {peer}");
        }
    }
}
