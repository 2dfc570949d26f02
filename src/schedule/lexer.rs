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

const PUNCTUATION: [&str; 17] = [
    "<=", ">=", "!=", "{", "}", "-", "+", ",", "(", ")", "[", "]", "!", "%", "=", ".", "~",
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
        } else if c.is_alphabetic() && !c.is_ascii()
            || (c.is_ascii_alphabetic() || c == '_')
                && chars
                    .get(word_end(chars, i))
                    .is_some_and(|d| d.is_alphanumeric() && !d.is_ascii())
        {
            return Err(Diagnostic::error(
                expansion.location(pos),
                non_ascii_id_message(chars, i),
            ));
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
                // ISO 8601's `T` would otherwise lex as a scenario prefix (`T10:`) and be
                // reported as an unknown scenario.
                if matches!(chars.get(end), Some('T' | 't'))
                    && chars.get(end + 1).is_some_and(char::is_ascii_digit)
                {
                    let time_end = match_time(chars, end + 1).unwrap_or(end + 1);
                    let written: String = chars[i..time_end].iter().collect();
                    let time: String = chars[end + 1..time_end].iter().collect();
                    return Err(Diagnostic::error(
                        expansion.location(pos),
                        format!(
                            "invalid date `{written}`: TaskJuggler writes the time after a dash, not a `T`, as in `{text}-{time}`"
                        ),
                    ));
                }
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
        } else if starts_with(chars, i, CUT_MARK) {
            let at = |k: usize| chars.get(k).copied();
            match scan_cut_string(at, i) {
                Ok((end, value)) => {
                    i = end;
                    Kind::Str(value)
                }
                Err(error) => {
                    return Err(Diagnostic::error(expansion.location(pos), error.message()));
                }
            }
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

/// Opens a cut string: `-8<-` at the end of a line.
pub(crate) const CUT_MARK: &str = "-8<-";
/// Closes a cut string: `->8-` at the start of a line, after optional indentation.
const CUT_END: &str = "->8-";

/// The reason a cut string could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CutError {
    /// Text follows `-8<-` on its line.
    JunkAfterMark,
    /// No line starts with `->8-`.
    Unterminated,
}

impl CutError {
    pub(crate) fn message(self) -> &'static str {
        match self {
            CutError::JunkAfterMark => {
                "text after the cut mark `-8<-`: end the line after `-8<-` and start the text on the next line"
            }
            CutError::Unterminated => {
                "unterminated cut string: end the text opened with `-8<-` with a line that starts with `->8-`"
            }
        }
    }
}

/// Reads the cut string whose `-8<-` mark starts at `start`, with `at(k)` the character at `k`.
/// Returns the index after its closing `->8-` and its text.
///
/// As in TaskJuggler, the mark must end its line; the string ends at the first line that starts
/// with `->8-` after optional whitespace; the indentation of the first line is removed from every
/// line, as far as a line starts with the same characters.
pub(crate) fn scan_cut_string(
    at: impl Fn(usize) -> Option<char>,
    start: usize,
) -> Result<(usize, String), CutError> {
    let matches =
        |k: usize, text: &str| text.chars().enumerate().all(|(n, c)| at(k + n) == Some(c));
    // The rest of the mark's line holds only spaces.
    let mut k = start + CUT_MARK.len();
    loop {
        match at(k) {
            Some('\n') => break,
            Some(c) if c.is_whitespace() => k += 1,
            Some(_) => return Err(CutError::JunkAfterMark),
            None => return Err(CutError::Unterminated),
        }
    }
    let mut line_start = k + 1;
    let mut indent: Option<Vec<char>> = None;
    let mut value = String::new();
    loop {
        // The end: whitespace, line breaks included, then `->8-`.
        let mut k = line_start;
        while at(k).is_some_and(char::is_whitespace) {
            k += 1;
        }
        if matches(k, CUT_END) {
            return Ok((k + CUT_END.len(), value));
        }
        let mut line = Vec::new();
        let mut k = line_start;
        loop {
            match at(k) {
                Some(c) => {
                    line.push(c);
                    k += 1;
                    if c == '\n' {
                        break;
                    }
                }
                None => return Err(CutError::Unterminated),
            }
        }
        let skip = match &indent {
            None => {
                let width = line
                    .iter()
                    .take_while(|c| c.is_whitespace() && **c != '\n')
                    .count();
                indent = Some(line[..width].to_vec());
                width
            }
            Some(indent) => indent.iter().zip(&line).take_while(|(a, b)| a == b).count(),
        };
        value.extend(&line[skip..]);
        line_start = k;
    }
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

/// Builds the error message for the id at `start`, which contains a letter outside ASCII that
/// TaskJuggler's ids (`[a-zA-Z_][a-zA-Z0-9_]*`) cannot contain.
fn non_ascii_id_message(chars: &[char], start: usize) -> String {
    let end = chars[start..]
        .iter()
        .position(|c| !(c.is_alphanumeric() || *c == '_'))
        .map_or(chars.len(), |length| start + length);
    let word: String = chars[start..end].iter().collect();
    format!(
        "invalid id `{word}`: ids may contain only ASCII letters, digits and `_`; keep other letters in the quoted name, as in `resource cafe \"Café\"`"
    )
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

#[cfg(test)]
mod tests {
    use super::{CutError, scan_cut_string};

    fn cut(text: &str) -> Result<(usize, String), CutError> {
        let chars: Vec<char> = text.chars().collect();
        scan_cut_string(|k| chars.get(k).copied(), 0)
    }

    #[test]
    fn cut_string_removes_the_first_line_indentation() {
        let text = "-8<-  \n    one\n      two\n  three\n    ->8- rest";
        let (end, value) = cut(text).unwrap();
        assert_eq!(value, "one\n  two\nthree\n");
        assert_eq!(&text[end..], " rest");
    }

    #[test]
    fn empty_cut_string() {
        assert_eq!(cut("-8<-\n->8-").unwrap(), (9, String::new()));
    }

    #[test]
    fn cut_string_errors() {
        assert_eq!(cut("-8<- text\n->8-"), Err(CutError::JunkAfterMark));
        assert_eq!(cut("-8<-\ntext\n"), Err(CutError::Unterminated));
        assert_eq!(cut("-8<-"), Err(CutError::Unterminated));
    }
}
