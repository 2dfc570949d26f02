//! Entry points of the parser.

use std::path::{Path, PathBuf};

use combine::easy;

use super::ast::FileAst;
use super::lexer::{self, Token};
use super::source::{self, Expansion};
use super::{Diagnostic, Location, Schedule, ScheduleError, build, grammar};

/// The origin of a schedule's text, for messages and for resolving `include`.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// The name printed in `FILE:LINE:COL` messages.
    pub file_name: PathBuf,
    /// The folder `include` paths are relative to; `None` rejects `include` (a schedule stored in
    /// the database has no folder).
    pub base_dir: Option<PathBuf>,
}

impl ParseOptions {
    /// Options for text that comes from no file: messages name it `name`, `include` is rejected.
    pub fn named(name: impl Into<PathBuf>) -> Self {
        ParseOptions {
            file_name: name.into(),
            base_dir: None,
        }
    }
}

impl Schedule {
    /// Parses and validates the schedule in the file at `path`, with its includes.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Schedule, ScheduleError> {
        let path = path.as_ref();
        let whole_file = Location {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
        };
        let text = source::read_file(path).map_err(|error| ScheduleError {
            diagnostics: vec![error.diagnostic(path, whole_file, "cannot read the schedule file")],
        })?;
        let options = ParseOptions {
            file_name: path.to_path_buf(),
            base_dir: Some(path.parent().map(Path::to_path_buf).unwrap_or_default()),
        };
        Schedule::parse(&text, &options)
    }

    /// Parses and validates a schedule's text.
    pub fn parse(text: &str, options: &ParseOptions) -> Result<Schedule, ScheduleError> {
        let fail = |diagnostic: Diagnostic| ScheduleError {
            diagnostics: vec![diagnostic],
        };
        let expansion =
            source::expand(text, &options.file_name, options.base_dir.as_deref()).map_err(fail)?;
        let tokens = lexer::tokenize(&expansion).map_err(fail)?;
        check_scenario_prefixes(&tokens, &expansion).map_err(fail)?;
        let tokens = drop_top_scenario_prefixes(tokens);
        let depth = check_nesting(&tokens, &expansion).map_err(fail)?;
        let file = parse_tokens(&tokens, &expansion, depth).map_err(fail)?;
        build::build(&file, &tokens, &expansion)
            .map_err(|diagnostics| ScheduleError { diagnostics })
    }
}

/// Removes the `SCENARIO:` prefixes that name the top scenario from the properties after the
/// project block, so that the attributes after them are read like unprefixed ones. Availability
/// follows TaskJuggler's top scenario: the first `scenario` of the project block, else `plan`.
/// Prefixes of other scenarios stay, and the grammar skips their attributes.
fn drop_top_scenario_prefixes(tokens: Vec<Token>) -> Vec<Token> {
    let (top, body_start) = top_scenario(&tokens);
    let top = top.unwrap_or_else(|| "plan".to_owned());
    tokens
        .into_iter()
        .enumerate()
        .filter(|(index, token)| {
            *index < body_start
                || !matches!(&token.kind, lexer::Kind::IdWithColon(name) if *name == top)
        })
        .map(|(_, token)| token)
        .collect()
}

