//! Each error of the schedule language: where it is reported and what the message says.

use highway_ratelimit::schedule::{ParseOptions, Schedule};

/// Parses `text` and returns the first error as `(line, column, message)`.
fn error(text: &str) -> (u32, u32, String) {
    match Schedule::parse(text, &ParseOptions::named("bad.tjp")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(error) => {
            let first = &error.diagnostics[0];
            assert_eq!(first.location.file.to_str(), Some("bad.tjp"));
            (
                first.location.line,
                first.location.column,
                first.message.clone(),
            )
        }
    }
}

fn assert_error(text: &str, line: u32, column: u32, needle: &str) {
    let (l, c, message) = error(text);
    assert!(
        message.contains(needle),
        "message {message:?} lacks {needle:?}"
    );
    assert_eq!((l, c), (line, column), "{message}");
}

const HEADER: &str = "project p \"P\" 2025-01-01 +1y\n";

#[test]
fn unknown_time_zone() {
    assert_error(
        "project \"P\" 2025-01-01 +1y {\n  timezone \"foo/bar\"\n}",
        2,
        12,
        "unknown time zone \"foo/bar\": expected an IANA name such as \"Europe/Berlin\"",
    );
}

#[test]
fn zone_abbreviations_are_not_zones() {
    for zone in ["EST", "CET", "GMT", "EST5EDT", "utc"] {
        assert_error(
            &format!("project \"P\" 2025-01-01 +1y {{\n  timezone \"{zone}\"\n}}"),
            2,
            12,
            &format!(
                "time zone \"{zone}\" is not a Region/City name: write \"UTC\" or the zone of a place"
            ),
        );
    }
}

#[test]
fn shift_zone_abbreviation_is_an_error() {
    assert_error(
        &format!("{HEADER}shift s \"S\" {{\n  timezone \"PST8PDT\"\n}}"),
        3,
        12,
        "time zone \"PST8PDT\" is not a Region/City name",
    );
}

#[test]
fn time_zone_in_wrong_case() {
    assert_error(
        "project \"P\" 2025-01-01 +1y {\n  timezone \"europe/berlin\"\n}",
        2,
        12,
        "zone names are case-sensitive; write \"Europe/Berlin\"",
    );
}

#[test]
fn project_end_before_start() {
    assert_error(
        "project \"P\" 2025-01-01 - 2024-01-01",
        1,
        26,
        "ends before it starts",
    );
}

#[test]
fn interval_end_before_start() {
    assert_error(
        &format!("{HEADER}vacation 2025-03-02 - 2025-03-01"),
        2,
        10,
        "not after its start",
    );
}

#[test]
fn interval_with_equal_ends() {
    let (line, column, message) = error(&format!("{HEADER}vacation 2025-03-03 - 2025-03-03"));
    assert_eq!((line, column), (2, 10), "{message}");
    assert!(
        message.contains("is empty, because its end is excluded"),
        "{message}"
    );
    assert!(message.contains("2025-03-04 00:00 UTC"), "{message}");
    assert!(
        !message.contains("write the earlier date first"),
        "{message}"
    );
}

#[test]
fn interval_emptied_by_dst_gap() {
    // Berlin's clocks skip 02:00 - 03:00 on 2026-03-29, so 02:00 reads as 03:00.
    let header = "project \"P\" 2026-01-01 +1y { timezone \"Europe/Berlin\" }\n";
    let (line, column, message) = error(&format!(
        "{header}vacation 2026-03-29-02:00 - 2026-03-29-03:00"
    ));
    assert_eq!((line, column), (2, 10), "{message}");
    assert!(message.contains("skip 2026-03-29-02:00"), "{message}");
    assert!(
        message.contains("reads as 2026-03-29 03:00 CEST"),
        "{message}"
    );
    assert!(
        !message.contains("write the earlier date first"),
        "{message}"
    );
}

