//! The lexer: TaskJuggler's tokens, each with the place it starts.
//!
//! Like TaskJuggler's scanner, it tries the token patterns in a fixed order and the first that
//! matches wins, so `mon-fri` is `mon`, `-`, `fri` and `2025-12-24-12:00` is one date.

use super::Diagnostic;
use super::source::{BUILTIN, Expansion, PREFIX_END, PREFIX_END_OF_NAME, PREFIX_START, Pos};

/// The kind of a token, with its text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// A name or keyword: `[a-zA-Z_]\w*`.
    Id(String),
    /// A scenario-prefixed name, `plan:`, without the colon.
    IdWithColon(String),
    /// A dotted name, `team.foo`.
    AbsoluteId(String),
    /// `YYYY-MM-DD[-HH:MM[:SS]][-±HHMM]`, as written.
    Date(String),
    /// `H:MM` or `HH:MM`, as written.
    Time(String),
    /// Digits, as written.
    Integer(String),
    /// `\d*\.\d+`, as written.
    Float(String),
    /// A quoted string, without its quotes and with escapes resolved.
    Str(String),
    /// A built-in macro (`${projectstart}`...), by name.
    Builtin(String),
    /// One punctuation character or operator.
    Punct(&'static str),
    /// Any other character.
    Other(char),
    /// Start of an included file with a `resourceprefix`.
    PrefixStart(String),
    /// End of an included file with a `resourceprefix`.
    PrefixEnd,
}

/// A token and where it starts; `end_line` is the line of its last character.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub kind: Kind,
    pub pos: Pos,
    pub end_line: u32,
}

impl Token {
    /// Describes the token for messages: `` `word` ``, `"string"`, `end of file`.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Id(s) | Kind::Date(s) | Kind::Time(s) | Kind::Integer(s) | Kind::Float(s) => {
                format!("`{s}`")
            }
            Kind::IdWithColon(s) => format!("`{s}:`"),
            Kind::AbsoluteId(s) => format!("`{s}`"),
            Kind::Str(s) => format!("the string \"{s}\""),
            Kind::Builtin(s) => format!("`${{{s}}}`"),
            Kind::Punct(s) => format!("`{s}`"),
            Kind::Other(c) => format!("`{c}`"),
            Kind::PrefixStart(_) | Kind::PrefixEnd => "an included file".to_string(),
        }
    }
}

const PUNCTUATION: [&str; 16] = [
    "<=", ">=", "!=", "{", "}", "-", "+", ",", "(", ")", "[", "]", "!", "%", "=", ".",
];

