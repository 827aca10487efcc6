//! The `cello-host` binary.

// The request path allocates small, short-lived buffers on two threads at
// once; mimalloc serves that pattern markedly faster than glibc's malloc.
#[global_allocator]
static ALLOCATOR: cello_host::allocator::Allocator = cello_host::allocator::Allocator;

fn main() -> std::process::ExitCode {
    cello_host::cli::main()
}
