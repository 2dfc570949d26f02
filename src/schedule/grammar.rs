//! The grammar, written with `combine` over the lexer's tokens. It produces the syntax tree of
//! [`super::ast`]; constructs that do not affect availability are consumed and dropped.
//!
//! A statement the grammar does not model (a task attribute, a report, `efficiency` on a resource)
//! has no terminator in TaskJuggler's language, so it is skipped up to the end of its line, across
//! lines that end in a comma, and across one balanced `{ ... }` block.

use chrono::Weekday;
use combine::error::{Commit, StreamError, Tracked};
use combine::stream::position::{IndexPositioner, Stream as PositionStream};
use combine::stream::{ResetStream, StreamErrorFor};
use combine::{
    Parser, Positioned, StreamOnce, choice, easy, eof, many, optional, parser, satisfy_map, sep_by1,
};

use super::LeaveKind;
use super::ast::*;
use super::lexer::{Kind, Token};
use super::source::Pos;

/// The grammar reads references to tokens, so that trying an alternative copies no string.
pub(crate) type Input<'a> = easy::Stream<PositionStream<&'a [&'a Token], IndexPositioner>>;
type Result<'a, T> = combine::StdParseResult<T, Input<'a>>;
pub(crate) type Errors<'a> = easy::Errors<&'a Token, &'a [&'a Token], usize>;

/// Parses the whole token list.
pub(crate) fn parse_file<'a>(tokens: &'a [&'a Token]) -> std::result::Result<FileAst, Errors<'a>> {
    let custom = custom_resource_attributes(tokens);
    CUSTOM_RESOURCE_ATTRIBUTES.with(|names| *names.borrow_mut() = custom);
    let stream: Input<'_> = easy::Stream(PositionStream::with_positioner(
        tokens,
        IndexPositioner::new(),
    ));
    let mut file = (
        project(),
        many(statement()),
        eof().expected(PROPERTY_EXPECTED),
    )
        .map(
            |(project, statements, ()): (ProjectAst, Vec<Option<Statement>>, ())| FileAst {
                project,
                statements: statements.into_iter().flatten().collect(),
            },
        );
    file.parse(stream).map(|(ast, _)| ast)
}

const RESOURCE_EXPECTED: &str = "a resource attribute such as `workinghours`, `vacation`, `leaves`, `shifts`, `limits`, `timezone` or `resource`, or `}`";

const PROPERTY_EXPECTED: &str =
    "a property such as `resource`, `shift`, `vacation`, `leaves`, `limits`, `task` or a report";

/// Keywords of properties and global attributes that do not affect availability.
const SKIPPED_PROPERTIES: &[&str] = &[
    "task",
    "account",
    "taskreport",
    "resourcereport",
    "textreport",
    "tracereport",
    "icalreport",
    "export",
    "nikureport",
    "statussheetreport",
    "timesheetreport",
    "accountreport",
    "tagfile",
    "navigator",
    "journalentry",
    "flags",
    "copyright",
    "rate",
    "balance",
    "projectid",
    "projectids",
    "timesheet",
    "statussheet",
    "extend",
    "auxdir",
    "supplement",
];

/// Project attributes that do not affect availability.
const SKIPPED_PROJECT_ATTRIBUTES: &[&str] = &[
    "scenario",
    "extend",
    "currency",
    "currencyformat",
    "numberformat",
    "timeformat",
    "shorttimeformat",
    "markdate",
    "outputdir",
    "alertlevels",
    "trackingscenario",
    "balance",
    "journalentry",
    "auxdir",
    "copyright",
];

/// Resource attributes that do not affect availability.
const SKIPPED_RESOURCE_ATTRIBUTES: &[&str] = &[
    "efficiency",
    "rate",
    "email",
    "managers",
    "booking",
    "flags",
    "journalentry",
    "leaveallowances",
    "chargeset",
    "fail",
    "warn",
    "purge",
    "allocate",
    "overtime",
];

/// Limit kinds; the last five are read but not used for rate limiting.
pub(crate) const LIMIT_KINDS: &[&str] = &[
    "minutelymax",
    "hourlymax",
    "dailymax",
    "weeklymax",
    "monthlymax",
    "dailymin",
    "weeklymin",
    "monthlymin",
    "maximum",
    "minimum",
];

// ---------------------------------------------------------------------------------------------
// Single tokens

