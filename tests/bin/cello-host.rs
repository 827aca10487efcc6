//! The `cello-host` CLI, built in this package for the integration tests.

fn main() -> std::process::ExitCode {
    cello_host::cli::main()
}
