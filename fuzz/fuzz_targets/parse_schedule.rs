//! Feeds arbitrary bytes to the schedule parser: it must return a schedule or an error, never
//! panic, overflow its stack or loop forever.
//!
//! ```sh
//! cargo +nightly fuzz run parse_schedule -- -max_len=4096
//! ```

#![no_main]

use highway_ratelimit::schedule::{ParseOptions, Schedule};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Schedule::parse(&text, &ParseOptions::named("fuzz.tjp"));
});