#[test]
fn reversed_interval_ignores_skipped_time() {
    // 02:30 does not exist in Berlin on 2026-03-29, but an interval from 02:30 back to 01:00 is
    // empty however 02:30 reads, so the message requests the earlier date first.
    let header = "project \"P\" 2026-01-01 +1y {\n  timingresolution 30 min\n  timezone \"Europe/Berlin\"\n}\n";
    let (line, column, message) = error(&format!(
        "{header}vacation 2026-03-29-02:30 - 2026-03-29-01:00"
    ));
    assert_eq!((line, column), (5, 10), "{message}");
    assert!(
        message.contains("write the earlier date first"),
        "{message}"
    );
    assert!(!message.contains("skip"), "{message}");
}

#[test]
fn reversed_interval_onto_skipped_time() {
    // 02:30 reads as 03:30 in Berlin on 2026-03-29, so this backwards range has equal ends. It is
    // still written backwards, not a one-day interval with its end excluded.
    let header = "project \"P\" 2026-01-01 +1y {\n  timingresolution 30 min\n  timezone \"Europe/Berlin\"\n}\n";
    let (line, column, message) = error(&format!(
        "{header}vacation 2026-03-29-03:30 - 2026-03-29-02:30"
    ));
    assert_eq!((line, column), (5, 10), "{message}");
    assert!(
        message.contains("write the earlier date first"),
        "{message}"
    );
    assert!(!message.contains("end is excluded"), "{message}");
}

#[test]
fn working_hours_across_midnight_in_taskjuggler_dialect() {
    let text = format!("{HEADER}shift s \"S\" {{\n  workinghours mon 22:00 - 06:00\n}}");
    let (line, column, message) = error(&text);
    assert_eq!((line, column), (3, 20));
    assert!(
        message.contains("`22:00 - 24:00` and `00:00 - 06:00` on the next day"),
        "{message}"
    );
}

#[test]
fn weekday_in_wrong_case() {
    assert_error(
        &format!("{HEADER}resource r \"R\" {{ workinghours Mon 09:00 - 12:00 }}"),
        2,
        31,
        "invalid weekday `Mon`: weekdays are lower-case three-letter keywords; write `mon`",
    );
    assert_error(
        &format!("{HEADER}resource r \"R\" {{ workinghours mon - Friday 09:00 - 12:00 }}"),
        2,
        37,
        "write `fri`",
    );
    assert_error(
        "project \"P\" 2025-01-01 +1y { workinghours SAT off }",
        1,
        43,
        "write `sat`",
    );
}

#[test]
fn limit_days_in_wrong_case() {
    // Only weekdays can follow `days`, so the last day of the list, before `}` or another
    // attribute, gets the same message as in `workinghours`.
    assert_error(
        &format!("{HEADER}resource r \"R\" {{ limits {{ dailymax 5 {{ days Mon }} }} }}"),
        2,
        45,
        "invalid weekday `Mon`: weekdays are lower-case three-letter keywords; write `mon`",
    );
    assert_error(
        &format!(
            "{HEADER}resource r \"R\" {{ limits {{ dailymax 5 {{ days mon, Wed hours 10:00 - 12:00 }} }} }}"
        ),
        2,
        50,
        "write `wed`",
    );
}

#[test]
fn missing_comma_between_ranges() {
    assert_error(
        &format!("{HEADER}resource r \"R\" {{ workinghours mon 09:00 - 12:00 13:00 - 17:00 }}"),
        2,
        49,
        "missing `,` before `13:00`: separate time ranges with commas",
    );
}

#[test]
fn iso_time_separator_rejected() {
    assert_error(
        &format!("{HEADER}vacation 2025-03-03T10:00\nresource r \"R\""),
        2,
        10,
        "invalid date `2025-03-03T10:00`: TaskJuggler writes the time after a dash, not a `T`, as in `2025-03-03-10:00`",
    );
}

#[test]
fn unknown_scenario_prefix() {
    assert_error(
        &format!("{HEADER}resource r \"R\" {{\n  paln:vacation 2025-03-03\n}}"),
        3,
        3,
        "unknown scenario `paln`: the project's scenarios are `plan`",
    );
    let declared = "project p \"P\" 2025-01-01 +1y {\n  scenario base \"Base\" {\n    scenario alt \"Alt\"\n  }\n}\nresource r \"R\" {\n  alt:vacation 2025-03-03\n  other:vacation 2025-03-04\n}";
    assert_error(
        declared,
        8,
        3,
        "unknown scenario `other`: the project's scenarios are `base`, `alt`",
    );
}