/// Splits the expanded text into tokens.
pub(crate) fn tokenize(expansion: &Expansion) -> Result<Vec<Token>, Diagnostic> {
    let chars = &expansion.chars;
    let positions = &expansion.positions;
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = positions[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let kind = if c == PREFIX_START {
            let end = find(chars, i + 1, PREFIX_END_OF_NAME);
            let name: String = chars[i + 1..end].iter().collect();
            i = (end + 1).min(chars.len());
            Kind::PrefixStart(name)
        } else if c == PREFIX_END {
            i += 1;
            Kind::PrefixEnd
        } else if c == BUILTIN {
            let end = find(chars, i + 1, BUILTIN);
            let name: String = chars[i + 1..end].iter().collect();
            i = (end + 1).min(chars.len());
            Kind::Builtin(name)
        } else if c.is_ascii_alphabetic() || c == '_' {
            let end = word_end(chars, i);
            let word: String = chars[i..end].iter().collect();
            if chars.get(end) == Some(&':') {
                i = end + 1;
                Kind::IdWithColon(word)
            } else if chars.get(end) == Some(&'.')
                && chars
                    .get(end + 1)
                    .is_some_and(|c| c.is_ascii_alphabetic() || *c == '_')
            {
                let mut end = end;
                while chars.get(end) == Some(&'.')
                    && chars
                        .get(end + 1)
                        .is_some_and(|c| c.is_ascii_alphabetic() || *c == '_')
                {
                    end = word_end(chars, end + 1);
                }
                let word: String = chars[i..end].iter().collect();
                i = end;
                Kind::AbsoluteId(word)
            } else {
                i = end;
                Kind::Id(word)
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            if let Some(end) = match_date(chars, i) {
                let text: String = chars[i..end].iter().collect();
                i = end;
                Kind::Date(text)
            } else if let Some(end) = match_time(chars, i) {
                let text: String = chars[i..end].iter().collect();
                i = end;
                Kind::Time(text)
            } else {
                let digits = digits_end(chars, i);
                if chars.get(digits) == Some(&'.')
                    && chars.get(digits + 1).is_some_and(char::is_ascii_digit)
                {
                    let end = digits_end(chars, digits + 1);
                    let text: String = chars[i..end].iter().collect();
                    i = end;
                    Kind::Float(text)
                } else {
                    let text: String = chars[i..digits].iter().collect();
                    i = digits;
                    Kind::Integer(text)
                }
            }
        } else if c == '"' || c == '\'' {
            let mut value = String::new();
            let mut j = i + 1;
            loop {
                let Some(&d) = chars.get(j) else {
                    return Err(Diagnostic::error(
                        expansion.location(pos),
                        format!("unterminated string: close it with {c}"),
                    ));
                };
                if d == '\\' && matches!(chars.get(j + 1), Some('"') | Some('\'') | Some('\\')) {
                    value.push(chars[j + 1]);
                    j += 2;
                } else if d == c {
                    break;
                } else {
                    value.push(d);
                    j += 1;
                }
            }
            i = j + 1;
            Kind::Str(value)
        } else if let Some(punct) = PUNCTUATION.iter().find(|p| starts_with(chars, i, p)) {
            i += punct.len();
            Kind::Punct(punct)
        } else {
            i += 1;
            Kind::Other(c)
        };
        let end_line = positions[i.saturating_sub(1).max(start)].line;
        tokens.push(Token {
            kind,
            pos,
            end_line,
        });
    }
    Ok(tokens)
}

fn find(chars: &[char], from: usize, target: char) -> usize {
    (from..chars.len())
        .find(|&k| chars[k] == target)
        .unwrap_or(chars.len())
}

fn starts_with(chars: &[char], i: usize, text: &str) -> bool {
    text.chars()
        .enumerate()
        .all(|(k, c)| chars.get(i + k) == Some(&c))
}

fn word_end(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
        i += 1;
    }
    i
}

fn digits_end(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// Matches `k` to `m` digits at `i`; returns the end.
fn digits(chars: &[char], i: usize, min: usize, max: usize) -> Option<usize> {
    let mut end = i;
    while end < chars.len() && end - i < max && chars[end].is_ascii_digit() {
        end += 1;
    }
    (end - i >= min).then_some(end)
}

fn literal(chars: &[char], i: usize, c: char) -> Option<usize> {
    (chars.get(i) == Some(&c)).then_some(i + 1)
}

/// `\d{4}-\d{1,2}-\d{1,2}(-\d{1,2}:\d{1,2}(:\d{1,2})?(-[-+]?\d{4})?)?`
fn match_date(chars: &[char], i: usize) -> Option<usize> {
    let mut end = digits(chars, i, 4, 4)?;
    if chars.get(end).is_some_and(char::is_ascii_digit) {
        return None;
    }
    end = literal(chars, end, '-')?;
    end = digits(chars, end, 1, 2)?;
    end = literal(chars, end, '-')?;
    end = digits(chars, end, 1, 2)?;
    let time = (|| {
        let mut t = literal(chars, end, '-')?;
        t = digits(chars, t, 1, 2)?;
        t = literal(chars, t, ':')?;
        t = digits(chars, t, 1, 2)?;
        if let Some(s) = literal(chars, t, ':').and_then(|s| digits(chars, s, 1, 2)) {
            t = s;
        }
        let offset = (|| {
            let mut o = literal(chars, t, '-')?;
            if matches!(chars.get(o), Some('-') | Some('+')) {
                o += 1;
            }
            digits(chars, o, 4, 4)
        })();
        Some(offset.unwrap_or(t))
    })();
    Some(time.unwrap_or(end))
}

/// `\d{1,2}:\d{2}`
fn match_time(chars: &[char], i: usize) -> Option<usize> {
    let end = digits(chars, i, 1, 2)?;
    let end = literal(chars, end, ':')?;
    digits(chars, end, 2, 2)
}
