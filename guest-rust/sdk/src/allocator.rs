//! The component's global allocator: small blocks come back from a free
//! list per size, and only the rest (and each list's first blocks) from
//! the allocator underneath, wasi-libc's dlmalloc.
//!
//! Hand-written because every allocator measured cost too much here. Under
//! callgrind (the hello example, 2026-12-02) a request made 16 allocations
//! in the guest, and each allocation and free through dlmalloc took about
//! 290 instructions: 4.6k of the guest's 8.6k per request. talc 5.1 and
//! rlsf 0.2 took as many. Popping and pushing a list takes a few dozen.
//!
//! A list keeps at most [`KEEP`] blocks; a block freed past that goes back
//! underneath, so what the lists hold is bounded (264 KiB at most,
//! were every list full).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr;

/// The step between sizes, and every listed block's alignment.
const STEP: usize = 16;
/// Sizes up to `STEP * SIZES` bytes (512) are listed.
const SIZES: usize = 32;
/// Blocks a list keeps at most.
const KEEP: u32 = 32;

/// An allocator that keeps freed small blocks for reuse, over `A`.
pub struct Listed<A> {
    inner: A,
    lists: UnsafeCell<[List; SIZES]>,
}

#[derive(Clone, Copy)]
struct List {
    head: *mut Free,
    len: u32,
}

/// A free block's first bytes: the next free block of its size.
struct Free {
    next: *mut Free,
}

// SAFETY: a component without the threads proposal (no `atomics` target
// feature) runs on one thread, so the lists are never reached from two at
// once.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl<A: Sync> Sync for Listed<A> {}

impl<A> Listed<A> {
    pub const fn new(inner: A) -> Self {
        Self {
            inner,
            lists: UnsafeCell::new(
                [List {
                    head: ptr::null_mut(),
                    len: 0,
                }; SIZES],
            ),
        }
    }
}

/// The list for `layout`, and the layout of its blocks; `None` for a block
/// too large or too aligned to be listed.
fn listed(layout: Layout) -> Option<(usize, Layout)> {
    if layout.align() > STEP || layout.size() > STEP * SIZES {
        return None;
    }
    let index = layout.size().max(1).div_ceil(STEP) - 1;
    // SAFETY: a nonzero multiple of 16, far below `isize::MAX`; 16 is a
    // power of two.
    let block = unsafe { Layout::from_size_align_unchecked((index + 1) * STEP, STEP) };
    Some((index, block))
}

impl<A: GlobalAlloc> Listed<A> {
    /// The lists. Only one `&mut` lives at a time: none outlives the
    /// function that takes it, and the allocator never calls itself.
    #[allow(clippy::mut_from_ref)]
    unsafe fn lists(&self) -> &mut [List; SIZES] {
        // SAFETY: see above, and the `Sync` impl.
        unsafe { &mut *self.lists.get() }
    }
}

// SAFETY: every block handed out is at least `layout.size()` bytes aligned
// to `layout.align()`: a listed one is its list's size (≥ the request) at
// 16; any other comes from `inner` with the caller's layout. A block goes
// back to the list it came from, or underneath with the layout it was
// taken with.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Listed<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some((index, block)) = listed(layout) else {
            return unsafe { self.inner.alloc(layout) };
        };
        let list = unsafe { &mut self.lists()[index] };
        if list.head.is_null() {
            return unsafe { self.inner.alloc(block) };
        }
        let free = list.head;
        list.head = unsafe { (*free).next };
        list.len -= 1;
        free.cast()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some((index, block)) = listed(layout) else {
            return unsafe { self.inner.dealloc(ptr, layout) };
        };
        let list = unsafe { &mut self.lists()[index] };
        if list.len >= KEEP {
            return unsafe { self.inner.dealloc(ptr, block) };
        }
        let free = ptr.cast::<Free>();
        unsafe { free.write(Free { next: list.head }) };
        list.head = free;
        list.len += 1;
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller promises `new_size` rounded up to the
        // alignment does not overflow `isize`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (listed(layout), listed(new_layout)) {
            // Both too large to list: as the allocator underneath does it,
            // in place when it can.
            (None, None) => unsafe { self.inner.realloc(ptr, layout, new_size) },
            // Still fits the block it has.
            (Some((from, _)), Some((to, _))) if from == to => ptr,
            _ => {
                let new = unsafe { self.alloc(new_layout) };
                if !new.is_null() {
                    let kept = layout.size().min(new_size);
                    unsafe { ptr::copy_nonoverlapping(ptr, new, kept) };
                    unsafe { self.dealloc(ptr, layout) };
                }
                new
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::alloc::System;
    use std::cell::Cell;

    use super::*;

    /// `System`, counting what reaches it.
    #[derive(Default)]
    struct Counted {
        allocs: Cell<usize>,
        frees: Cell<usize>,
    }

    unsafe impl GlobalAlloc for Counted {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            self.allocs.set(self.allocs.get() + 1);
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            self.frees.set(self.frees.get() + 1);
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn a_freed_small_block_is_handed_out_again_for_any_size_of_its_list() {
        let a = Listed::new(Counted::default());
        unsafe {
            let first = a.alloc(layout(20, 8));
            first.write_bytes(0xab, 20);
            a.dealloc(first, layout(20, 8));
            // 17 to 32 bytes share a list.
            let second = a.alloc(layout(32, 16));
            assert_eq!(second, first);
            assert_eq!(a.inner.allocs.get(), 1);
            a.dealloc(second, layout(32, 16));
        }
        assert_eq!(a.inner.frees.get(), 0, "kept on its list");
    }

    #[test]
    fn large_or_overaligned_blocks_go_underneath_every_time() {
        let a = Listed::new(Counted::default());
        unsafe {
            for l in [layout(513, 8), layout(64, 32), layout(4096, 4096)] {
                let p = a.alloc(l);
                assert_eq!(p as usize % l.align(), 0);
                a.dealloc(p, l);
            }
        }
        assert_eq!((a.inner.allocs.get(), a.inner.frees.get()), (3, 3));
    }

    #[test]
    fn a_list_keeps_a_bounded_number_of_blocks() {
        let a = Listed::new(Counted::default());
        let small = layout(8, 8);
        unsafe {
            let blocks: Vec<_> = (0..KEEP + 10).map(|_| a.alloc(small)).collect();
            for &p in &blocks {
                a.dealloc(p, small);
            }
        }
        assert_eq!(a.inner.frees.get(), 10);
        assert_eq!(unsafe { a.lists()[0].len }, KEEP);
    }

    #[test]
    fn realloc_keeps_the_bytes_across_lists_and_beyond_them() {
        let a = Listed::new(Counted::default());
        unsafe {
            let mut p = a.alloc(layout(10, 1));
            for i in 0..10 {
                p.add(i).write(i as u8);
            }
            let mut size = 10;
            // Within its list (16 bytes), then to larger lists, then past them.
            for new_size in [16, 100, 600, 5000, 40] {
                p = a.realloc(p, layout(size, 1), new_size);
                assert!(!p.is_null());
                let read: Vec<u8> = (0..10).map(|i| p.add(i).read()).collect();
                assert_eq!(read, (0..10).collect::<Vec<u8>>(), "at {new_size} bytes");
                size = new_size;
            }
            a.dealloc(p, layout(size, 1));
        }
        assert_eq!(
            a.inner.allocs.get(),
            a.inner.frees.get() + lists_holding(&a)
        );
    }

    fn lists_holding<A: GlobalAlloc>(a: &Listed<A>) -> usize {
        unsafe { a.lists().iter().map(|l| l.len as usize).sum() }
    }
}
