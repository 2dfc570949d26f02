//! Each construct of the schedule language, with small files written for the test.

use chrono::{DateTime, TimeZone, Utc, Weekday};
use highway_ratelimit::schedule::{
    LeaveKind, LimitKind, ParseOptions, Schedule, ScheduleError, Severity, TimeRange,
};

fn parse(text: &str) -> Result<Schedule, ScheduleError> {
    Schedule::parse(text, &ParseOptions::named("test.tjp"))
}

fn ok(text: &str) -> Schedule {
    parse(text).unwrap_or_else(|error| panic!("rejected:\n{error}"))
}

fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

fn range(start: u32, end: u32) -> TimeRange {
    TimeRange {
        start: start * 3600,
        end: end * 3600,
    }
}

const HEADER: &str = "project p \"P\" 2025-01-01 +1y\n";

#[test]
fn project_header_with_range() {
    let schedule = ok("project prj \"Example\" \"1.0\" 2007-01-01 - 2007-03-09");
    assert_eq!(schedule.project.id.as_deref(), Some("prj"));
    assert_eq!(schedule.project.name, "Example");
    assert_eq!(schedule.project.version.as_deref(), Some("1.0"));
    assert_eq!(schedule.project.start, utc(2007, 1, 1, 0, 0));
    assert_eq!(schedule.project.end, utc(2007, 3, 9, 0, 0));
    assert_eq!(schedule.project.timing_resolution, 3600);
    assert_eq!(schedule.project.week_start, Weekday::Mon);
}

#[test]
fn project_durations() {
    let year = ok("project \"P\" 2007-03-01 +1y");
    assert_eq!(year.project.end, utc(2008, 2, 29, 0, 0));
    let month = ok("project \"P\" 2009-10-04 +1m");
    assert_eq!(month.project.end, utc(2009, 11, 3, 10, 0));
    let weeks = ok("project \"P\" 2025-01-01 +2w");
    assert_eq!(weeks.project.end, utc(2025, 1, 15, 0, 0));
}

#[test]
fn project_attributes() {
    let schedule = ok(r#"project "P" 2025-01-01 +1y {
        timingresolution 15 min
        timezone "Europe/Berlin"
        now 2025-03-01-12:00
        weekstartssunday
        dailyworkinghours 7.5
        yearlyworkingdays 250
        workinghours mon - fri 8:00 - 12:00, 13:00 - 17:00
        workinghours sat 10:00 - 14:00
        timeformat "%Y-%m-%d"
        currencyformat "(" ")" "," "." 0
        scenario plan "Plan" { scenario delayed "Delayed" }
        plan:foo 1
    }"#);
    let project = &schedule.project;
    assert_eq!(project.timezone, chrono_tz::Europe::Berlin);
    assert_eq!(project.timing_resolution, 900);
    // `now` is written after `timezone`, so it is Berlin time.
    assert_eq!(project.now, Some(utc(2025, 3, 1, 11, 0)));
    assert_eq!(project.week_start, Weekday::Sun);
    assert_eq!(project.daily_working_hours, 7.5);
    assert_eq!(project.yearly_working_days, 250.0);
    assert_eq!(
        project.working_hours.on(Weekday::Mon),
        &[range(8, 12), range(13, 17)]
    );
    assert_eq!(project.working_hours.on(Weekday::Sat), &[range(10, 14)]);
    assert!(project.working_hours.on(Weekday::Sun).is_empty());
}

#[test]
fn scriptplan_resolution_and_braces() {
    let hours = ok("project \"P\" 2025-01-01 +1w { timingresolution 1h }");
    assert_eq!(hours.project.timing_resolution, 3600);
    let minutes = ok("project \"P\" 2025-01-01 +1w { timingresolution 30min }");
    assert_eq!(minutes.project.timing_resolution, 1800);
}

