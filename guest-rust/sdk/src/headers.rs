//! Headers as they cross between a guest and the host, read as a map
//! only when a handler asks.

use std::ops::{Deref, DerefMut};
use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};

/// A request's or response's headers: a [`HeaderMap`] to read and change
/// (it derefs to one), kept as the list of names and values that crosses
/// to and from the host until a handler looks at the map. A route that
/// never does builds none: no hashing, and no copies either way.
#[derive(Clone, Default)]
pub struct Headers {
    /// Lower-case names and their values, in order; stale once `map` is
    /// built, which is then the headers.
    wire: Vec<(String, String)>,
    map: OnceLock<HeaderMap>,
}

impl Headers {
    pub(crate) fn from_wire(wire: Vec<(String, String)>) -> Self {
        Self {
            wire,
            map: OnceLock::new(),
        }
    }

    /// The first value of header `name` (any case), if it is text, read
    /// without building the map when it is not built yet.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        match self.map.get() {
            Some(map) => map.get(name).and_then(|v| v.to_str().ok()),
            // As the map would answer: the first value it would keep (see
            // `build`), if that is visible ASCII.
            None => self
                .wire
                .iter()
                .find(|(n, v)| {
                    n.eq_ignore_ascii_case(name)
                        && v.bytes().all(|b| b == b'\t' || (b >= 32 && b != 127))
                })
                .map(|(_, v)| v.as_str())
                .filter(|v| v.bytes().all(|b| b == b'\t' || (32..127).contains(&b))),
        }
    }

    /// The headers as an owned [`HeaderMap`].
    pub fn to_map(&self) -> HeaderMap {
        self.deref().clone()
    }

    /// One more header, already checked as HTTP; kept on the list unless
    /// the map is built.
    pub(crate) fn append(&mut self, name: HeaderName, value: HeaderValue) {
        match self.map.get_mut() {
            Some(map) => {
                map.append(name, value);
            }
            None => self.wire.push((name.as_str().to_owned(), text(&value))),
        }
    }

    /// The headers as they cross to the host: the list as it is, or the
    /// map's entries once it is built.
    pub(crate) fn into_wire(self) -> Vec<(String, String)> {
        match self.map.into_inner() {
            None => self.wire,
            Some(map) => map
                .iter()
                .map(|(name, value)| (name.as_str().to_owned(), text(value)))
                .collect(),
        }
    }

    fn build(&self) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(self.wire.len());
        for (name, value) in &self.wire {
            // The host sends only valid headers; a stray one is dropped.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(name, value);
            }
        }
        headers
    }
}

impl Deref for Headers {
    type Target = HeaderMap;

    fn deref(&self) -> &HeaderMap {
        self.map.get_or_init(|| self.build())
    }
}

impl DerefMut for Headers {
    fn deref_mut(&mut self) -> &mut HeaderMap {
        self.map.get_or_init(|| self.build());
        self.wire = Vec::new();
        self.map.get_mut().expect("built above")
    }
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.deref().fmt(f)
    }
}

impl From<HeaderMap> for Headers {
    fn from(map: HeaderMap) -> Self {
        Self {
            wire: Vec::new(),
            map: OnceLock::from(map),
        }
    }
}

impl From<Headers> for HeaderMap {
    fn from(mut headers: Headers) -> Self {
        match headers.map.take() {
            Some(map) => map,
            None => headers.build(),
        }
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.deref() == other.deref()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a HeaderName, &'a HeaderValue);
    type IntoIter = http::header::Iter<'a, HeaderValue>;

    fn into_iter(self) -> Self::IntoIter {
        self.deref().iter()
    }
}

/// A header value as text; bytes that are not UTF-8 are replaced.
fn text(value: &HeaderValue) -> String {
    match value.to_str() {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use http::header::{CONTENT_TYPE, SET_COOKIE};

    use super::*;

    fn wire(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn appended_headers_cross_as_appended_without_a_map() {
        let mut headers = Headers::default();
        headers.append(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        headers.append(SET_COOKIE, HeaderValue::from_static("a=1"));
        headers.append(SET_COOKIE, HeaderValue::from_static("b=2"));
        assert!(headers.map.get().is_none());
        assert_eq!(headers.get_str("Set-Cookie"), Some("a=1"));
        assert_eq!(
            headers.into_wire(),
            wire(&[
                ("content-type", "text/plain"),
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2")
            ])
        );
    }

    #[test]
    fn once_the_map_is_changed_it_is_what_crosses() {
        let mut headers = Headers::from_wire(wire(&[("x-a", "1"), ("x-b", "2")]));
        headers.remove("x-a");
        headers.append(CONTENT_TYPE, HeaderValue::from_static("text/html"));
        assert_eq!(headers.get_str("x-a"), None);
        assert_eq!(
            headers.into_wire(),
            wire(&[("x-b", "2"), ("content-type", "text/html")])
        );
    }

    #[test]
    fn a_value_that_is_not_utf8_crosses_with_its_bytes_replaced() {
        let mut headers = Headers::default();
        let value = HeaderValue::from_bytes(b"caf\xe9").unwrap();
        headers.append(HeaderName::from_static("x-name"), value);
        assert_eq!(headers.into_wire(), wire(&[("x-name", "caf\u{fffd}")]));
    }

    #[test]
    fn a_value_that_is_not_visible_ascii_is_no_text_read_either_way() {
        let headers = Headers::from_wire(wire(&[("x-name", "Zoë")]));
        assert_eq!(headers.get_str("x-name"), None);
        assert_eq!(headers.get("x-name").unwrap().as_bytes(), "Zoë".as_bytes());
        assert_eq!(headers.get_str("x-name"), None);
    }
}
