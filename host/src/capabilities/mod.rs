//! Host functions that guests import. Each capability is its own module and
//! adds itself to a linker.

pub mod cache;
pub mod host;