#[test]
fn header_dates_utc_body_dates_local() {
    let schedule = ok(
        r#"project "P" 2025-01-01 +1y { timezone "America/New_York" }
        vacation "Day" 2025-07-04"#,
    );
    assert_eq!(schedule.project.start, utc(2025, 1, 1, 0, 0));
    let leave = &schedule.leaves[0];
    assert_eq!(leave.interval.start, utc(2025, 7, 4, 4, 0));
    assert_eq!(leave.interval.end, utc(2025, 7, 5, 4, 0));
}

#[test]
fn timezone_resets_working_hours() {
    let schedule = ok(r#"project "P" 2025-01-01 +1y {
        workinghours mon 10:00 - 11:00
        timezone "Europe/Paris"
    }"#);
    assert_eq!(
        schedule.project.working_hours.on(Weekday::Mon),
        &[range(9, 17)]
    );
}

#[test]
fn working_hours_days_and_off() {
    let schedule = ok(r#"project "P" 2025-01-01 +1y {
        workinghours fri - mon 6:00 - 24:00
        workinghours wed off
        workinghours tue,thu 0:00-12:00
    }"#);
    let hours = &schedule.project.working_hours;
    for day in [Weekday::Fri, Weekday::Sat, Weekday::Sun, Weekday::Mon] {
        assert_eq!(
            hours.on(day),
            &[TimeRange {
                start: 6 * 3600,
                end: 86_400
            }],
            "{day}"
        );
    }
    assert!(hours.on(Weekday::Wed).is_empty());
    assert_eq!(hours.on(Weekday::Tue), &[range(0, 12)]);
}

#[test]
fn overlapping_ranges_merge() {
    let schedule =
        ok(r#"project "P" 2025-01-01 +1y { workinghours mon 9:00 - 12:00, 11:00 - 14:00 }"#);
    assert_eq!(
        schedule.project.working_hours.on(Weekday::Mon),
        &[range(9, 14)]
    );
}

#[test]
fn shift_nesting_replace_and_leaves() {
    let schedule = ok(&format!(
        "{HEADER}shift s1 \"S1\" {{
            workinghours mon 10:00 - 12:00
            vacation \"Off\" 2025-02-03
            replace
            timezone \"Europe/Berlin\"
            shift s2 \"S2\" {{
                workinghours tue off
                leaves annual 2025-03-03 +1w
            }}
        }}"
    ));
    let s1 = schedule.shift("s1").unwrap();
    assert!(s1.replace);
    assert_eq!(s1.timezone, Some(chrono_tz::Europe::Berlin));
    assert_eq!(s1.leaves.len(), 1);
    assert_eq!(s1.working_hours.on(Weekday::Tue), &[range(9, 17)]);
    let s2 = schedule.shift("s2").unwrap();
    assert_eq!(s2.parent.as_deref(), Some("s1"));
    assert!(s2.replace);
    assert_eq!(s2.working_hours.on(Weekday::Mon), &[range(10, 12)]);
    assert!(s2.working_hours.on(Weekday::Tue).is_empty());
    assert_eq!(s2.leaves.len(), 2);
    assert_eq!(s2.leaves[1].kind, LeaveKind::Annual);
    assert_eq!(s2.leaves[1].interval.end, utc(2025, 3, 10, 0, 0));
}

