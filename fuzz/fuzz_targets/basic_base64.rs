//! The Basic credentials' base64 decoder against the `base64` crate's `STANDARD` engine, which
//! it replaced: the same inputs accepted, the same bytes out, and nothing left in the output
//! buffer when an input is refused.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use tower_mlflow_auth::__fuzz::decode_basic_base64;

fuzz_target!(|data: &[u8]| {
    let room = data.len() / 4 * 3;
    let mut ours = vec![0_u8; room];
    let mut theirs = vec![0_u8; room];
    let our_answer = decode_basic_base64(data, &mut ours);
    let their_answer = base64::engine::general_purpose::STANDARD
        .decode_slice(data, &mut theirs)
        .ok();
    assert_eq!(our_answer, their_answer, "accepted differently: {data:?}");
    match our_answer {
        Some(len) => assert_eq!(ours[..len], theirs[..len], "decoded differently: {data:?}"),
        None => assert!(
            ours.iter().all(|&b| b == 0),
            "refused but left bytes: {data:?}"
        ),
    }
});