fn keyword<'a>(word: &'static str) -> impl Parser<Input<'a>, Output = Pos> {
    satisfy_map(move |t: &Token| match &t.kind {
        Kind::Id(s) if s == word => Some(t.pos),
        _ => None,
    })
    .expected(word)
}

fn keyword_in<'a>(
    words: &'static [&'static str],
) -> impl Parser<Input<'a>, Output = Spanned<String>> {
    satisfy_map(move |t: &Token| match &t.kind {
        Kind::Id(s) if words.contains(&s.as_str()) => Some(Spanned {
            value: s.clone(),
            pos: t.pos,
        }),
        _ => None,
    })
}

fn punct<'a>(p: &'static str) -> impl Parser<Input<'a>, Output = Pos> {
    satisfy_map(move |t: &Token| match &t.kind {
        Kind::Punct(q) if *q == p => Some(t.pos),
        _ => None,
    })
    .expected(p)
}

fn ident<'a>() -> impl Parser<Input<'a>, Output = Spanned<String>> {
    satisfy_map(|t: &Token| match &t.kind {
        Kind::Id(s) => Some(Spanned {
            value: s.clone(),
            pos: t.pos,
        }),
        _ => None,
    })
    .expected("an id")
}

fn resource_ref<'a>() -> impl Parser<Input<'a>, Output = Spanned<String>> {
    satisfy_map(|t: &Token| match &t.kind {
        Kind::Id(s) | Kind::AbsoluteId(s) => Some(Spanned {
            value: s.clone(),
            pos: t.pos,
        }),
        _ => None,
    })
    .expected("a resource id")
}

fn string<'a>() -> impl Parser<Input<'a>, Output = Spanned<String>> {
    satisfy_map(|t: &Token| match &t.kind {
        Kind::Str(s) => Some(Spanned {
            value: s.clone(),
            pos: t.pos,
        }),
        _ => None,
    })
    .expected("a string in quotes")
}

/// A date, or TaskJuggler's date arithmetic `%{ DATE (+|-) DURATION }`.
fn date<'a>() -> impl Parser<Input<'a>, Output = Spanned<DateAst>> {
    let sign = choice((punct("+").map(|_| false), punct("-").map(|_| true)))
        .expected("`+` or `-` and a duration, as in `%{${now} - 2w}`");
    let calculated = (
        punct("%"),
        punct("{"),
        plain_date(),
        sign,
        duration(),
        punct("}").expected("`}` to close `%{`"),
    )
        .map(|(pos, _, base, minus, duration, _)| Spanned {
            value: DateAst::Calculated {
                base: Box::new(base),
                minus,
                duration,
            },
            pos,
        });
    choice((plain_date(), calculated))
        .expected("a date such as 2025-01-31, 2025-01-31-09:00 or %{2025-01-31 + 2w}")
}

fn plain_date<'a>() -> impl Parser<Input<'a>, Output = Spanned<DateAst>> {
    satisfy_map(|t: &Token| match &t.kind {
        Kind::Date(s) => Some(Spanned {
            value: DateAst::Literal(s.clone()),
            pos: t.pos,
        }),
        Kind::Builtin(s) => Some(Spanned {
            value: DateAst::Builtin(s.clone()),
            pos: t.pos,
        }),
        _ => None,
    })
    .expected("a date such as 2025-01-31 or 2025-01-31-09:00")
}

fn number<'a>() -> impl Parser<Input<'a>, Output = Spanned<String>> {
    satisfy_map(|t: &Token| match &t.kind {
        Kind::Integer(s) | Kind::Float(s) => Some(Spanned {
            value: s.clone(),
            pos: t.pos,
        }),
        _ => None,
    })
    .expected("a number")
}

fn time<'a>() -> impl Parser<Input<'a>, Output = Spanned<String>> {
    satisfy_map(|t: &Token| match &t.kind {
        Kind::Time(s) => Some(Spanned {
            value: s.clone(),
            pos: t.pos,
        }),
        _ => None,
    })
    .expected("a time such as 09:00")
}

const DURATION_UNITS: &[&str] = &["min", "h", "d", "w", "m", "y"];

fn duration_unit<'a>() -> impl Parser<Input<'a>, Output = Spanned<String>> {
    keyword_in(DURATION_UNITS).expected("a unit: min, h, d, w, m or y")
}

fn duration<'a>() -> impl Parser<Input<'a>, Output = DurationAst> {
    (number(), duration_unit()).map(|(value, unit)| DurationAst {
        // The lexer only produces digits with at most one dot, which always parse.
        value: value.value.parse().unwrap_or(0.0),
        number: value.value,
        unit: unit.value,
        pos: value.pos,
    })
}