#[test]
fn resource_inheritance() {
    let schedule = ok(&format!(
        "{HEADER}limits {{ dailymax 100 }}
        shift night \"Night\" {{ workinghours mon - fri 20:00 - 24:00 }}
        resource team \"Team\" {{
            workinghours sat 10:00 - 12:00
            vacation 2025-05-01
            shifts night 2025-06-01 - 2025-07-01
            resource a \"A\" {{ leaves sick 2025-05-05 +2d }}
            resource b \"B\" {{ limits {{ hourlymax 10 }} }}
        }}
        resource solo \"Solo\""
    ));
    let team = schedule.resource("team").unwrap();
    assert_eq!(team.children, ["a", "b"]);
    let a = schedule.resource("a").unwrap();
    assert_eq!(a.parent.as_deref(), Some("team"));
    assert_eq!(a.working_hours.on(Weekday::Sat), &[range(10, 12)]);
    assert_eq!(a.leaves.len(), 2);
    assert_eq!(a.leaves[1].kind, LeaveKind::Sick);
    assert_eq!(a.shifts.len(), 1);
    assert_eq!(a.limits.len(), 1);
    assert_eq!(a.limits[0].kind, LimitKind::Daily);
    let b = schedule.resource("b").unwrap();
    assert_eq!(b.limits.len(), 1, "own limits replace inherited ones");
    assert_eq!(b.limits[0].kind, LimitKind::Hourly);
    let solo = schedule.resource("solo").unwrap();
    assert_eq!(solo.limits[0].value, 100);
    // Resources are listed parents first.
    let ids: Vec<_> = schedule.resources.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["team", "a", "b", "solo"]);
}

#[test]
fn later_limits_block_replaces_earlier() {
    // TaskJuggler 3 assigns each `limits` block to the resource's attribute, so only the last
    // block of a resource applies, whether it is in the same body or in a `supplement`.
    let schedule = ok(&format!(
        "{HEADER}resource r \"R\" {{
            limits {{ dailymax 100 }}
            limits {{ hourlymax 10 }}
        }}
        resource s \"S\" {{ limits {{ dailymax 100 }} }}
        supplement resource s {{ limits {{ hourlymax 10 }} }}"
    ));
    for id in ["r", "s"] {
        let limits = &schedule.resource(id).unwrap().limits;
        assert_eq!(limits.len(), 1, "limits of {id}: {limits:?}");
        assert_eq!(limits[0].kind, LimitKind::Hourly, "limits of {id}");
        assert_eq!(limits[0].value, 10, "limits of {id}");
    }

    assert_eq!(schedule.warnings.len(), 2, "{:?}", schedule.warnings);
    let same_body = &schedule.warnings[0];
    assert_eq!(same_body.location.line, 4);
    assert!(
        same_body
            .message
            .contains("replaces the `limits` block at test.tjp:3:"),
        "{}",
        same_body.message
    );
    let supplement = &schedule.warnings[1];
    assert_eq!(supplement.location.line, 7);
    assert!(
        supplement.message.contains("at test.tjp:6:"),
        "{}",
        supplement.message
    );
}

#[test]
fn limit_resources_naming_others_warns() {
    // A resource takes limits only from global blocks before it, its parent before it and its
    // own blocks, and `resources` names only resources declared earlier, so a limit that names
    // other resources never applies.
    let schedule = ok(&format!(
        "{HEADER}resource a \"A\"
        limits {{ dailymax 7 {{ resources a }} }}
        resource b \"B\" {{
            limits {{ hourlymax 3 {{ resources a }} minutelymax 2 {{ resources a, b }} }}
        }}"
    ));

    assert_eq!(schedule.warnings.len(), 2, "{:?}", schedule.warnings);
    let global = &schedule.warnings[0];
    assert_eq!(global.severity, Severity::Warning);
    assert_eq!(
        (global.location.line, global.location.column),
        (3, 18),
        "{}",
        global.message
    );
    assert!(
        global.message.contains("applies to none"),
        "{}",
        global.message
    );
    let own = &schedule.warnings[1];
    assert_eq!(
        (own.location.line, own.location.column),
        (5, 22),
        "{}",
        own.message
    );
    assert!(
        own.message
            .contains("limit of resource `b` names only other resources (a)"),
        "{}",
        own.message
    );
}

