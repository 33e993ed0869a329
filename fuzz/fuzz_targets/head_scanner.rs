//! Fuzzes the raw-byte framing scanner (`proxy::framing::HeadScanner`): arbitrary bytes never panic, and the
//! verdicts do not depend on how the stream is cut into reads (a head judged whole and a head judged in
//! pieces are judged alike), whatever heads come before: its judgement holds for every request of a
//! connection or, once it has stopped, for none.
#![no_main]

use libfuzzer_sys::fuzz_target;
use permgate::proxy::framing::{HeadScanner, HeadVerdict};

/// Feeds `stream` in reads whose lengths cycle through `cuts`, then takes verdicts until the first unjudged
/// one (at most one per byte, so this always ends).
fn verdicts(stream: &[u8], cuts: &[u8]) -> Vec<HeadVerdict> {
    let mut scanner = HeadScanner::default();
    let mut rest = stream;
    let mut lengths = cuts.iter().cycle();
    while !rest.is_empty() {
        let length = lengths
            .next()
            .map_or(rest.len(), |&cut| usize::from(cut).max(1))
            .min(rest.len());
        let (read, after) = rest.split_at(length);
        scanner.feed(read);
        rest = after;
    }
    let mut out = Vec::new();
    for _ in 0..=stream.len() {
        let verdict = scanner.next_verdict();
        out.push(verdict);
        if matches!(verdict, HeadVerdict::Unjudged(_)) {
            break;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    // Input: the first byte says how many of the next bytes are read lengths; the rest is the stream.
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 16).min(rest.len());
    let (cuts, stream) = rest.split_at(count);
    let whole = verdicts(stream, &[]);
    let pieces = verdicts(stream, cuts);
    let bytes = verdicts(stream, &[1]);
    assert_eq!(whole, pieces, "cut into reads of {cuts:?}");
    assert_eq!(whole, bytes, "cut into single bytes");
});
