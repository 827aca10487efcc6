//! The host's memory allocator: mimalloc, asked for an alignment only where
//! a type needs more than every mimalloc block has.
//!
//! The `mimalloc` crate's allocator hands every allocation to
//! `mi_malloc_aligned`, whose inlined fast path takes blocks of at most
//! 1 KiB. A larger one (a boxed request future, a connection's buffer) went
//! through its generic aligned path, out of line, which may also take a
//! block a few bytes larger than asked. Every mimalloc block is aligned to
//! a word, so an allocation asking no more goes to `mi_malloc` itself:
//! about 3% fewer instructions per request, counted by callgrind
//! (`bench/RESULTS.md`, "The host's allocator, called directly").

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment of every block mimalloc returns: a machine word, its
/// smallest size.
const ALWAYS_ALIGNED: usize = std::mem::size_of::<usize>();

/// mimalloc, as the host's `#[global_allocator]`.
pub struct Allocator;

// SAFETY: mimalloc returns blocks of at least the size asked, aligned to a
// word, or null; an alignment above a word goes to its aligned functions.
// `mi_free` and `mi_realloc` take any block either kind returned.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the functions take any size and a power-of-two alignment.
        unsafe {
            if layout.align() <= ALWAYS_ALIGNED {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            if layout.align() <= ALWAYS_ALIGNED {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`'s alignment,
        // which the new block keeps.
        unsafe {
            if layout.align() <= ALWAYS_ALIGNED {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_have_the_alignment_asked_and_keep_their_bytes_when_grown() {
        let allocator = Allocator;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [1, 7, 8, 24, 1000, 1025, 3000, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero size; each block is freed once, with
                // the layout it was made with.
                unsafe {
                    let block = allocator.alloc(layout);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "size {size}, align {align}");
                    block.write_bytes(0xa5, size);
                    let grown = allocator.realloc(block, layout, size * 3);
                    assert_eq!(grown as usize % align, 0, "grown {size}, align {align}");
                    assert!((0..size).all(|i| *grown.add(i) == 0xa5));
                    allocator.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());
                    let zeroed = allocator.alloc_zeroed(layout);
                    assert_eq!(zeroed as usize % align, 0);
                    assert!((0..size).all(|i| *zeroed.add(i) == 0));
                    allocator.dealloc(zeroed, layout);
                }
            }
        }
    }
}