#[test]
fn purge_leaves_drops_inherited_leaves() {
    // TaskJuggler's `purge leaves` empties the inherited leave list. Leaves written after it,
    // and global vacations, still apply.
    let schedule = ok(&format!(
        "{HEADER}vacation \"Global\" 2025-12-24
        resource team \"Team\" {{
            vacation \"Team day\" 2025-05-01
            resource a \"A\" {{
                purge leaves
                leaves sick 2025-05-05 +2d
            }}
            resource b \"B\"
        }}
        supplement resource team {{ purge flags }}"
    ));
    let a = schedule.resource("a").unwrap();
    assert_eq!(a.leaves.len(), 1, "{:?}", a.leaves);
    assert_eq!(a.leaves[0].kind, LeaveKind::Sick);
    assert_eq!(schedule.resource("b").unwrap().leaves.len(), 1);
    assert_eq!(schedule.resource("team").unwrap().leaves.len(), 1);
    assert_eq!(schedule.leaves.len(), 1);
}

#[test]
fn top_scenario_prefix_applies() {
    // Availability follows the top scenario, so an attribute prefixed with its id applies like
    // an unprefixed one, and one prefixed with another scenario's id does not.
    let schedule = ok("project p \"P\" 2025-01-01 +1y {
            scenario base \"Base\" { scenario alt \"Alt\" }
        }
        resource r \"R\" {
            base:vacation 2025-05-01
            alt:vacation 2025-05-02
            base:workinghours sat 10:00 - 12:00
        }");
    let r = schedule.resource("r").unwrap();
    assert_eq!(r.leaves.len(), 1, "{:?}", r.leaves);
    assert_eq!(r.leaves[0].interval.start, utc(2025, 5, 1, 0, 0));
    assert_eq!(r.working_hours.on(Weekday::Sat), &[range(10, 12)]);

    // Without a `scenario`, TaskJuggler's top scenario is `plan`.
    let schedule = ok(&format!(
        "{HEADER}resource r \"R\" {{ plan:vacation 2025-05-01 }}"
    ));
    assert_eq!(schedule.resource("r").unwrap().leaves.len(), 1);
}

#[test]
fn working_day_figures_out_of_range() {
    // TaskJuggler accepts any number for these two, and they do not affect availability.
    let schedule = ok("project p \"P\" 2025-01-01 +1y {
            dailyworkinghours 0
            yearlyworkingdays 400
        }");
    assert_eq!(schedule.project.daily_working_hours, 0.0);
    assert_eq!(schedule.project.yearly_working_days, 400.0);
    let messages: Vec<_> = schedule.warnings.iter().map(|w| &w.message).collect();
    assert!(
        messages.iter().any(|m| m.contains("dailyworkinghours 0")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("yearlyworkingdays 400")),
        "{messages:?}"
    );
}

#[test]
fn later_working_hours_shift_replaces() {
    // ScriptPlan's `workinghours SHIFT_ID` sets the resource's shift, so a second one replaces
    // the first instead of overlapping it.
    let schedule = ok(&format!(
        "{HEADER}shift biz {{ workinghours mon - fri 09:00 - 17:00 }}
        shift late {{ workinghours mon - fri 12:00 - 20:00 }}
        resource r \"R\" {{
            workinghours biz
            workinghours late
        }}
        supplement resource r {{ workinghours biz }}
        resource s \"S\" {{ workinghours late }}"
    ));
    let r = &schedule.resource("r").unwrap().shifts;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].shift, "biz");
    let s = &schedule.resource("s").unwrap().shifts;
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].shift, "late");
}

#[test]
fn global_limits_apply_to_later_resources() {
    let schedule = ok(&format!(
        "{HEADER}resource early \"E\"\nlimits {{ weeklymax 7 }}\nresource late \"L\""
    ));
    assert!(schedule.resource("early").unwrap().limits.is_empty());
    assert_eq!(
        schedule.resource("late").unwrap().limits[0].kind,
        LimitKind::Weekly
    );
}

#[test]
fn supplement_and_anonymous_resources() {
    let schedule = ok(&format!(
        "{HEADER}resource r \"R\"\nresource \"Anonymous\"\nsupplement resource r {{ workinghours mon off }}"
    ));
    assert!(
        schedule
            .resource("r")
            .unwrap()
            .working_hours
            .on(Weekday::Mon)
            .is_empty()
    );
    assert_eq!(schedule.resources[1].name, "Anonymous");
}