#[test]
fn non_ascii_id_rejected() {
    assert_error(
        &format!("{HEADER}resource ré \"R\""),
        2,
        10,
        "invalid id `ré`: ids may contain only ASCII letters, digits and `_`",
    );
    assert_error(
        &format!("{HEADER}shift équipe \"Équipe\""),
        2,
        7,
        "invalid id `équipe`",
    );
}

#[test]
fn working_hours_empty() {
    assert_error(
        &format!("{HEADER}resource r \"R\" {{ workinghours mon 9:00 - 9:00 }}"),
        2,
        35,
        "empty",
    );
}

#[test]
fn invalid_times() {
    assert_error(
        &format!("{HEADER}resource r \"R\" {{ workinghours mon 9:75 - 12:00 }}"),
        2,
        35,
        "invalid time `9:75`",
    );
    assert_error(
        &format!("{HEADER}resource r \"R\" {{ workinghours mon 9:00 - 24:30 }}"),
        2,
        42,
        "invalid time `24:30`",
    );
}

#[test]
fn overlapping_shift_assignments() {
    let text = format!(
        "{HEADER}shift a \"A\"\nshift b \"B\"\nresource r \"R\" {{\n  shifts a 2025-02-01 +2w\n  shifts b 2025-02-10 +1w\n}}"
    );
    assert_error(&text, 6, 10, "overlaps the assignment of shift `a`");
}

#[test]
fn misaligned_date() {
    let text =
        "project \"P\" 2025-01-01 +1y {\n  timingresolution 30 min\n}\nvacation 2025-02-01-10:10";
    assert_error(
        text,
        4,
        10,
        "not aligned to the timing resolution of 30 min",
    );
}

#[test]
fn misaligned_project_start_once() {
    let text = "project \"P\" 2025-01-01-10:30 +1y\nresource r \"R\"";
    let rejected = Schedule::parse(text, &ParseOptions::named("bad.tjp")).unwrap_err();
    assert_eq!(rejected.diagnostics.len(), 1, "{rejected}");
    let first = &rejected.diagnostics[0];
    assert_eq!((first.location.line, first.location.column), (1, 13));
    assert!(
        first
            .message
            .contains("date 2025-01-01-10:30 is not aligned"),
        "{}",
        first.message
    );

    let (line, column, message) = error("project \"P\" 2025-01-01 - 2025-06-01-10:30");
    assert_eq!((line, column), (1, 26), "{message}");
    assert!(message.contains("date 2025-06-01-10:30"), "{message}");
}

#[test]
fn misaligned_working_hours_accepted() {
    let text = format!("{HEADER}resource r \"R\" {{ workinghours mon 9:30 - 12:00 }}");
    let schedule = Schedule::parse(&text, &ParseOptions::named("ok.tjp")).unwrap();
    let monday = &schedule.resource("r").unwrap().working_hours.days[0];
    assert_eq!(monday[0].start, 9 * 3600 + 30 * 60);
}

#[test]
fn bad_timing_resolution() {
    assert_error(
        "project \"P\" 2025-01-01 +1y {\n  timingresolution 21 min\n}",
        2,
        20,
        "expected 5, 10, 15, 20, 30 or 60 min",
    );
}

#[test]
fn zone_offset_does_not_fit_resolution() {
    let text = "project \"P\" 2025-01-01 +1y {\n  timezone \"Asia/Kolkata\"\n}";
    assert_error(text, 2, 12, "too large for time zone Asia/Kolkata");
    assert_error(text, 2, 12, "add `timingresolution 15 min`");
    let fits =
        "project \"P\" 2025-01-01 +1y {\n  timingresolution 30 min\n  timezone \"Asia/Kolkata\"\n}";
    assert!(Schedule::parse(fits, &ParseOptions::named("ok.tjp")).is_ok());
}

