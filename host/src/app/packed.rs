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

use crate::bindings::Request;

/// The length that stands for an absent optional string.
const NONE: u32 = u32::MAX;

/// The body's length and `request` packed. The body is copied in, once
/// more than `handle` copies it: a memcpy, which costs a large upload less
/// than the ten calls into the guest saved cost a small request. None when
/// a part is too long for its 4-byte length: that request goes through
/// `handle`.
pub(super) fn pack(request: &Request) -> Option<(u32, Vec<u8>)> {
    let body_len = u32::try_from(request.body.len()).ok()?;
    let context = &request.context;
    let strings = [
        request.method.as_str(),
        &request.path,
        &request.query,
        &context.request_id,
        &context.client_addr,
    ];
    let optional = [context.tenant.as_deref(), context.claims.as_deref()];
    let pairs = [&request.headers, &request.params];
    let text_len = strings.iter().map(|s| 4 + s.len()).sum::<usize>()
        + optional
            .iter()
            .map(|s| 4 + s.map_or(0, str::len))
            .sum::<usize>()
        + pairs
            .iter()
            .map(|list| {
                4 + list
                    .iter()
                    .map(|(n, v)| 8 + n.len() + v.len())
                    .sum::<usize>()
            })
            .sum::<usize>();
    let mut out = Vec::with_capacity(request.body.len() + text_len);
    out.extend_from_slice(&request.body);
    for s in strings {
        put(&mut out, s)?;
    }
    for s in optional {
        match s {
            Some(s) => put(&mut out, s)?,
            None => out.extend_from_slice(&NONE.to_le_bytes()),
        }
    }
    for list in pairs {
        out.extend_from_slice(&u32::try_from(list.len()).ok()?.to_le_bytes());
        for (name, value) in list {
            put(&mut out, name)?;
            put(&mut out, value)?;
        }
    }
    Some((body_len, out))
}

fn put(out: &mut Vec<u8>, s: &str) -> Option<()> {
    let len = u32::try_from(s.len()).ok().filter(|&len| len != NONE)?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Some(())
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
}