#[test]
fn scriptplan_workinghours_shift_and_timezone() {
    let schedule = ok(&format!(
        "{HEADER}shift day {{ workinghours mon - fri 09:00 - 17:00 }}
        resource r \"R\" {{ timezone \"Asia/Tokyo\"\n workinghours day }}"
    ));
    let r = schedule.resource("r").unwrap();
    assert_eq!(r.timezone, Some(chrono_tz::Asia::Tokyo));
    assert_eq!(r.shifts.len(), 1);
    assert_eq!(r.shifts[0].interval.start, schedule.project.start);
    assert_eq!(r.shifts[0].interval.end, schedule.project.end);
    assert_eq!(schedule.shift("day").unwrap().name, None);
}

#[test]
fn leaves_and_vacations() {
    let schedule = ok(&format!(
        "{HEADER}vacation \"Break\" 2025-12-24 - 2025-12-27, 2025-12-31
        leaves holiday \"Easter\" 2025-04-18 +4d,
               unemployed 2025-08-01 - 2025-08-15
        vacation 2025-03-01-12:00"
    ));
    let leaves = &schedule.leaves;
    assert_eq!(leaves.len(), 5);
    assert_eq!(leaves[0].name.as_deref(), Some("Break"));
    assert_eq!(leaves[0].interval.end, utc(2025, 12, 27, 0, 0));
    assert_eq!(leaves[1].interval.start, utc(2025, 12, 31, 0, 0));
    assert_eq!(leaves[2].interval.end, utc(2025, 4, 22, 0, 0));
    assert_eq!(leaves[3].kind, LeaveKind::Unemployed);
    assert_eq!(leaves[4].interval.start, utc(2025, 3, 1, 12, 0));
    assert_eq!(leaves[4].interval.end, utc(2025, 3, 2, 12, 0));
    assert!(schedule.warnings.is_empty(), "{:?}", schedule.warnings);
}