#[test]
fn resolution_after_zone_is_checked() {
    // TaskJuggler's test Syntax/Errors/too_large_timing_res.tjp writes the zone first and
    // expects the error at the `timingresolution` line.
    let too_large =
        "project \"P\" 2007-08-26 +1w {\n  timezone \"Asia/Kolkata\"\n  timingresolution 60 min\n}";
    assert_error(too_large, 3, 20, "too large for time zone Asia/Kolkata");

    let fits = "project \"P\" 2025-01-01 +1y {\n  timezone \"Asia/Kolkata\"\n  timingresolution 30 min\n}\nvacation 2025-03-03\nresource r \"R\"";
    let schedule = Schedule::parse(fits, &ParseOptions::named("ok.tjp"))
        .unwrap_or_else(|error| panic!("rejected:\n{error}"));
    assert_eq!(schedule.project.timing_resolution, 1800);
    assert_eq!(schedule.project.timezone, chrono_tz::Asia::Kolkata);
}

#[test]
fn last_resolution_decides_zone_fit() {
    // The project ends with 15 minutes, which fits UTC+05:45, so the 30 minutes written first
    // is no error.
    let text = "project \"P\" 2025-01-01 +1y {\n  timezone \"Asia/Kathmandu\"\n  timingresolution 30 min\n  timingresolution 15 min\n}\nresource r \"R\"";
    let schedule = Schedule::parse(text, &ParseOptions::named("ok.tjp"))
        .unwrap_or_else(|error| panic!("rejected:\n{error}"));
    assert_eq!(schedule.project.timing_resolution, 900);
}

#[test]
fn invalid_resolution_reported_once() {
    // The invalid value has its own error. An error for the zone under the default 60 minutes,
    // telling the user to add a `timingresolution`, would be wrong about the file.
    let text = "project \"P\" 2025-01-01 +1y {\n  timezone \"Asia/Kathmandu\"\n  timingresolution 7 min\n}";
    let error = Schedule::parse(text, &ParseOptions::named("bad.tjp")).unwrap_err();
    assert_eq!(error.diagnostics.len(), 1, "{error}");
    let first = &error.diagnostics[0];
    assert_eq!((first.location.line, first.location.column), (3, 20));
    assert!(
        first.message.contains("invalid timing resolution 7 min"),
        "{first}"
    );
}

#[test]
fn resolution_before_zone_gets_set_advice() {
    // The file already has a `timingresolution`, so the advice is to change it, not to add one.
    let text = "project \"P\" 2025-01-01 +1y {\n  timingresolution 30 min\n  timezone \"Asia/Kathmandu\"\n}";
    assert_error(text, 3, 12, "too large for time zone Asia/Kathmandu");
    assert_error(text, 3, 12, "set `timingresolution` to a divisor");
}

#[test]
fn unknown_shift() {
    assert_error(
        &format!("{HEADER}resource r \"R\" {{ shifts night }}"),
        2,
        25,
        "unknown shift `night`",
    );
    assert_error(
        &format!("{HEADER}resource r \"R\" {{ workinghours night }}"),
        2,
        31,
        "unknown shift `night`",
    );
}

#[test]
fn unknown_and_group_resources_in_limits() {
    assert_error(
        &format!("{HEADER}limits {{ dailymax 5 {{ resources ghost }} }}"),
        2,
        33,
        "unknown resource `ghost`",
    );
    let group = format!(
        "{HEADER}resource team \"T\" {{ resource m \"M\" }}\ntask t \"T\" {{\n  limits {{ dailymax 5h {{ resources team }} }}\n}}"
    );
    assert_error(&group, 4, 36, "resource `team` is a group");
    assert_error(
        &format!("{HEADER}supplement resource ghost {{ }}"),
        2,
        21,
        "unknown resource `ghost`",
    );
}

#[test]
fn bad_counts() {
    assert_error(
        &format!("{HEADER}limits {{ dailymax 0 }}"),
        2,
        19,
        "invalid limit count 0",
    );
    assert_error(
        &format!("{HEADER}limits {{ dailymax -5 }}"),
        2,
        19,
        "invalid limit count -5",
    );
    assert_error(
        &format!("{HEADER}limits {{ dailymax 2.5 }}"),
        2,
        19,
        "is a whole number",
    );
    assert_error(
        &format!("{HEADER}limits {{ dailymax 99999999999999999999 }}"),
        2,
        19,
        "the largest count",
    );
}

#[test]
fn limit_period_outside_project() {
    assert_error(
        &format!("{HEADER}limits {{ dailymax 5 {{ period 2024-01-01 +1w }} }}"),
        2,
        30,
        "outside the project's time frame",
    );
}