/// Parses a weekday keyword. Set `only_days` where nothing but weekdays can be written, as in
/// the `days` of a limit, so that a misspelled one is reported whatever follows it.
fn weekday<'a>(only_days: bool) -> impl Parser<Input<'a>, Output = Weekday> {
    let exact = satisfy_map(|t: &Token| match &t.kind {
        Kind::Id(s) => weekday_named(s),
        _ => None,
    });
    let miscased = parser(move |input: &mut Input<'a>| miscased_weekday(input, only_days));
    choice((exact, miscased)).expected("a weekday: mon, tue, wed, thu, fri, sat or sun")
}

fn weekday_named(name: &str) -> Option<Weekday> {
    match name {
        "mon" => Some(Weekday::Mon),
        "tue" => Some(Weekday::Tue),
        "wed" => Some(Weekday::Wed),
        "thu" => Some(Weekday::Thu),
        "fri" => Some(Weekday::Fri),
        "sat" => Some(Weekday::Sat),
        "sun" => Some(Weekday::Sun),
        _ => None,
    }
}

/// Rejects a weekday in another spelling (`Mon`, `MON`, `Monday`) where days are expected: always
/// when `only_days` is set, and otherwise when a time, `-`, `,` or `off` follows it. TaskJuggler's
/// weekday keywords are lower case, and without this check `workinghours Mon 09:00 - 17:00` reads
/// `Mon` as a shift id and reports the time instead.
fn miscased_weekday<'a>(input: &mut Input<'a>, only_days: bool) -> Result<'a, Weekday> {
    let position = input.position();
    let checkpoint = input.checkpoint();
    let written = match input.uncons() {
        Ok(Token {
            kind: Kind::Id(name),
            ..
        }) => Some(name.clone()),
        _ => None,
    };
    let keyword = written.as_deref().and_then(|name| {
        let lower = name.to_ascii_lowercase();
        let short = lower.get(..3)?;
        let day = weekday_named(short)?;
        let full = format!("{}day", day_stem(day));
        (lower.len() == 3 || lower == full).then(|| short.to_owned())
    });
    let days_follow = only_days
        || match input.uncons() {
            Ok(token) => match &token.kind {
                Kind::Time(_) | Kind::Punct("-") | Kind::Punct(",") => true,
                Kind::Id(name) => name == "off",
                _ => false,
            },
            Err(_) => false,
        };
    if let (Some(written), Some(keyword), true) = (written, keyword, days_follow) {
        let error = easy::Errors::new(
            position,
            StreamErrorFor::<Input<'a>>::message_format(format!(
                "invalid weekday `{written}`: weekdays are lower-case three-letter keywords; write `{keyword}`"
            )),
        );
        return Err(Commit::Commit(Tracked::from(error)));
    }
    let _ = input.reset(checkpoint);
    Err(Commit::Peek(Tracked::from(easy::Errors::empty(position))))
}

fn day_stem(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "mon",
        Weekday::Tue => "tues",
        Weekday::Wed => "wednes",
        Weekday::Thu => "thurs",
        Weekday::Fri => "fri",
        Weekday::Sat => "satur",
        Weekday::Sun => "sun",
    }
}

fn leave_kind<'a>() -> impl Parser<Input<'a>, Output = LeaveKind> {
    satisfy_map(|t: &Token| match &t.kind {
        Kind::Id(s) => match s.as_str() {
            "project" => Some(LeaveKind::Project),
            "annual" => Some(LeaveKind::Annual),
            "special" => Some(LeaveKind::Special),
            "sick" => Some(LeaveKind::Sick),
            "unpaid" => Some(LeaveKind::Unpaid),
            "holiday" => Some(LeaveKind::Holiday),
            "unemployed" => Some(LeaveKind::Unemployed),
            _ => None,
        },
        _ => None,
    })
    .expected("a leave type: project, annual, special, sick, unpaid, holiday or unemployed")
}

// ---------------------------------------------------------------------------------------------
// Dates, intervals, days and times

fn interval_or_date<'a>() -> impl Parser<Input<'a>, Output = IntervalAst> {
    (date(), optional(interval_end())).map(|(start, end)| match end {
        None => IntervalAst::Single(start),
        Some(Ok(end)) => IntervalAst::Range(start, end),
        Some(Err(duration)) => IntervalAst::Plus(start, duration),
    })
}