#[test]
fn single_day_across_dst_change() {
    let schedule = ok(r#"project "P" 2025-01-01 +1y { timezone "Europe/Berlin" }
        vacation 2025-03-30"#);
    let interval = schedule.leaves[0].interval;
    assert_eq!(interval.end - interval.start, chrono::Duration::hours(23));
}

#[test]
fn date_in_half_hour_gap() {
    // On 2026-10-04 Lord Howe's clocks jump from 02:00 (+10:30) to 02:30 (+11:00). A skipped
    // local time counts with the offset before the jump, so 02:00 is the instant of the jump
    // (15:30Z) and 02:10 is 02:40 (15:40Z).
    let schedule = ok(r#"project "P" 2026-01-01 +1y {
          timingresolution 10 min
          timezone "Australia/Lord_Howe"
        }
        vacation 2026-10-04-02:00 - 2026-10-04-04:00
        vacation 2026-10-04-02:10 +1h
        vacation 2026-10-03-02:00"#);
    let leaves = &schedule.leaves;
    assert_eq!(leaves[0].interval.start, utc(2026, 10, 3, 15, 30));
    assert_eq!(leaves[0].interval.end, utc(2026, 10, 3, 17, 0));
    assert_eq!(leaves[1].interval.start, utc(2026, 10, 3, 15, 40));
    assert_eq!(leaves[2].interval.end, utc(2026, 10, 3, 15, 30));
}

#[test]
fn leave_outside_time_frame_warns() {
    let schedule = ok(&format!(
        "{HEADER}vacation \"Later\" 2027-01-01\nvacation \"Partly\" 2024-12-01 - 2025-01-05"
    ));
    assert_eq!(schedule.warnings.len(), 1, "{:?}", schedule.warnings);
    let warning = &schedule.warnings[0];
    assert_eq!(warning.severity, Severity::Warning);
    assert_eq!(warning.location.line, 2);
    assert!(warning.message.contains("\"Later\""), "{warning}");
}

#[test]
fn shift_outside_time_frame_warns() {
    let schedule = ok(&format!(
        "{HEADER}shift s \"S\"\nresource r \"R\" {{ shifts s 2024-01-01 - 2024-02-01 }}"
    ));
    assert_eq!(schedule.warnings.len(), 1, "{:?}", schedule.warnings);
    let warning = &schedule.warnings[0];
    assert_eq!(warning.severity, Severity::Warning);
    assert_eq!(warning.location.line, 3);
    assert!(warning.message.contains("shift `s`"), "{warning}");
    assert!(warning.message.contains("no effect"), "{warning}");
}

#[test]
fn count_limits_with_attributes() {
    let schedule = ok(&format!(
        "{HEADER}resource a \"A\"
        resource r \"R\" {{
            limits {{
                minutelymax 5
                dailymax 100 {{ days mon, wed - fri }}
                hourlymax 20 {{ hours 12:00 - 14:00, 8:00 - 9:00 }}
                monthlymax 900 {{ period 2025-03-01 - 2025-04-01 }}
                weeklymax 300 {{ start 2025-02-01 end 2025-03-01 resources a }}
            }}
        }}"
    ));
    let limits = &schedule.resource("r").unwrap().limits;
    assert_eq!(limits.len(), 5);
    assert_eq!(limits[0].kind, LimitKind::Minutely);
    assert_eq!(limits[0].value, 5);
    assert_eq!(
        limits[1].days,
        Some([true, false, true, true, true, false, false])
    );
    assert!(limits[1].applies_on(Weekday::Mon));
    assert!(!limits[1].applies_on(Weekday::Tue));
    assert_eq!(limits[2].hours, vec![range(8, 9), range(12, 14)]);
    let period = limits[3].period.unwrap();
    assert_eq!(
        (period.start, period.end),
        (utc(2025, 3, 1, 0, 0), utc(2025, 4, 1, 0, 0))
    );
    let period = limits[4].period.unwrap();
    assert_eq!(
        (period.start, period.end),
        (utc(2025, 2, 1, 0, 0), utc(2025, 3, 1, 0, 0))
    );
    assert_eq!(limits[4].resources, ["a"]);
    assert_eq!(limits[4].location.line, 9);
}

#[test]
fn duration_limits_ignored_with_warning() {
    let schedule = ok(&format!(
        "{HEADER}resource r \"R\" {{ limits {{ dailymax 4h weeklymax 2.5d dailymin 3 maximum 10h dailymax 9 }} }}"
    ));
    let limits = &schedule.resource("r").unwrap().limits;
    assert_eq!(limits.len(), 1);
    assert_eq!(limits[0].value, 9);
    assert_eq!(schedule.warnings.len(), 4, "{:?}", schedule.warnings);
    assert!(
        schedule.warnings[0].message.contains("`dailymax 4h`"),
        "{}",
        schedule.warnings[0]
    );
    assert!(
        schedule.warnings[2]
            .message
            .contains("`dailymin` is not used for rate limiting"),
        "{}",
        schedule.warnings[2]
    );
}

#[test]
fn skipped_constructs() {
    let schedule = ok("project p \"P\" 2025-01-01 +1y {
            scenario plan \"Plan\" { scenario delayed \"Delayed\" }
        }
        account cost \"Cost\" { account dev \"Dev\" }
        flags important
        rate 100
        resource r \"R\" {
            efficiency 0.8
            rate 200
            email \"r@example.com\"
            managers boss
            booking t1 2025-01-06 +4h { overtime 1 }
            delayed:vacation 2025-02-03
            leaveallowances annual 2025-01-01 20d
        }
        task t1 \"T1\" {
            effort 5d
            task sub \"Sub\" { depends !t1 { gapduration 2d } }
            journalentry 2025-01-02 \"Note\" { author r }
        }
        taskreport overview \"Overview\" { columns name,
            start, end
            formats html }
        navigator nav
        journalentry 2025-01-03 \"Global\"
        resource after \"After\"");
    assert_eq!(schedule.resources.len(), 2);
    assert!(schedule.resource("r").unwrap().leaves.is_empty());
}