#[test]
fn limit_hours_across_midnight() {
    assert_error(
        &format!("{HEADER}limits {{ dailymax 5 {{ hours 22:00 - 6:00 }} }}"),
        2,
        29,
        "`22:00 - 24:00, 00:00 - 6:00`",
    );
}

#[test]
fn invalid_dates() {
    assert_error(
        &format!("{HEADER}vacation 2025-02-30"),
        2,
        10,
        "has no day 30",
    );
    assert_error(
        &format!("{HEADER}vacation 2025-13-01"),
        2,
        10,
        "month must lie between 1 and 12",
    );
    assert_error(
        "project \"P\" 1969-12-01 +1y",
        1,
        13,
        "year must lie between 1970 and 9999",
    );
    assert_error(
        &format!("{HEADER}vacation 2025-02-01-25:00"),
        2,
        10,
        "time must lie between",
    );
    assert_error(
        &format!("{HEADER}vacation 2025-02-01-10:00-0700"),
        2,
        10,
        "needs a sign",
    );
    assert_error(
        &format!("{HEADER}vacation 2025-02-01-10:00-+1500"),
        2,
        10,
        "-1200 and +1400",
    );
    assert_error("project \"P\" 9999-12-01 +1y", 1, 25, "after the year 9999");
}

#[test]
fn zero_duration() {
    assert_error(
        &format!("{HEADER}vacation 2025-02-01 +0d"),
        2,
        22,
        "greater than zero",
    );
    assert_error(
        &format!("{HEADER}vacation 2025-02-01 +30min"),
        2,
        22,
        "not a multiple of the timing resolution",
    );
}

#[test]
fn huge_numbers_named_as_written() {
    assert_error(
        "project \"P\" 2025-01-01 +99999999999999999999y",
        1,
        25,
        "duration `99999999999999999999y` is too long",
    );
    assert_error(
        &format!("{HEADER}vacation 2025-02-01 +123456789012345678901234567890d"),
        2,
        22,
        "duration `123456789012345678901234567890d` is too long",
    );
    assert_error(
        "project \"P\" 2025-01-01 +1y {\n  timingresolution 99999999999999999999999 min\n}",
        2,
        20,
        "invalid timing resolution 99999999999999999999999 min",
    );
}

#[test]
fn unknown_property_keyword() {
    assert_error(
        &format!("{HEADER}resorce r \"R\""),
        2,
        1,
        "expected a property such as `resource`",
    );
}

#[test]
fn unknown_resource_attribute() {
    assert_error(
        &format!("{HEADER}resource r \"R\" {{\n  vacaton 2025-02-01\n}}"),
        3,
        3,
        "a resource attribute such as `workinghours`",
    );
}

#[test]
fn unknown_project_attribute() {
    assert_error(
        "project \"P\" 2025-01-01 +1y {\n  timezon \"UTC\"\n}",
        2,
        3,
        "a project attribute such as `timezone`",
    );
}

#[test]
fn unknown_limit_kind_and_attribute() {
    assert_error(
        &format!("{HEADER}limits {{ daily 5 }}"),
        2,
        10,
        "a limit: minutelymax",
    );
    assert_error(
        &format!("{HEADER}limits {{ dailymax 5 {{ weekdays mon }} }}"),
        2,
        23,
        "a limit attribute: period",
    );
}

#[test]
fn missing_closing_brace() {
    assert_error(
        &format!("{HEADER}resource r \"R\" {{\n  vacation 2025-02-01\n"),
        3,
        12,
        "found end of file, expected",
    );
    assert_error(
        &format!("{HEADER}resource r \"R\" {{\n  vacation 2025-02-01\n"),
        3,
        12,
        "the block opened at bad.tjp:2:16 is not closed; add a `}`",
    );
    assert_error(
        &format!("{HEADER}shift s \"S\" {{\n  workinghours mon off\n  leaves annual 2025-02-01"),
        4,
        17,
        "the block opened at bad.tjp:2:13 is not closed; add a `}`",
    );
    assert_error(
        &format!("{HEADER}task t \"T\" {{\n  effort 2d\n"),
        3,
        11,
        "`}` to close the task",
    );
    assert_error(
        &format!("{HEADER}taskreport r \"R\" {{\n  columns {{ name"),
        2,
        18,
        "unclosed `{`",
    );
}

