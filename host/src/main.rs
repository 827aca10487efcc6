//! The `cello-host` binary.

fn main() -> std::process::ExitCode {
    cello_host::cli::main()
}
