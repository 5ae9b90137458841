//! Checks, with a counting allocator, that announced lengths are refused before anything is allocated for them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use rustle_protocol::{CodecError, FrameDecoder, Hello, MAX_FRAME_LEN, decode_frame};

thread_local! {
    /// Bytes allocated by this thread so far.
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

/// Forwards to the system allocator, counting bytes per thread.
struct CountingAllocator;

#[expect(unsafe_code, reason = "a global allocator is an unsafe trait; this one only counts and forwards to System")]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATED.try_with(|allocated| allocated.set(allocated.get() + layout.size()));
        // SAFETY: the caller's guarantees about `layout` are passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn bytes_allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATED.with(Cell::get);
    let result = f();
    (result, ALLOCATED.with(Cell::get) - before)
}

#[test]
fn oversized_length_prefix_is_refused_without_allocating() {
    let mut decoder = FrameDecoder::new();
    decoder.push_bytes(&u32::MAX.to_be_bytes());
    let (result, allocated) = bytes_allocated_by(|| decoder.poll_message::<Hello>());
    assert_eq!(result, Err(CodecError::FrameTooLarge { len: u32::MAX.into(), limit: MAX_FRAME_LEN }));
    assert_eq!(allocated, 0);
}

#[test]
fn announced_frame_is_not_reserved_while_it_arrives() {
    let mut decoder = FrameDecoder::new();
    decoder.push_bytes(&MAX_FRAME_LEN.to_be_bytes());
    let (result, allocated) = bytes_allocated_by(|| decoder.poll_message::<Hello>());
    assert_eq!(result, Ok(None));
    assert_eq!(allocated, 0);
}

#[test]
fn huge_length_inside_a_payload_is_refused_without_allocating_it() {
    // A hello whose version string claims 2^40 bytes (varint tag 0xfd: u64 follows).
    let payload = [&[0x01, 0xfd][..], &(1u64 << 40).to_le_bytes()].concat();
    let frame = [&(payload.len() as u32).to_be_bytes()[..], &payload].concat();
    let (result, allocated) = bytes_allocated_by(|| decode_frame::<Hello>(&frame, MAX_FRAME_LEN));
    assert!(matches!(result, Err(CodecError::Malformed { .. })), "{result:?}");
    assert!(allocated < 4096, "decoding allocated {allocated} bytes");
}