fn interval<'a>() -> impl Parser<Input<'a>, Output = IntervalAst> {
    (date(), interval_end()).map(|(start, end)| match end {
        Ok(end) => IntervalAst::Range(start, end),
        Err(duration) => IntervalAst::Plus(start, duration),
    })
}

/// `- DATE` or `+ DURATION`.
fn interval_end<'a>()
-> impl Parser<Input<'a>, Output = std::result::Result<Spanned<DateAst>, DurationAst>> {
    choice((
        punct("-").with(date()).map(Ok),
        punct("+").with(duration()).map(Err),
    ))
}

fn day_list<'a>(only_days: bool) -> impl Parser<Input<'a>, Output = Vec<DaySpec>> {
    sep_by1(
        (
            weekday(only_days),
            optional(punct("-").with(weekday(only_days))),
        ),
        punct(","),
    )
}

fn time_range<'a>() -> impl Parser<Input<'a>, Output = TimeRangeAst> {
    (time(), punct("-"), time()).map(|(start, _, end)| TimeRangeAst { start, end })
}

fn time_ranges<'a>() -> impl Parser<Input<'a>, Output = Vec<TimeRangeAst>> {
    (sep_by1(time_range(), punct(",")), parser(no_time_follows)).map(|(ranges, ())| ranges)
}

/// Rejects a time right after a list of time ranges, a missing comma as in `09:00 - 12:00
/// 13:00 - 17:00`, which would otherwise fail at the time with a list of attributes.
fn no_time_follows<'a>(input: &mut Input<'a>) -> Result<'a, ()> {
    let position = input.position();
    let checkpoint = input.checkpoint();
    let next = input.uncons().ok().map(|token| token.kind.clone());
    let _ = input.reset(checkpoint);
    if let Some(Kind::Time(time)) = next {
        let error = easy::Errors::new(
            position,
            StreamErrorFor::<Input<'a>>::message_format(format!(
                "missing `,` before `{time}`: separate time ranges with commas, as in `09:00 - 12:00, 13:00 - 17:00`"
            )),
        );
        return Err(Commit::Commit(Tracked::from(error)));
    }
    Ok(((), Commit::Peek(())))
}

/// `DAYS (off | TIME - TIME, ...)`, after the `workinghours` keyword at `pos`.
fn working_hours_spec<'a>(pos: Pos) -> impl Parser<Input<'a>, Output = WorkingHoursAst> {
    (
        day_list(false),
        choice((keyword("off").map(|_| None), time_ranges().map(Some))),
    )
        .map(move |(days, times)| WorkingHoursAst { days, times, pos })
}

fn working_hours<'a>() -> impl Parser<Input<'a>, Output = WorkingHoursAst> {
    keyword("workinghours").then(working_hours_spec)
}

// ---------------------------------------------------------------------------------------------
// Leaves and limits

fn vacation<'a>() -> impl Parser<Input<'a>, Output = VacationAst> {
    (
        keyword("vacation"),
        optional(string()),
        sep_by1(interval_or_date(), punct(",")),
    )
        .map(|(pos, name, intervals)| VacationAst {
            name: name.map(|n| n.value),
            intervals,
            pos,
        })
}

fn leaves<'a>() -> impl Parser<Input<'a>, Output = Vec<LeaveAst>> {
    // ScriptPlan also separates the dates of a leave with `~`.
    let interval = (
        date(),
        optional(choice((interval_end(), punct("~").with(date()).map(Ok)))),
    )
        .map(|(start, end)| match end {
            None => IntervalAst::Single(start),
            Some(Ok(end)) => IntervalAst::Range(start, end),
            Some(Err(duration)) => IntervalAst::Plus(start, duration),
        });
    let leave = (leave_kind(), optional(string()), interval).map(|(kind, name, interval)| {
        let pos = interval.pos();
        LeaveAst {
            kind,
            name: name.map(|n| n.value),
            interval,
            pos,
        }
    });
    keyword("leaves").with(sep_by1(leave, punct(",")))
}

fn limit_attribute<'a>() -> impl Parser<Input<'a>, Output = LimitAttr> {
    choice((
        keyword("period").with(interval()).map(LimitAttr::Period),
        keyword("start").with(date()).map(LimitAttr::Start),
        keyword("end").with(date()).map(LimitAttr::End),
        keyword("days").with(day_list(true)).map(LimitAttr::Days),
        keyword("hours").with(time_ranges()).map(LimitAttr::Hours),
        keyword("resources")
            .with(sep_by1(resource_ref(), punct(",")))
            .map(LimitAttr::Resources),
    ))
    .expected("a limit attribute: period, start, end, days, hours or resources")
}