/// Rejects a scenario prefix (`alt:vacation ...`) after the project block that names no scenario
/// of the project, as TaskJuggler does. The attributes of other scenarios are skipped, so a typo
/// such as `paln:` would otherwise drop its attribute without a word.
fn check_scenario_prefixes(tokens: &[Token], expansion: &Expansion) -> Result<(), Diagnostic> {
    let (_, body_start) = top_scenario(tokens);
    let mut declared: Vec<&str> = tokens[..body_start.min(tokens.len())]
        .windows(2)
        .filter_map(|pair| match (&pair[0].kind, &pair[1].kind) {
            (lexer::Kind::Id(keyword), lexer::Kind::Id(id)) if keyword == "scenario" => {
                Some(id.as_str())
            }
            _ => None,
        })
        .collect();
    if declared.is_empty() {
        declared.push("plan");
    }
    for token in tokens.iter().skip(body_start) {
        if let lexer::Kind::IdWithColon(name) = &token.kind
            && !declared.contains(&name.as_str())
        {
            return Err(Diagnostic::error(
                expansion.location(token.pos),
                format!(
                    "unknown scenario `{name}`: the project's scenarios are {}; fix the prefix `{name}:` or declare the scenario in the project block",
                    declared
                        .iter()
                        .map(|id| format!("`{id}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Returns the id of the first `scenario` declared inside the project block, and the index of
/// the first token after that block (0 when there is no `project`).
fn top_scenario(tokens: &[Token]) -> (Option<String>, usize) {
    let is_id = |token: &Token, word: &str| matches!(&token.kind, lexer::Kind::Id(s) if s == word);
    let Some(project) = tokens.iter().position(|token| is_id(token, "project")) else {
        return (None, 0);
    };
    let mut top = None;
    let mut depth = 0usize;
    for (index, token) in tokens.iter().enumerate().skip(project + 1) {
        // Before its block, the header contains at most the optional id and a duration's unit.
        // Any other name starts the properties, so the project has no block.
        let after_number = matches!(
            tokens[index - 1].kind,
            lexer::Kind::Integer(_) | lexer::Kind::Float(_)
        );
        let header_name = index == project + 1 || after_number;
        if depth == 0 && matches!(token.kind, lexer::Kind::Id(_)) && !header_name {
            return (None, index);
        }
        match token.kind {
            lexer::Kind::Punct("{") => depth += 1,
            lexer::Kind::Punct("}") => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return (top, index + 1);
                }
            }
            _ if depth > 0 && top.is_none() && is_id(token, "scenario") => {
                if let Some(lexer::Kind::Id(id)) = tokens.get(index + 1).map(|t| &t.kind) {
                    top = Some(id.clone());
                }
            }
            _ => {}
        }
    }
    (top, project + 1)
}

/// The stack of the thread that runs the grammar: the recursive descent takes up to about 50 KiB
/// per nesting level in a debug build, more than a default thread's 2 MiB allow at
/// [`MAX_NESTING`].
const GRAMMAR_STACK: usize = 32 * 1024 * 1024;

/// The nesting the grammar handles on the caller's stack; deeper files get a thread with
/// [`GRAMMAR_STACK`], which costs more than parsing a small file.
const NESTING_ON_CALLER_STACK: usize = 8;

fn parse_tokens(
    tokens: &[Token],
    expansion: &Expansion,
    depth: usize,
) -> Result<FileAst, Diagnostic> {
    let run = || {
        let references: Vec<&Token> = tokens.iter().collect();
        grammar::parse_file(&references).map_err(|errors| syntax_error(errors, tokens, expansion))
    };
    if depth <= NESTING_ON_CALLER_STACK {
        return run();
    }
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("tjp-grammar".into())
            .stack_size(GRAMMAR_STACK);
        match thread.spawn_scoped(scope, run) {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            // Without a thread of its own, the grammar runs on the caller's stack.
            Err(_) => run(),
        }
    })
}

/// The deepest nesting of `{` blocks the grammar accepts, which bounds the stack the recursive
/// descent needs.
const MAX_NESTING: usize = 64;

/// Returns the deepest nesting of `{` blocks, or an error beyond [`MAX_NESTING`].
fn check_nesting(tokens: &[Token], expansion: &Expansion) -> Result<usize, Diagnostic> {
    let mut depth = 0usize;
    let mut deepest = 0;
    for token in tokens {
        match token.kind {
            lexer::Kind::Punct("{") => {
                depth += 1;
                deepest = deepest.max(depth);
                if depth > MAX_NESTING {
                    return Err(Diagnostic::error(
                        expansion.location(token.pos),
                        format!(
                            "blocks are nested more than {MAX_NESTING} levels deep: flatten the schedule"
                        ),
                    ));
                }
            }
            lexer::Kind::Punct("}") => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(deepest)
}

/// Turns `combine`'s error into `found X, expected Y`.
fn syntax_error(
    errors: grammar::Errors<'_>,
    tokens: &[Token],
    expansion: &Expansion,
) -> Diagnostic {
    let found = tokens.get(errors.position);
    let location = match (found, tokens.last()) {
        (Some(token), _) | (None, Some(token)) => expansion.location(token.pos),
        (None, None) => Location {
            file: expansion.files[0].clone(),
            line: 1,
            column: 1,
        },
    };
    let mut expected: Vec<String> = Vec::new();
    let mut messages: Vec<String> = Vec::new();
    for error in errors.errors {
        match error {
            easy::Error::Expected(info) => {
                let text = info_text(info);
                if !expected.contains(&text) {
                    expected.push(text);
                }
            }
            easy::Error::Message(info) => messages.push(info_text(info)),
            easy::Error::Other(error) => messages.push(error.to_string()),
            easy::Error::Unexpected(_) => {}
        }
    }
    let found = found.map_or_else(|| "end of file".to_string(), Token::describe);
    let message = if let Some(message) = messages.first() {
        message.clone()
    } else if expected.is_empty() {
        format!("unexpected {found}")
    } else {
        let list = match expected.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        format!("found {found}, expected {list}")
    };
    // At the end of the file, a block that is still open is the likely cause.
    let message = match unclosed_block(tokens) {
        Some(open) if errors.position >= tokens.len() => format!(
            "{message}: the block opened at {} is not closed; add a `}}`",
            expansion.location(open.pos)
        ),
        _ => message,
    };
    Diagnostic::error(location, message)
}

/// The innermost `{` that no `}` closes.
fn unclosed_block(tokens: &[Token]) -> Option<&Token> {
    let mut open = Vec::new();
    for token in tokens {
        match token.kind {
            lexer::Kind::Punct("{") => open.push(token),
            lexer::Kind::Punct("}") => {
                open.pop();
            }
            _ => {}
        }
    }
    open.pop()
}

fn info_text(info: easy::Info<&Token, &[&Token]>) -> String {
    let text = match info {
        easy::Info::Token(token) => return token.describe(),
        easy::Info::Range(range) => {
            return range.first().map_or_else(String::new, |t| t.describe());
        }
        easy::Info::Owned(text) => text,
        easy::Info::Static(text) => text.to_string(),
    };
    // Bare keywords and punctuation are quoted; descriptions are kept as written.
    if text.contains(' ') {
        text
    } else {
        format!("`{text}`")
    }
}
