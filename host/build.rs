//! Gzips the larger files the host serves itself (`src/host_files.rs`)
//! once, at build time, so that no request pays for compressing Swagger
//! UI's 1.7 MB, and no client can make the host do it again and again.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

/// The files of `assets/` served gzipped to clients that accept it.
const GZIPPED: &[&str] = &[
    "swagger-ui/swagger-ui-bundle.js",
    "swagger-ui/swagger-ui.css",
];

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for file in GZIPPED {
        let source = Path::new("assets").join(file);
        println!("cargo:rerun-if-changed={}", source.display());
        let bytes = std::fs::read(&source)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", source.display()));
        let mut gzip = GzEncoder::new(Vec::new(), Compression::best());
        gzip.write_all(&bytes).expect("writing to memory");
        let target = out.join(format!("{file}.gz"));
        std::fs::create_dir_all(target.parent().unwrap()).expect("OUT_DIR is writable");
        std::fs::write(&target, gzip.finish().expect("writing to memory"))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", target.display()));
    }
}
