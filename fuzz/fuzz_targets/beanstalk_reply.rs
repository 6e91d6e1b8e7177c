#![no_main]
//! Any bytes from a "server", in any chunking: the beanstalk reply decoder
//! never panics, consumes nothing until a reply is complete, and yields the
//! same replies (and the same final error, if any) whether the bytes arrive
//! at once or in pieces.

use bytes::BytesMut;
use deskbus_beanstalk::{Codec, Reply};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

/// Decodes until the buffer runs dry or an error; `Err` carries the replies before it.
fn drain(codec: &mut Codec, buf: &mut BytesMut, out: &mut Vec<Reply>) -> Result<(), ()> {
    loop {
        let before = buf.clone();
        match codec.decode(buf) {
            Ok(Some(reply)) => out.push(reply),
            Ok(None) => {
                assert_eq!(*buf, before, "an incomplete reply was consumed");
                return Ok(());
            }
            Err(_) => return Err(()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, bytes)) = data.split_first() else {
        return;
    };
    let mut whole = Vec::new();
    let whole_end = drain(&mut Codec::new(), &mut BytesMut::from(bytes), &mut whole);

    let step = usize::from(step).max(1);
    let mut codec = Codec::new();
    let mut buf = BytesMut::new();
    let mut pieces = Vec::new();
    let mut pieces_end = Ok(());
    for chunk in bytes.chunks(step) {
        buf.extend_from_slice(chunk);
        pieces_end = drain(&mut codec, &mut buf, &mut pieces);
        if pieces_end.is_err() {
            break;
        }
    }
    assert_eq!(whole, pieces, "chunking changed the replies");
    assert_eq!(whole_end, pieces_end, "chunking changed the outcome");
});
