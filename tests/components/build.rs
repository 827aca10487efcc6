//! Builds every guest component the integration tests serve: the examples
//! and the test guests, Rust ones with cargo for wasm32-wasip2, Python
//! ones with `python -m cello build` (or componentize-py itself, for those
//! written to its own bindings), and JavaScript ones with componentize-js,
//! installed from npm at the version its lock file pins. The directory they
//! land in is given to the tests as `CELLO_TEST_COMPONENTS`.
//!
//! The three kinds build at once, each on a thread of its own, so that a
//! core the rest of the build leaves idle goes to them (the Rust guests'
//! cargo shares the jobserver of the `cargo test` that runs this).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Rust guests: (workspace, package, component name).
const RUST_GUESTS: &[(&str, &str, &str)] = &[
    ("guest-rust", "hello", "hello-rust"),
    ("guest-rust", "items", "items-rust"),
    ("guest-rust", "http-proxy", "http-proxy"),
    ("tests/guests", "testbed", "testbed"),
    ("tests/guests", "bad-describe", "bad-describe"),
    ("tests/guests", "wrong-packed", "wrong-packed"),
    ("tests/guests", "rust-caps", "rust-caps"),
    ("tests/guests", "rust-stream", "rust-stream"),
    ("tests/guests", "rust-sql", "rust-sql"),
    ("tests/guests", "proxy-testbed", "proxy-testbed"),
    ("tests/guests", "slow-start", "slow-start"),
    ("tests/guests", "wasi-config", "wasi-config"),
    ("tests/guests", "wasi-keyvalue", "wasi-keyvalue"),
    ("tests/guests", "p3-testbed", "p3-testbed"),
];

/// Rust guests built again with cello-sdk's `sync` feature, in a target
/// directory of their own (cargo would otherwise unify the feature into
/// every guest of the workspace): (workspace, package, component name).
const RUST_SYNC_GUESTS: &[(&str, &str, &str)] = &[
    ("guest-rust", "hello", "hello-rust-sync"),
    ("tests/guests", "rust-caps", "rust-caps-sync"),
    ("tests/guests", "rust-sql", "rust-sql-sync"),
];

/// Python guests: (app file, component name).
const PYTHON_GUESTS: &[(&str, &str)] = &[
    ("guest-python/examples/hello/app.py", "hello-python"),
    ("tests/guests/python-testbed/app.py", "python-testbed"),
    ("tests/guests/python-caps/app.py", "python-caps"),
    ("guest-python/examples/items/app.py", "items"),
    ("guest-python/examples/todos/todos.py", "todos"),
    ("tests/guests/python-pydantic/app.py", "python-pydantic"),
    ("tests/guests/python-stream/app.py", "python-stream"),
];

/// Python guests written to componentize-py's own bindings of the world
/// `app` in their directory's `wit/`, built with componentize-py alone:
/// (directory, component name).
const COMPONENTIZE_PY_GUESTS: &[(&str, &str)] = &[("tests/guests/python-p3", "python-p3")];

/// JavaScript guests, built with componentize-js against the WIT world in
/// [`JS_GUESTS_DIR`]: (source file there, component name).
const JS_GUESTS: &[(&str, &str)] = &[
    ("fetch-event.js", "js-fetch-event"),
    ("incoming-handler.js", "js-incoming-handler"),
];

/// The JavaScript guests, their world, and the npm package that pins
/// componentize-js.
const JS_GUESTS_DIR: &str = "tests/guests/js-http";

/// What a change to should rebuild the guests.
const INPUTS: &[&str] = &[
    "wit",
    "guest-rust/Cargo.toml",
    "guest-rust/sdk",
    "guest-rust/examples/hello/src",
    "guest-rust/examples/items/src",
    "guest-rust/examples/http-proxy/src",
    "guest-rust/examples/notes/src",
    "guest-rust/examples/notes/Cargo.toml",
    "tests/guests/Cargo.toml",
    "tests/guests/testbed/src",
    "tests/guests/bad-describe/src",
    "tests/guests/wrong-packed/src",
    "tests/guests/wrong-packed/wit",
    "tests/guests/rust-caps/src",
    "tests/guests/rust-stream/src",
    "tests/guests/rust-sql/src",
    "tests/guests/rust-sql/migrations",
    "tests/guests/proxy-testbed/src",
    "tests/guests/slow-start/src",
    "tests/guests/wasi-config/src",
    "tests/guests/wasi-config/wit",
    "tests/guests/wasi-keyvalue/src",
    "host/wit/wasi-keyvalue",
    "tests/guests/p3-testbed/src",
    "tests/guests/python-testbed",
    "tests/guests/python-caps",
    "tests/guests/python-pydantic",
    "tests/guests/js-http",
    "tests/guests/python-p3",
    "tests/guests/python-stream",
    "guest-python/cello",
    "guest-python/examples",
];

