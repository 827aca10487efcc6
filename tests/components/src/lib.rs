//! Where the build script put the guest components the integration tests
//! serve, and the Python that built the Python ones.

/// The directory of built components (`NAME.wasm`).
pub const DIR: &str = env!("CELLO_TEST_COMPONENTS");

/// The project's Python, with the Python SDK and componentize-py.
pub const PYTHON: &str = env!("CELLO_TEST_PYTHON");