#[test]
fn comments_of_every_kind() {
    let schedule = ok(
        "/* block\n comment */ project \"P\" 2025-01-01 +1w // line\n# hash\nresource r \"R\" /* inline */",
    );
    assert_eq!(schedule.resources.len(), 1);
}

#[test]
fn macros_arguments_and_optional() {
    let schedule = ok(r#"macro start [2025-01-01]
macro res [ resource ${1} "${2}" ]
project "P" ${start} +1w
${res "a" "Alpha"}
resource b "B${?nothing}"
vacation ${projectstart} +1d"#);
    assert_eq!(schedule.resource("a").unwrap().name, "Alpha");
    assert_eq!(schedule.resource("b").unwrap().name, "B");
    assert_eq!(schedule.leaves[0].interval.start, schedule.project.start);
}

#[test]
fn macro_redefinition_warns() {
    let schedule = ok("macro a [1]\nmacro a [2]\nproject \"P${a}\" 2025-01-01 +1w");
    assert_eq!(schedule.project.name, "P2");
    assert_eq!(schedule.warnings.len(), 1);
    assert_eq!(schedule.warnings[0].location.line, 2);
}

#[test]
fn include_with_tempdir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("team.tji"),
        "resource t \"T\" {\n  vacation 2025-02-01\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("main.tjp"),
        "project \"P\" 2025-01-01 +1y\ninclude \"team.tji\"\n",
    )
    .unwrap();
    let schedule = Schedule::from_file(dir.path().join("main.tjp")).unwrap();
    let resource = schedule.resource("t").unwrap();
    assert!(resource.location.file.ends_with("team.tji"));
    assert_eq!(resource.location.line, 1);
    assert_eq!(resource.leaves[0].location.line, 2);
}

#[test]
fn custom_resource_attributes_skipped() {
    let schedule = ok(r#"project "P" 2025-01-01 +1y {
        extend resource {
            text Phone "Phone number"
            reference Site "Site" { inherit }
        }
    }
    resource r "R" {
        Phone "+49 30 1234"
        Site "https://example.com" { label "Home" }
        vacation 2025-02-03
    }"#);
    assert_eq!(schedule.resource("r").unwrap().leaves.len(), 1);
    let error =
        parse("project \"P\" 2025-01-01 +1y\nresource r \"R\" { Phone \"1\" }").unwrap_err();
    assert!(
        error.diagnostics[0].message.contains("found `Phone`"),
        "{error}"
    );
}

#[test]
fn scriptplan_resolution_derived_from_times() {
    let text = "project \"P\" 2025-01-01 +1y\nshift half { workinghours mon 09:30 - 17:00 }\nvacation 2025-02-03-12:30";
    let schedule = ok(text);
    assert_eq!(schedule.project.timing_resolution, 1800);
    assert_eq!(schedule.leaves[0].interval.start, utc(2025, 2, 3, 12, 30));

    let quarter = ok("project \"P\" 2025-01-01 +1y\nshift q { workinghours mon 09:15 - 17:00 }");
    assert_eq!(quarter.project.timing_resolution, 900);

    // A TaskJuggler file keeps the default resolution and rejects the date.
    let error = parse("project \"P\" 2025-01-01 +1y\nvacation 2025-02-03-12:30").unwrap_err();
    assert!(
        error.diagnostics[0].message.contains("not aligned"),
        "{error}"
    );
}