fn main() {
    let root = PathBuf::from(env("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("this crate is tests/components in the repository")
        .to_path_buf();
    let out = PathBuf::from(env("OUT_DIR"));
    // A directory that outlives this build script's OUT_DIR, so a change
    // here does not rebuild the guests from nothing.
    let target = out
        .ancestors()
        .nth(4)
        .expect("OUT_DIR is target/PROFILE/build/PKG/out");
    let components = target.join("test-components");
    std::fs::create_dir_all(&components).unwrap();
    for input in INPUTS {
        println!("cargo:rerun-if-changed={}", root.join(input).display());
    }
    println!("cargo:rerun-if-env-changed=CELLO_PYTHON");

    let python = python(&root);
    std::thread::scope(|threads| {
        let rust_guests = threads.spawn(|| {
            let wasm_target = target.join("wasm-guests");
            for workspace in ["guest-rust", "tests/guests"] {
                build_rust_workspace(&root.join(workspace), &wasm_target);
            }
            let sync_target = target.join("wasm-guests-sync");
            for (workspace, package, _) in RUST_SYNC_GUESTS {
                build_rust_sync(&root.join(workspace), package, &sync_target);
            }
            let copy = |target: &Path, package: &str, name: &str| {
                let built = target
                    .join("wasm32-wasip2/release")
                    .join(format!("{}.wasm", package.replace('-', "_")));
                std::fs::copy(&built, components.join(format!("{name}.wasm")))
                    .unwrap_or_else(|e| panic!("cannot copy {}: {e}", built.display()));
            };
            for (_, package, name) in RUST_GUESTS {
                copy(&wasm_target, package, name);
            }
            for (_, package, name) in RUST_SYNC_GUESTS {
                copy(&sync_target, package, name);
            }
            build_notes_example(&root, target);
        });
        let python_guests = threads.spawn(|| {
            for (app, name) in PYTHON_GUESTS {
                build_python(&root, &python, &root.join(app), &components, name);
            }
            for (dir, name) in COMPONENTIZE_PY_GUESTS {
                build_componentize_py(&python, &root.join(dir), &components, name);
            }
        });
        let js_guests = threads.spawn(|| {
            let componentize_js = componentize_js(&root, target);
            for (source, name) in JS_GUESTS {
                build_js(&root, &componentize_js, source, &components, name);
            }
        });
        for build in [rust_guests, python_guests, js_guests] {
            if let Err(panic) = build.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
    println!(
        "cargo:rustc-env=CELLO_TEST_COMPONENTS={}",
        components.display()
    );
    println!("cargo:rustc-env=CELLO_TEST_PYTHON={}", python.display());
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

fn build_rust_workspace(workspace: &Path, target_dir: &Path) {
    build_rust(workspace, &[], target_dir);
}

/// Runs `cargo build` for wasm32-wasip2 on `workspace` with `args`.
fn build_rust(workspace: &Path, args: &[&str], target_dir: &Path) {
    let status = cargo_wasm_build()
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .args(args)
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .expect("cannot run cargo");
    assert!(
        status.success(),
        "building the guests in {} ({}) failed; is the wasm32-wasip2 target installed? \
         (`rustup target add wasm32-wasip2`, or run `make test`)",
        workspace.display(),
        args.join(" ")
    );
}

/// `package` of `workspace`, with cello-sdk's `sync` feature.
fn build_rust_sync(workspace: &Path, package: &str, target_dir: &Path) {
    let args = ["-p", package, "--features", "cello-sdk/sync"];
    build_rust(workspace, &args, target_dir);
}

/// `cargo build --release --target wasm32-wasip2`, without the flags meant
/// for the host build.
fn cargo_wasm_build() -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    command
}

/// The notes example's component, built as its own test builds it
/// (`guest-rust/examples/notes/tests/component.rs`: the same command, in
/// the same target directory), so that its cargo finds it built instead of
/// spending the last minute of `cargo test` on it. A failure here is left
/// for that test to report.
fn build_notes_example(root: &Path, target: &Path) {
    let _ = cargo_wasm_build()
        .current_dir(root.join("guest-rust/examples/notes"))
        .arg("--target-dir")
        .arg(target.join("tmp/component"))
        .status();
}

fn python(root: &Path) -> PathBuf {
    let python = std::env::var_os("CELLO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    assert!(
        python.exists(),
        "{} not found: the Python guests need the project's .venv with componentize-py. \
         Run `make test`, or set CELLO_PYTHON to a Python that has it.",
        python.display()
    );
    python
}

/// Builds one Python app, skipped when its inputs hash to what built it last.
fn build_python(root: &Path, python: &Path, app: &Path, components: &Path, name: &str) {
    let inputs = [
        app.parent().unwrap(),
        &root.join("guest-python/cello"),
        &root.join("wit"),
    ];
    let Some(stale) = Stale::check(components.join(format!("{name}.wasm")), &inputs) else {
        return;
    };
    let status = Command::new(python)
        .args(["-m", "cello", "build"])
        .arg(app)
        .arg("-o")
        .arg(&stale.output)
        .env("PYTHONPATH", root.join("guest-python"))
        .status()
        .expect("cannot run python");
    assert!(status.success(), "building {} failed", app.display());
    stale.built();
}

/// Builds one app of componentize-py's own, `app.py` in `dir`, with the
/// componentize-py beside `python`.
fn build_componentize_py(python: &Path, dir: &Path, components: &Path, name: &str) {
    let Some(stale) = Stale::check(components.join(format!("{name}.wasm")), &[dir]) else {
        return;
    };
    let status = Command::new(python.with_file_name("componentize-py"))
        .arg("-d")
        .arg(dir.join("wit"))
        .args(["-w", "app", "componentize", "-p"])
        .arg(dir)
        .arg("app")
        .arg("-o")
        .arg(&stale.output)
        .status()
        .expect("cannot run componentize-py");
    assert!(status.success(), "building {} failed", dir.display());
    stale.built();
}

/// componentize-js, installed with npm into `target/js-tools` from the
/// lock file beside the JavaScript guests, again only when that changes:
/// the path of its command.
fn componentize_js(root: &Path, target: &Path) -> PathBuf {
    let tools = target.join("js-tools");
    let guests = root.join(JS_GUESTS_DIR);
    std::fs::create_dir_all(&tools).unwrap();
    let command = tools.join("node_modules/.bin/componentize-js");
    let pins = [
        guests.join("package.json"),
        guests.join("package-lock.json"),
    ];
    let pins: Vec<&Path> = pins.iter().map(PathBuf::as_path).collect();
    let Some(stale) = Stale::check(tools.join("node_modules"), &pins) else {
        return command;
    };
    for pin in &pins {
        std::fs::copy(pin, tools.join(pin.file_name().unwrap())).unwrap();
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&tools)
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "installing componentize-js with `npm ci` in {} failed; are Node.js and npm installed? \
         (`apt-get install nodejs npm`, or run `make test`)",
        tools.display()
    );
    stale.built();
    command
}

/// Builds one JavaScript guest with componentize-js, skipped when its
/// directory hashes to what built it last.
fn build_js(root: &Path, componentize_js: &Path, source: &str, components: &Path, name: &str) {
    let guests = root.join(JS_GUESTS_DIR);
    let Some(stale) = Stale::check(components.join(format!("{name}.wasm")), &[&guests]) else {
        return;
    };
    let status = Command::new("node")
        .arg(componentize_js)
        .arg("--wit")
        .arg(guests.join("wit"))
        .args(["--world-name", "handler", "-o"])
        .arg(&stale.output)
        .arg(guests.join(source))
        .status()
        .expect("cannot run node; run `make test`, which installs it");
    assert!(
        status.success(),
        "building {source} with componentize-js failed"
    );
    stale.built();
}

/// An output to build again, its inputs having changed since the stamp
/// beside it was written.
struct Stale {
    output: PathBuf,
    stamp: PathBuf,
    fingerprint: String,
}

impl Stale {
    /// `output`, unless it exists and `inputs` hash to the fingerprint in
    /// the stamp beside it.
    fn check(output: PathBuf, inputs: &[&Path]) -> Option<Self> {
        let stamp = output.with_extension("inputs");
        let mut hasher = DefaultHasher::new();
        for input in inputs {
            hash_tree(input, &mut hasher);
        }
        let fingerprint = format!("{:016x}", hasher.finish());
        let current = std::fs::read_to_string(&stamp).ok().as_deref() == Some(&fingerprint);
        let stale = Self {
            output,
            stamp,
            fingerprint,
        };
        (!current || !stale.output.exists()).then_some(stale)
    }

    /// Records that the output was built from the inputs as they are.
    fn built(self) {
        std::fs::write(self.stamp, self.fingerprint).unwrap();
    }
}

fn hash_tree(path: &Path, hasher: &mut DefaultHasher) {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !p.ends_with("__pycache__"))
            .collect();
        entries.sort();
        for entry in entries {
            hash_tree(&entry, hasher);
        }
    } else if let Ok(bytes) = std::fs::read(path) {
        path.file_name().hash(hasher);
        bytes.hash(hasher);
    }
}