fn limit<'a>() -> impl Parser<Input<'a>, Output = LimitAst> {
    let kind = keyword_in(LIMIT_KINDS);
    let value =
        (optional(punct("-")), number(), optional(duration_unit())).map(|(minus, number, unit)| {
            let pos = minus.unwrap_or(number.pos);
            match unit {
                Some(unit) => LimitValue::Duration(DurationAst {
                    value: number.value.parse().unwrap_or(0.0),
                    number: format!("{}{}", if minus.is_some() { "-" } else { "" }, number.value),
                    unit: unit.value,
                    pos,
                }),
                None => {
                    let sign = if minus.is_some() { "-" } else { "" };
                    LimitValue::Count(Spanned {
                        value: format!("{sign}{}", number.value),
                        pos,
                    })
                }
            }
        });
    let attributes =
        optional((punct("{"), many(limit_attribute()), punct("}")).map(|(_, attrs, _)| attrs));
    // The message is set on the whole limit because, set on the kind alone, combine would add
    // what the value and attributes expect to an error at the kind.
    (kind, value, attributes)
        .map(|(kind, value, attrs)| LimitAst {
            pos: kind.pos,
            kind: kind.value,
            value,
            attrs: attrs.unwrap_or_default(),
        })
        .expected(
            "a limit: minutelymax, hourlymax, dailymax, weeklymax or monthlymax followed by a count",
        )
}

fn limits<'a>() -> impl Parser<Input<'a>, Output = Vec<LimitAst>> {
    limits_at().map(|(_, limits)| limits)
}

/// Parses a `limits` block, returning the position of its keyword with the limits.
fn limits_at<'a>() -> impl Parser<Input<'a>, Output = (Pos, Vec<LimitAst>)> {
    (keyword("limits"), punct("{"), many(limit()), punct("}"))
        .map(|(pos, _, limits, _)| (pos, limits))
}

// ---------------------------------------------------------------------------------------------
// Skipping

/// Skips the rest of a statement whose first token is on line `line`.
fn skip_rest<'a>(line: (u32, u32)) -> impl Parser<Input<'a>, Output = ()> {
    parser(move |input: &mut Input<'a>| skip_rest_of(input, line))
}

fn skip_rest_of<'a>(input: &mut Input<'a>, line: (u32, u32)) -> Result<'a, ()> {
    let mut last_line = line;
    let mut continued = false;
    let mut consumed = false;
    loop {
        let checkpoint = input.checkpoint();
        let position = input.position();
        let Ok(token) = input.uncons() else {
            let _ = input.reset(checkpoint);
            break;
        };
        match token.kind {
            Kind::Punct("}") | Kind::PrefixStart(_) | Kind::PrefixEnd => {
                let _ = input.reset(checkpoint);
                break;
            }
            Kind::Punct("{") => {
                skip_block(input, position)?;
                consumed = true;
                break;
            }
            _ if (token.pos.file, token.pos.line) != last_line && !continued => {
                let _ = input.reset(checkpoint);
                break;
            }
            // `%{ DATE + DURATION }` is a value inside the statement, not its body.
            Kind::Punct("%") => {
                last_line = (token.pos.file, token.end_line);
                continued = false;
                consumed = true;
                let after_percent = input.checkpoint();
                let open = input.position();
                match input.uncons() {
                    Ok(next) if next.kind == Kind::Punct("{") => {
                        skip_block(input, open)?;
                    }
                    _ => {
                        let _ = input.reset(after_percent);
                    }
                }
            }
            _ => {
                last_line = (token.pos.file, token.end_line);
                continued = token.kind == Kind::Punct(",");
                consumed = true;
            }
        }
    }
    Ok((
        (),
        if consumed {
            Commit::Commit(())
        } else {
            Commit::Peek(())
        },
    ))
}

/// Skips to the `}` that closes a `{` already consumed at token index `open`.
fn skip_block<'a>(input: &mut Input<'a>, open: usize) -> Result<'a, ()> {
    let mut depth = 1usize;
    while depth > 0 {
        let Ok(token) = input.uncons() else {
            let error = easy::Errors::new(
                open,
                StreamErrorFor::<Input<'a>>::message_static_message(
                    "unclosed `{`: add the matching `}`",
                ),
            );
            return Err(Commit::Commit(Tracked::from(error)));
        };
        match token.kind {
            Kind::Punct("{") => depth += 1,
            Kind::Punct("}") => depth -= 1,
            _ => {}
        }
    }
    Ok(((), Commit::Commit(())))
}