#[test]
fn missing_project_header() {
    assert_error("resource r \"R\"", 1, 1, "the project header");
    assert_error(
        "project \"P\" 2025-01-01",
        1,
        13,
        "`- END_DATE` or `+DURATION`",
    );
}

#[test]
fn stray_project_working_hours() {
    assert_error(
        &format!("{HEADER}workinghours mon 9:00 - 17:00"),
        2,
        1,
        "inside the `project ... { }` block",
    );
}

#[test]
fn duplicate_ids() {
    assert_error(
        &format!("{HEADER}resource r \"R\"\nresource r \"Again\""),
        3,
        1,
        "resource `r` is already defined at bad.tjp:2:1",
    );
    assert_error(
        &format!("{HEADER}shift s \"S\"\nshift s \"Again\""),
        3,
        7,
        "shift `s` is already defined",
    );
}

/// Ids are looked up by name, so among thousands of resources and shifts a duplicate still
/// names its first definition, and references find theirs.
#[test]
fn duplicate_ids_among_thousands() {
    let mut text = HEADER.to_owned();
    for index in 0..20_000 {
        text.push_str(&format!("resource r{index} \"R\"\nshift s{index} \"S\"\n"));
    }
    text.push_str("resource user \"U\" { shifts s19999 2025-03-03 +1w }\n");
    text.push_str("supplement resource r12345 { workinghours sun off }\n");
    let schedule = Schedule::parse(&text, &ParseOptions::named("many.tjp")).unwrap();
    assert_eq!(schedule.resources.len(), 20_001);
    assert_eq!(schedule.shifts.len(), 20_000);
    let user = schedule.resource("user").unwrap();
    assert_eq!(user.shifts[0].shift, "s19999");

    text.push_str("resource r12345 \"Again\"\nshift s777 \"Again\"\n");
    let duplicates = Schedule::parse(&text, &ParseOptions::named("many.tjp")).unwrap_err();
    let messages: Vec<&str> = duplicates
        .diagnostics
        .iter()
        .map(|diagnostic| diagnostic.message.as_str())
        .collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    // `r12345` is the 12,346th resource, declared on line 2 + 2 × 12,345.
    assert!(
        messages[0].contains("resource `r12345` is already defined at many.tjp:24692:1"),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("shift `s777` is already defined at many.tjp:1557:1"),
        "{messages:?}"
    );
}

#[test]
fn macro_errors() {
    assert_error(
        &format!("{HEADER}resource r \"${{undefined}}\""),
        2,
        13,
        "undefined macro `undefined`",
    );
    assert_error(
        "macro m [ ${1} ]\nproject \"P\" 2025-01-01 +1w\nresource r \"${m}\"",
        3,
        13,
        "uses argument 1",
    );
    assert_error(
        "macro loop [ ${loop} ]\nproject \"P\" 2025-01-01 +1w\n${loop}",
        3,
        1,
        "more than 64 levels",
    );
    assert_error(
        "vacation ${projectstart}\nproject \"P\" 2025-01-01 +1w",
        1,
        1,
        "the project header",
    );
    assert_error(
        "project \"P\" ${projectstart} +1w",
        1,
        13,
        "only defined after the project header",
    );
    assert_error(
        "macro m [ unterminated\nproject \"P\" 2025-01-01 +1w",
        1,
        9,
        "unterminated body of macro `m`",
    );
}

#[test]
fn unquoted_macro_argument() {
    let text = format!(
        "{HEADER}macro holiday [ vacation \"${{1}}\" ${{2}} ]\n\
         ${{holiday \"Independence Day\" 2025-07-04}}\nresource r \"R\""
    );
    let (line, column, message) = error(&text);
    assert_eq!((line, column), (3, 30), "{message}");
    assert!(message.contains("`2025-07-04`"), "{message}");
    assert!(message.contains("write \"2025-07-04\""), "{message}");
}

