//! The files the host serves itself, under [`PATH`], whatever components
//! are in service: Swagger UI's, which the docs page of any component with
//! an OpenAPI document loads from here. So no component carries Swagger
//! UI's 1.7 MB, and no browser fetches it from the internet.
//!
//! The files are vendored, unchanged, from npm's `swagger-ui-dist`
//! (`host/assets/swagger-ui/README.md` says which version, why vendored,
//! and how to update them) and embedded in the binary, the larger ones
//! also gzipped by the build script.

use std::sync::LazyLock;

/// The path the host answers under for itself: no component may declare a
/// route under it, and a request under it never reaches a component.
pub const PATH: &str = "/_cello/";

/// One file the host serves.
pub struct HostFile {
    /// Where it is served: a path under [`PATH`].
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    /// The same bytes gzipped, for the files worth it.
    pub gzip: Option<&'static [u8]>,
}

/// A Swagger UI file of `host/assets/swagger-ui`, at `/_cello/swagger-ui/`,
/// with its gzipped bytes when the build script made them.
macro_rules! swagger_ui {
    ($name:literal, $content_type:literal) => {
        swagger_ui!($name, $content_type, None)
    };
    ($name:literal, $content_type:literal, gzipped) => {
        swagger_ui!(
            $name,
            $content_type,
            Some(include_bytes!(concat!(
                env!("OUT_DIR"),
                "/swagger-ui/",
                $name,
                ".gz"
            )))
        )
    };
    ($name:literal, $content_type:literal, $gzip:expr) => {
        HostFile {
            path: concat!("/_cello/swagger-ui/", $name),
            content_type: $content_type,
            bytes: include_bytes!(concat!("../assets/swagger-ui/", $name)),
            gzip: $gzip,
        }
    };
}

/// Every file the host serves.
pub static FILES: [HostFile; 3] = [
    swagger_ui!(
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        gzipped
    ),
    swagger_ui!("swagger-ui.css", "text/css; charset=utf-8", gzipped),
    swagger_ui!("favicon-32x32.png", "image/png"),
];

/// Each file's version, in the order of [`FILES`]: a hash of its bytes,
/// so it changes exactly when the file does.
static VERSIONS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let hash = |file: &HostFile| format!("{:016x}", xxhash_rust::xxh3::xxh3_64(file.bytes));
    FILES.iter().map(hash).collect()
});

/// The file served at `path`, with its version.
pub fn find(path: &str) -> Option<(&'static HostFile, &'static str)> {
    let index = FILES.iter().position(|file| file.path == path)?;
    Some((&FILES[index], &VERSIONS[index]))
}

/// True when `pattern`, a route's path, is under [`PATH`].
pub fn is_reserved(pattern: &str) -> bool {
    pattern.starts_with(PATH) || pattern == PATH.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn every_file_is_found_at_its_path_with_a_version_of_its_own() {
        let mut versions = Vec::new();
        for file in &FILES {
            let (found, version) = find(file.path).expect("served");
            assert!(std::ptr::eq(found, file));
            assert!(is_reserved(file.path), "{}", file.path);
            assert!(!file.bytes.is_empty(), "{} is empty", file.path);
            versions.push(version);
        }
        versions.dedup();
        assert_eq!(versions.len(), FILES.len());
        assert!(find("/_cello/swagger-ui/index.html").is_none());
    }

    #[test]
    fn a_gzipped_file_unzips_to_the_file() {
        let (bundle, _) = find("/_cello/swagger-ui/swagger-ui-bundle.js").unwrap();
        let gzip = bundle.gzip.expect("the bundle is gzipped");
        assert!(gzip.len() < bundle.bytes.len() / 3);
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(gzip)
            .read_to_end(&mut unzipped)
            .unwrap();
        assert!(unzipped == bundle.bytes);
    }

    #[test]
    fn only_paths_under_the_hosts_own_are_reserved() {
        assert!(is_reserved("/_cello"));
        assert!(is_reserved("/_cello/anything"));
        assert!(!is_reserved("/_cellophane"));
        assert!(!is_reserved("/docs/_cello/x"));
    }
}