/// Skips the tokens on `line` up to a `{` or `}`.
fn skip_header<'a>(input: &mut Input<'a>, line: (u32, u32)) -> Result<'a, ()> {
    let mut consumed = false;
    loop {
        let checkpoint = input.checkpoint();
        match input.uncons() {
            Ok(token)
                if (token.pos.file, token.pos.line) == line
                    && !matches!(token.kind, Kind::Punct("{") | Kind::Punct("}")) =>
            {
                consumed = true;
            }
            _ => {
                let _ = input.reset(checkpoint);
                break;
            }
        }
    }
    Ok((
        (),
        if consumed {
            Commit::Commit(())
        } else {
            Commit::Peek(())
        },
    ))
}

thread_local! {
    /// The resource attributes the file declares with `extend resource { ... }`, which are
    /// skipped like the built-in ones. Set by [`parse_file`] for the grammar on this thread.
    static CUSTOM_RESOURCE_ATTRIBUTES: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Finds the ids declared in `extend resource { TYPE ID "Name" ... }` blocks.
fn custom_resource_attributes(tokens: &[&Token]) -> Vec<String> {
    const TYPES: &[&str] = &["date", "number", "reference", "richtext", "text"];
    let id = |token: Option<&&Token>| match token.map(|t| &t.kind) {
        Some(Kind::Id(s)) => Some(s.clone()),
        _ => None,
    };
    let mut names = Vec::new();
    let mut i = 0;
    while i + 2 < tokens.len() {
        let opens = id(tokens.get(i)).as_deref() == Some("extend")
            && id(tokens.get(i + 1)).as_deref() == Some("resource")
            && tokens[i + 2].kind == Kind::Punct("{");
        if !opens {
            i += 1;
            continue;
        }
        i += 3;
        while i < tokens.len() && tokens[i].kind != Kind::Punct("}") {
            if id(tokens.get(i)).is_some_and(|t| TYPES.contains(&t.as_str()))
                && let Some(name) = id(tokens.get(i + 1))
            {
                names.push(name);
            }
            i += 1;
        }
    }
    names
}

/// A resource attribute declared with `extend resource`, skipped.
fn custom_resource_attribute<'a>() -> impl Parser<Input<'a>, Output = ()> {
    satisfy_map(|t: &Token| match &t.kind {
        Kind::Id(s) if CUSTOM_RESOURCE_ATTRIBUTES.with(|names| names.borrow().contains(s)) => {
            Some((t.pos.file, t.pos.line))
        }
        _ => None,
    })
    .then(skip_rest)
}

/// A statement to skip that starts with one of `words`, or with a scenario prefix (`plan:`).
fn skipped<'a>(words: &'static [&'static str]) -> impl Parser<Input<'a>, Output = ()> {
    satisfy_map(move |t: &Token| match &t.kind {
        Kind::Id(s) if words.contains(&s.as_str()) => Some((t.pos.file, t.pos.line)),
        Kind::IdWithColon(_) => Some((t.pos.file, t.pos.line)),
        _ => None,
    })
    .then(skip_rest)
}

/// `{ inner }`, where a token that is neither part of `inner` nor `}` is reported as not being
/// `what`.
fn block_of<'a, P>(inner: P, what: &'static str) -> impl Parser<Input<'a>, Output = P::Output>
where
    P: Parser<Input<'a>>,
{
    (punct("{"), inner, punct("}").expected(what)).map(|(_, value, _)| value)
}

fn block<'a, P>(inner: P) -> impl Parser<Input<'a>, Output = P::Output>
where
    P: Parser<Input<'a>>,
{
    (punct("{"), inner, punct("}")).map(|(_, value, _)| value)
}

// ---------------------------------------------------------------------------------------------
// Project

fn project<'a>() -> impl Parser<Input<'a>, Output = ProjectAst> {
    let end = choice((
        punct("-").with(date()).map(ProjectEnd::Date),
        punct("+").with(duration()).map(ProjectEnd::Duration),
    ))
    .expected("`- END_DATE` or `+DURATION` such as `+1y`");
    (
        keyword("project").expected("the project header `project ID \"Name\" START - END`"),
        optional(ident()),
        string(),
        optional(string()),
        date(),
        end,
        optional(block(many(project_attribute()))),
    )
        .map(
            |(pos, id, name, version, start, end, attrs): (
                _,
                _,
                _,
                _,
                _,
                _,
                Option<Vec<Option<ProjectAttr>>>,
            )| ProjectAst {
                id: id.map(|id| id.value),
                name: name.value,
                version: version.map(|v| v.value),
                start,
                end,
                attrs: attrs.unwrap_or_default().into_iter().flatten().collect(),
                pos,
            },
        )
}

fn project_attribute<'a>() -> impl Parser<Input<'a>, Output = Option<ProjectAttr>> {
    choice((
        keyword("timezone")
            .with(string())
            .map(|s| Some(ProjectAttr::Timezone(s))),
        keyword("timingresolution")
            .with(duration())
            .map(|d| Some(ProjectAttr::TimingResolution(d))),
        keyword("now")
            .with(date())
            .map(|d| Some(ProjectAttr::Now(d))),
        keyword("weekstartsmonday").map(|_| Some(ProjectAttr::WeekStart(Weekday::Mon))),
        keyword("weekstartssunday").map(|_| Some(ProjectAttr::WeekStart(Weekday::Sun))),
        keyword("dailyworkinghours")
            .with(number())
            .map(|n| Some(ProjectAttr::DailyWorkingHours(parse_number(n)))),
        keyword("yearlyworkingdays")
            .with(number())
            .map(|n| Some(ProjectAttr::YearlyWorkingDays(parse_number(n)))),
        working_hours().map(|w| Some(ProjectAttr::WorkingHours(w))),
        skipped(SKIPPED_PROJECT_ATTRIBUTES).map(|()| None),
    ))
    .expected("a project attribute such as `timezone`, `timingresolution`, `now` or `workinghours`")
}

fn parse_number(n: Spanned<String>) -> Spanned<f64> {
    Spanned {
        value: n.value.parse().unwrap_or(0.0),
        pos: n.pos,
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

fn statement<'a>() -> impl Parser<Input<'a>, Output = Option<Statement>> {
    parser(statement_)
}

fn statement_<'a>(input: &mut Input<'a>) -> Result<'a, Option<Statement>> {
    let prefixed = (
        satisfy_map(|t: &Token| match &t.kind {
            Kind::PrefixStart(name) => Some(Spanned {
                value: name.clone(),
                pos: t.pos,
            }),
            _ => None,
        }),
        many(statement()),
        satisfy_map(|t: &Token| (t.kind == Kind::PrefixEnd).then_some(())),
    )
        .map(
            |(name, statements, ()): (Spanned<String>, Vec<Option<Statement>>, ())| {
                Some(Statement::Prefixed(
                    name,
                    statements.into_iter().flatten().collect(),
                ))
            },
        );
    // Only `supplement resource` backtracks: `supplement task` and others are skipped, and an
    // error inside the resource's body stays an error.
    let supplement = (
        combine::attempt((keyword("supplement"), keyword("resource"))),
        resource_ref(),
        optional(block_of(resource_attributes(), RESOURCE_EXPECTED)),
    )
        .map(|(_, id, attrs)| Some(Statement::SupplementResource(id, attrs.unwrap_or_default())));
    choice((
        parser(resource).map(|r| Some(Statement::Resource(r))),
        parser(shift).map(|s| Some(Statement::Shift(s))),
        vacation().map(|v| Some(Statement::Vacation(v))),
        leaves().map(|l| Some(Statement::Leaves(l))),
        limits().map(|l| Some(Statement::Limits(l))),
        supplement,
        parser(task).map(|limits| (!limits.is_empty()).then_some(Statement::TaskLimits(limits))),
        keyword("workinghours").then(|pos| {
            skip_rest((pos.file, pos.line)).map(move |()| Some(Statement::StrayWorkingHours(pos)))
        }),
        skipped(SKIPPED_PROPERTIES).map(|()| None),
        prefixed,
    ))
    .expected(PROPERTY_EXPECTED)
    .parse_stream(input)
    .into_result()
}

fn shift<'a>(input: &mut Input<'a>) -> Result<'a, ShiftAst> {
    let attribute = choice((
        working_hours().map(|w| Some(ShiftAttr::WorkingHours(w))),
        vacation().map(|v| Some(ShiftAttr::Vacation(v))),
        leaves().map(|l| Some(ShiftAttr::Leaves(l))),
        keyword("replace").map(|_| Some(ShiftAttr::Replace)),
        keyword("timezone")
            .with(string())
            .map(|s| Some(ShiftAttr::Timezone(s))),
        parser(shift).map(|s| Some(ShiftAttr::Shift(s))),
        skipped(&["flags", "journalentry"]).map(|()| None),
    ))
    .expected("a shift attribute: workinghours, vacation, leaves, replace, timezone or shift");
    let attributes = block(
        many(attribute)
            .map(|attrs: Vec<Option<ShiftAttr>>| attrs.into_iter().flatten().collect::<Vec<_>>()),
    );
    (
        keyword("shift"),
        ident(),
        optional(string()),
        optional(attributes),
    )
        .map(|(pos, id, name, attrs)| ShiftAst {
            id,
            name: name.map(|n| n.value),
            attrs: attrs.unwrap_or_default(),
            pos,
        })
        .parse_stream(input)
        .into_result()
}