#[test]
fn unterminated_macro_call() {
    let text = format!("{HEADER}macro m [ ]\n${{m \"a\"");
    assert_error(&text, 3, 1, "unterminated call of macro `m`");
}

#[test]
fn unterminated_string_and_comment() {
    assert_error(
        &format!("{HEADER}resource r \"R"),
        2,
        12,
        "unterminated string",
    );
    assert_error(&format!("{HEADER}/* open"), 2, 1, "unterminated comment");
}

#[test]
fn include_errors() {
    assert_error(
        &format!("{HEADER}include \"team.tji\""),
        2,
        1,
        "no folder to include files from",
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.tji"), "include \"b.tji\"\n").unwrap();
    std::fs::write(dir.path().join("b.tji"), "\n  include \"a.tji\"\n").unwrap();
    std::fs::write(
        dir.path().join("bad.tji"),
        "resource x \"X\" {\n  workinghours mon 9:00 - 8:00\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("cycle.tjp"),
        format!("{HEADER}include \"a.tji\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("missing.tjp"),
        format!("{HEADER}include \"none.tji\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("inner.tjp"),
        format!("{HEADER}include \"bad.tji\"\n"),
    )
    .unwrap();

    let cycle = Schedule::from_file(dir.path().join("cycle.tjp")).unwrap_err();
    let first = &cycle.diagnostics[0];
    assert!(first.message.contains("cyclic include"), "{first}");
    assert!(first.location.file.ends_with("b.tji"), "{first}");
    assert_eq!((first.location.line, first.location.column), (2, 11));

    let missing = Schedule::from_file(dir.path().join("missing.tjp")).unwrap_err();
    assert!(
        missing.diagnostics[0].message.contains("cannot include"),
        "{missing}"
    );
    assert_eq!(missing.diagnostics[0].location.line, 2);

    let inner = Schedule::from_file(dir.path().join("inner.tjp")).unwrap_err();
    let first = &inner.diagnostics[0];
    assert!(first.location.file.ends_with("bad.tji"), "{first}");
    assert_eq!((first.location.line, first.location.column), (2, 20));
}

/// An include of a named pipe, a device or a directory fails at once instead of waiting for a
/// writer or reading without end.
#[cfg(unix)]
#[test]
fn include_of_special_file() {
    let dir = tempfile::tempdir().unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(dir.path().join("pipe.tji"))
        .status()
        .expect("mkfifo (coreutils) runs");
    assert!(made.success());
    std::fs::create_dir(dir.path().join("folder.tji")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.tji")).unwrap();

    for (included, line) in [("pipe.tji", 2), ("folder.tji", 2), ("zero.tji", 2)] {
        std::fs::write(
            dir.path().join("main.tjp"),
            format!("{HEADER}include \"{included}\"\n"),
        )
        .unwrap();
        let error = Schedule::from_file(dir.path().join("main.tjp")).unwrap_err();
        let first = &error.diagnostics[0];
        assert!(
            first.message.contains("is not a regular file"),
            "{included}: {first}"
        );
        assert_eq!(first.location.line, line, "{included}: {first}");
    }
}

#[test]
fn file_included_twice_names_includes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("team.tji"), "resource x \"X\"\n").unwrap();
    std::fs::write(
        dir.path().join("twice.tjp"),
        format!("{HEADER}include \"team.tji\"\ninclude \"team.tji\"\n"),
    )
    .unwrap();

    let error = Schedule::from_file(dir.path().join("twice.tjp")).unwrap_err();
    let first = &error.diagnostics[0];
    assert!(first.location.file.ends_with("team.tji"), "{first}");
    assert!(
        first.message.contains("included 2 times"),
        "{}",
        first.message
    );
    assert!(first.message.contains("twice.tjp:2:9"), "{}", first.message);
    assert!(first.message.contains("twice.tjp:3:9"), "{}", first.message);
    assert!(
        !first.message.contains("choose another id"),
        "{}",
        first.message
    );
}

#[test]
fn every_error_is_reported() {
    let text = format!(
        "{HEADER}vacation 2025-02-30\nresource r \"R\" {{ shifts ghost }}\nlimits {{ dailymax 0 }}"
    );
    let error = Schedule::parse(&text, &ParseOptions::named("bad.tjp")).unwrap_err();
    let lines: Vec<u32> = error.diagnostics.iter().map(|d| d.location.line).collect();
    assert_eq!(lines, [2, 3, 4]);
    assert_eq!(error.to_string().lines().count(), 3);
}

#[test]
fn error_inside_supplement_body() {
    assert_error(
        &format!(
            "{HEADER}resource r \"R\"\nsupplement resource r {{\n  workinghours mon 9:00 - 8:00\n}}"
        ),
        4,
        20,
        "end before they start",
    );
    assert_error(
        &format!("{HEADER}resource r \"R\"\nsupplement resource r {{ vacaton }}"),
        3,
        25,
        "a resource attribute",
    );
}

#[test]
fn runaway_macro_expansion() {
    let mut text = String::from("macro m0 [xxxxxxxxxxxxxxxx]\n");
    for level in 1..12 {
        let previous = format!("${{m{}}}", level - 1);
        text.push_str(&format!("macro m{level} [{}]\n", previous.repeat(8)));
    }
    text.push_str("project \"P\" 2025-01-01 +1w\nresource r \"${m11}\"");
    assert_error(&text, 14, 13, "more than 4 Mi characters");
}

#[test]
fn date_arithmetic_errors() {
    assert_error(
        &format!("{HEADER}vacation %{{2025-03-01 + 0d}}"),
        2,
        25,
        "duration `0d` must be greater than zero",
    );
    assert_error(
        &format!("{HEADER}vacation %{{2025-03-01 * 2d}}"),
        2,
        23,
        "`+` or `-` and a duration",
    );
    assert_error(
        &format!("{HEADER}vacation %{{2025-03-01 + 2d\nresource r \"R\""),
        3,
        1,
        "`}` to close `%{`",
    );
    assert_error(
        &format!("{HEADER}vacation %{{1970-01-01 - 1d}}"),
        2,
        10,
        "outside the years 1970 to 9999",
    );
    assert_error(
        &format!("{HEADER}vacation %{{2025-03-01 + 30min}}"),
        2,
        25,
        "not a multiple of the timing resolution",
    );
}

#[test]
fn cut_string_errors() {
    assert_error(
        &format!("{HEADER}task t \"T\" {{\n  note -8<- text\n  ->8-\n}}"),
        3,
        8,
        "text after the cut mark `-8<-`",
    );
    assert_error(
        &format!("{HEADER}task t \"T\" {{\n  note -8<-\n  no end\n}}\n"),
        3,
        8,
        "unterminated cut string",
    );
}

#[test]
fn tilde_only_separates_leave_dates() {
    assert_error(
        &format!("{HEADER}leaves annual 2025-03-08 ~ 2025-03-03"),
        2,
        15,
        "not after its start",
    );
    assert_error(
        &format!("{HEADER}leaves annual 2025-03-08 ~ +2d"),
        2,
        28,
        "expected a date",
    );
}

#[test]
fn include_needs_tji_extension() {
    assert_error(
        &format!("{HEADER}include \"team.tjp\""),
        2,
        9,
        "included files must have the extension .tji",
    );
}

#[test]
fn include_before_project_only_defines_macros() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("team.tji"),
        "macro x [1]\nresource t \"T\"\n",
    )
    .unwrap();
    let main = dir.path().join("main.tjp");
    std::fs::write(
        &main,
        "# Team first\ninclude \"team.tji\"\nproject \"P\" 2025-01-01 +1y\n",
    )
    .unwrap();
    let error = Schedule::from_file(&main).unwrap_err();
    let first = &error.diagnostics[0];
    assert_eq!(first.location.file, main);
    assert_eq!((first.location.line, first.location.column), (2, 1));
    assert!(
        first.message.contains(
            "included before the project header but contains more than macro definitions"
        ),
        "{first}"
    );
    assert!(first.message.contains("team.tji:2:1"), "{first}");
}

#[test]
fn unknown_limit_kind() {
    let text = format!("{HEADER}resource r \"R\" {{ limits {{ yearlymax 5 }} }}");
    assert_error(
        &text,
        2,
        27,
        "found `yearlymax`, expected a limit: minutelymax, hourlymax, dailymax, weeklymax or monthlymax followed by a count or `}`",
    );
}