#[test]
fn date_arithmetic() {
    let schedule = ok(
        r#"project p "P" %{2025-01-01 + 1d} - %{2026-01-01 - 1d} { now 2025-06-02 }
vacation "A" %{2025-03-01 + 2w}
vacation "B" %{${now} - 2w} - ${now}
leaves annual %{ 2025-05-01 +12h } +2d
journalentry %{2025-01-03 + 1d} "Skipped with its computed date"
task t "T" { start %{${now} - 2w} end ${now} }
resource r "R" {
  limits { dailymax 5 { start %{${projectstart} + 4w} } }
}"#,
    );
    assert_eq!(schedule.project.start, utc(2025, 1, 2, 0, 0));
    assert_eq!(schedule.project.end, utc(2025, 12, 31, 0, 0));
    let leaves = &schedule.leaves;
    assert_eq!(leaves[0].interval.start, utc(2025, 3, 15, 0, 0));
    assert_eq!(leaves[0].interval.end, utc(2025, 3, 16, 0, 0));
    assert_eq!(leaves[1].interval.start, utc(2025, 5, 19, 0, 0));
    assert_eq!(leaves[1].interval.end, utc(2025, 6, 2, 0, 0));
    assert_eq!(leaves[2].interval.start, utc(2025, 5, 1, 12, 0));
    assert_eq!(leaves[2].interval.end, utc(2025, 5, 3, 12, 0));
    let limit = &schedule.resource("r").unwrap().limits[0];
    assert_eq!(limit.period.unwrap().start, utc(2025, 1, 30, 0, 0));
}

#[test]
fn cut_strings_are_strings() {
    let schedule = ok(r#"project p "P" 2025-01-01 +1y
macro who [Ops]
task t "T" {
  note -8<-
    Don't "quote" # not a comment
    /* not a comment either
    include "nothing.tjp"
    macro x [ y ]
    Owner: ${who}
    ->8-
  effort 2d
}
resource r -8<-
    Line one
      indented
  ->8- {
  vacation 2025-02-03
}"#);
    let resource = schedule.resource("r").unwrap();
    assert_eq!(resource.name, "Line one\n  indented\n");
    assert_eq!(resource.leaves.len(), 1);
    assert_eq!(resource.leaves[0].location.line, 17);
}

#[test]
fn scriptplan_tilde_in_leaves() {
    let schedule = ok(&format!(
        "{HEADER}leaves annual \"Trip\" 2025-03-03 ~ 2025-03-08
resource r \"R\" {{ leaves sick 2025-04-01~2025-04-03 }}
shift s \"S\" {{ leaves special 2025-05-01 ~ 2025-05-02 }}"
    ));
    assert_eq!(schedule.leaves[0].kind, LeaveKind::Annual);
    assert_eq!(schedule.leaves[0].interval.start, utc(2025, 3, 3, 0, 0));
    assert_eq!(schedule.leaves[0].interval.end, utc(2025, 3, 8, 0, 0));
    let own = &schedule.resource("r").unwrap().leaves;
    let sick = own.iter().find(|l| l.kind == LeaveKind::Sick).unwrap();
    assert_eq!(sick.interval.end, utc(2025, 4, 3, 0, 0));
    assert_eq!(
        schedule.shift("s").unwrap().leaves[0].interval.end,
        utc(2025, 5, 2, 0, 0)
    );
}

#[test]
fn include_contexts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("macros.tji"),
        "# Shared dates\nmacro year_start [2025-01-01]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("zone.tji"), "timezone \"Europe/Berlin\"\n").unwrap();
    std::fs::write(
        dir.path().join("main.tjp"),
        "include \"macros.tji\"\nproject \"P\" ${year_start} +1y {\n  include \"zone.tji\"\n}\nvacation 2025-02-03\n",
    )
    .unwrap();
    let schedule = Schedule::from_file(dir.path().join("main.tjp")).unwrap();
    assert_eq!(schedule.project.start, utc(2025, 1, 1, 0, 0));
    assert_eq!(schedule.project.timezone, chrono_tz::Europe::Berlin);
    assert_eq!(schedule.leaves[0].interval.start, utc(2025, 2, 2, 23, 0));
}