fn resource_attributes<'a>() -> impl Parser<Input<'a>, Output = Vec<ResourceAttr>> {
    parser(resource_attributes_)
}

fn resource_attributes_<'a>(input: &mut Input<'a>) -> Result<'a, Vec<ResourceAttr>> {
    let workinghours = keyword("workinghours").then(|pos| {
        choice((
            working_hours_spec(pos).map(ResourceAttr::WorkingHours),
            ident().map(ResourceAttr::WorkingHoursShift),
        ))
        .expected("weekdays and times such as `mon - fri 09:00 - 17:00`, or a shift id")
    });
    let shift_ref =
        (ident(), optional(interval())).map(|(shift, interval)| ShiftRefAst { shift, interval });
    let supplement = (
        keyword("supplement"),
        keyword("resource"),
        resource_ref(),
        optional(block_of(resource_attributes(), RESOURCE_EXPECTED)),
    )
        .map(|(_, _, id, attrs)| ResourceAttr::Supplement(id, attrs.unwrap_or_default()));
    let attribute = choice((
        workinghours.map(Some),
        vacation().map(|v| Some(ResourceAttr::Vacation(v))),
        leaves().map(|l| Some(ResourceAttr::Leaves(l))),
        choice((keyword("shifts"), keyword("shift")))
            .with(sep_by1(shift_ref, punct(",")))
            .map(|s| Some(ResourceAttr::Shifts(s))),
        limits_at().map(|(pos, l)| Some(ResourceAttr::Limits(pos, l))),
        keyword("timezone")
            .with(string())
            .map(|s| Some(ResourceAttr::Timezone(s))),
        parser(resource).map(|r| Some(ResourceAttr::Resource(r))),
        supplement.map(Some),
        combine::attempt(keyword("purge").with(ident())).map(|id| Some(ResourceAttr::Purge(id))),
        skipped(SKIPPED_RESOURCE_ATTRIBUTES).map(|()| None),
        custom_resource_attribute().map(|()| None),
    ))
    .expected(RESOURCE_EXPECTED);
    many(attribute)
        .map(|attrs: Vec<Option<ResourceAttr>>| attrs.into_iter().flatten().collect())
        .parse_stream(input)
        .into_result()
}

