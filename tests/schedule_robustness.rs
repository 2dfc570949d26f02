//! Parsing never panics: arbitrary bytes, and soups of the language's own tokens.

use highway_ratelimit::schedule::{ParseOptions, Schedule};
use proptest::prelude::*;

const VOCABULARY: &[&str] = &[
    "project",
    "\"P\"",
    "2025-01-01",
    "2025-12-31-23:00",
    "2025-02-30",
    "+1y",
    "+",
    "-",
    "1",
    "0",
    "2.5",
    "d",
    "m",
    "min",
    "{",
    "}",
    ",",
    "timezone",
    "\"Europe/Berlin\"",
    "\"x/y\"",
    "timingresolution",
    "15",
    "workinghours",
    "mon",
    "fri",
    "9:00",
    "22:00",
    "24:00",
    "off",
    "shift",
    "s",
    "resource",
    "r",
    "vacation",
    "leaves",
    "holiday",
    "limits",
    "dailymax",
    "weeklymax",
    "500",
    "period",
    "days",
    "hours",
    "resources",
    "task",
    "t",
    "supplement",
    "include",
    "\"a.tji\"",
    "macro",
    "[",
    "]",
    "${m}",
    "${projectstart}",
    "${?x}",
    "$(HOME)",
    "#",
    "//",
    "/*",
    "*/",
    "\n",
    "plan:",
    "replace",
    "shifts",
    "now",
    "'",
    "\"",
    "resourceprefix",
    "${m \"a\"}",
    "\u{E000}",
    "\u{E003}",
];

fn parse(text: &str) {
    let _ = Schedule::parse(text, &ParseOptions::named("fuzz.tjp"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn token_soup_never_panics(
        header in any::<bool>(),
        words in proptest::collection::vec(proptest::sample::select(VOCABULARY), 0..60),
    ) {
        let mut text = String::new();
        if header {
            text.push_str("project \"P\" 2025-01-01 +1y {\n");
        }
        text.push_str(&words.join(" "));
        parse(&text);
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let text = format!(
        "project \"P\" 2025-01-01 +1y\n{}",
        "resource r \"R\" {".repeat(10_000)
    );
    let error = Schedule::parse(&text, &ParseOptions::named("deep.tjp")).unwrap_err();
    assert!(
        error.diagnostics[0]
            .message
            .contains("nested more than 64 levels"),
        "{error}"
    );

    let text = format!(
        "project \"P\" 2025-01-01 +1y\ntask t \"T\" {}",
        "{".repeat(10_000)
    );
    assert!(Schedule::parse(&text, &ParseOptions::named("deep.tjp")).is_err());
}

#[test]
fn nesting_at_the_limit_parses() {
    const LEVELS: usize = 64;
    let mut text = String::from("project \"P\" 2025-01-01 +1y\n");
    for level in 0..LEVELS {
        text.push_str(&format!("resource r{level} \"R\" {{\n"));
    }
    text.push_str(&"}\n".repeat(LEVELS));
    let schedule = Schedule::parse(&text, &ParseOptions::named("deep.tjp")).unwrap();
    assert_eq!(schedule.resources.len(), LEVELS);
    assert!(schedule.resources[LEVELS - 1].parent.is_some());
}

#[test]
fn byte_order_mark_and_crlf_parse() {
    let text = "\u{FEFF}project p \"P\" 2025-01-01 +1y\r\nresource r \"R\"\r\n";
    let schedule = Schedule::parse(text, &ParseOptions::named("windows.tjp")).unwrap();
    assert_eq!(schedule.resources.len(), 1);
}
