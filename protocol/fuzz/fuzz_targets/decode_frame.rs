//! Fuzzes the frame decoders: arbitrary bytes must give messages or errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rustle_protocol::{
    AgentToCoordinator, BulkHeader, CoordinatorToAgent, FrameDecoder, Hello, MAX_FRAME_LEN, WireMessage, decode_frame,
    encode_frame,
};

/// Decodes `data` as one `M` frame; whatever decodes must re-encode to a
/// frame that decodes and re-encodes to the same bytes.
fn check<M: WireMessage>(data: &[u8]) {
    let Ok((message, _)) = decode_frame::<M>(data, MAX_FRAME_LEN) else {
        return;
    };
    let frame = encode_frame(&message).expect("a decoded message re-encodes");
    let (again, used) = decode_frame::<M>(&frame, MAX_FRAME_LEN).expect("a re-encoded frame decodes");
    assert_eq!(used, frame.len());
    assert_eq!(encode_frame(&again).expect("re-encodes"), frame);
}

fuzz_target!(|data: &[u8]| {
    check::<Hello>(data);
    check::<CoordinatorToAgent>(data);
    check::<AgentToCoordinator>(data);
    check::<BulkHeader>(data);

    // The same bytes through the incremental decoder, in reads of a size
    // taken from the first byte, as a control stream after its hello.
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let mut decoder = FrameDecoder::with_max_frame_len(1 << 16);
    let mut greeted = false;
    for read in rest.chunks(usize::from(chunk.max(1))) {
        decoder.push_bytes(read);
        loop {
            let polled = if greeted {
                decoder.poll_message::<AgentToCoordinator>().map(|m| m.is_some())
            } else {
                decoder.poll_message::<Hello>().map(|m| m.is_some())
            };
            match polled {
                Ok(true) => greeted = true,
                Ok(false) => break,
                Err(_) => return,
            }
        }
    }
    let _ = decoder.finish();
});