fn resource<'a>(input: &mut Input<'a>) -> Result<'a, ResourceAst> {
    (
        keyword("resource"),
        optional(ident()),
        string(),
        optional(block_of(resource_attributes(), RESOURCE_EXPECTED)),
    )
        .map(|(pos, id, name, attrs)| ResourceAst {
            id: id.map(|id| id.value),
            name: name.value,
            attrs: attrs.unwrap_or_default(),
            pos,
        })
        .parse_stream(input)
        .into_result()
}

/// A task, skipped except for its `limits`, which are returned for checking.
fn task<'a>(input: &mut Input<'a>) -> Result<'a, Vec<LimitAst>> {
    let item = choice((
        limits(),
        parser(task),
        satisfy_map(|t: &Token| (t.kind != Kind::Punct("}")).then_some((t.pos.file, t.pos.line)))
            .then(skip_rest)
            .map(|()| Vec::new()),
    ));
    let items = many(item).map(|items: Vec<Vec<LimitAst>>| items.into_iter().flatten().collect());
    let body = block_of(items, "`}` to close the task");
    // The header: an optional id and a name on the keyword's line, up to the body.
    (
        keyword("task").then(|pos| {
            parser(move |input: &mut Input<'a>| skip_header(input, (pos.file, pos.line)))
        }),
        optional(body),
    )
        .map(|((), limits)| limits.unwrap_or_default())
        .parse_stream(input)
        .into_result()
}
