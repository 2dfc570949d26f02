//! The pre-pass: comments, `macro` definitions, `${...}` calls, `$(ENV)` variables and
//! `include` statements, expanded before the lexer runs. Every character of the expanded text
//! keeps the place it came from, so that errors point at the original file, line and column.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::lexer::scan_cut_string;
use super::{Diagnostic, Location};

/// A place in one of the source files: an index into [`Expansion::files`], a line and a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub file: u32,
    pub line: u32,
    pub column: u32,
}

/// Marks the start of an included file with a `resourceprefix`: the prefix follows, up to
/// [`PREFIX_END_OF_NAME`].
pub(crate) const PREFIX_START: char = '\u{E000}';
/// Ends the prefix name after [`PREFIX_START`].
pub(crate) const PREFIX_END_OF_NAME: char = '\u{E001}';
/// Marks the end of an included file with a `resourceprefix`.
pub(crate) const PREFIX_END: char = '\u{E002}';
/// Encloses the name of a built-in macro (`projectstart`, `projectend`, `now`, `today`), which
/// the grammar resolves once the project header is known.
pub(crate) const BUILTIN: char = '\u{E003}';

const BUILTIN_MACROS: [&str; 4] = ["projectstart", "projectend", "now", "today"];
const MAX_MACRO_DEPTH: usize = 64;
const MAX_INCLUDE_DEPTH: usize = 32;
/// About 64 MiB of expanded text with its positions.
const MAX_EXPANDED_CHARS: usize = 4 * 1024 * 1024;
/// The largest schedule file read, in bytes. A UTF-8 character takes at most 4 bytes, so a larger
/// file has more characters than an expanded schedule may hold.
const MAX_FILE_BYTES: usize = 4 * MAX_EXPANDED_CHARS;

/// The reason a schedule file could not be read as text.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The file could not be opened or read.
    Io(std::io::Error),
    /// The file is larger than [`MAX_FILE_BYTES`], or endless, such as `/dev/zero`.
    TooLarge,
    /// The file is not UTF-8. The location is that of the first invalid byte.
    InvalidUtf8 {
        /// The line of the first invalid byte, counted from 1.
        line: u32,
        /// The column of the first invalid byte in characters, counted from 1.
        column: u32,
    },
}

impl ReadError {
    /// Returns the diagnostic of the error for the file `file`: at the first invalid byte for
    /// text that is not UTF-8, else at `location` with the message `prefix: reason`.
    pub(crate) fn diagnostic(self, file: &Path, location: Location, prefix: &str) -> Diagnostic {
        match self {
            ReadError::InvalidUtf8 { line, column } => {
                let at = Location {
                    file: file.to_path_buf(),
                    line,
                    column,
                };
                Diagnostic::error(at, INVALID_UTF8)
            }
            other => Diagnostic::error(location, format!("{prefix}: {other}")),
        }
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(error) => write!(f, "{error}"),
            ReadError::TooLarge => write!(
                f,
                "the file is larger than {} MiB, more than a schedule may hold",
                MAX_FILE_BYTES / (1024 * 1024)
            ),
            ReadError::InvalidUtf8 { line, column } => {
                write!(f, "line {line}, column {column}: {INVALID_UTF8}")
            }
        }
    }
}

const INVALID_UTF8: &str = "invalid UTF-8: a schedule must be UTF-8 text; convert the file, \
                            for example with `iconv -f LATIN1 -t UTF-8`";

/// Reads a schedule file as UTF-8 text, reading at most [`MAX_FILE_BYTES`] bytes so that an
/// endless file cannot exhaust memory.
pub(crate) fn read_file(path: &Path) -> Result<String, ReadError> {
    use std::io::Read;

    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_FILE_BYTES).unwrap_or(u64::MAX);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge);
    }

    String::from_utf8(bytes).map_err(|error| {
        let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
        // The prefix before the first invalid byte is valid UTF-8.
        let valid = std::str::from_utf8(valid).unwrap_or_default();
        let line_start = valid.rfind('\n').map_or(0, |newline| newline + 1);
        let line = valid.matches('\n').count() + 1;
        let column = valid[line_start..].chars().count() + 1;
        ReadError::InvalidUtf8 {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    })
}

#[derive(Debug, Clone)]
struct Macro {
    body: Vec<(char, Pos)>,
}

/// The expanded text of a schedule, with the origin of every character.
#[derive(Debug, Default)]
pub(crate) struct Expansion {
    pub chars: Vec<char>,
    pub positions: Vec<Pos>,
    /// The file names, indexed by [`Pos::file`].
    pub files: Vec<PathBuf>,
    /// The include site of each file of `files`: `None` for the schedule's own file.
    pub include_sites: Vec<Option<Pos>>,
    pub warnings: Vec<Diagnostic>,
}

impl Expansion {
    pub fn location(&self, pos: Pos) -> Location {
        Location {
            file: self
                .files
                .get(pos.file as usize)
                .cloned()
                .unwrap_or_default(),
            line: pos.line,
            column: pos.column,
        }
    }

    /// Returns the places where the file named as in `location` is included, in text order.
    pub fn include_sites_of(&self, location: &Location) -> Vec<Location> {
        self.files
            .iter()
            .zip(&self.include_sites)
            .filter(|(file, _)| **file == location.file)
            .filter_map(|(_, site)| site.map(|pos| self.location(pos)))
            .collect()
    }
}

struct Preprocessor<'o> {
    base_dir: Option<&'o Path>,
    out: Expansion,
    macros: HashMap<String, Macro>,
    include_stack: Vec<PathBuf>,
    depth: usize,
    /// Whether the `project` keyword of the header has been read.
    header_seen: bool,
}

/// Expands `text`, the content of `file_name`; `base_dir` resolves `include` paths, and `None`
/// rejects them.
pub(crate) fn expand(
    text: &str,
    file_name: &Path,
    base_dir: Option<&Path>,
) -> Result<Expansion, Diagnostic> {
    let mut pre = Preprocessor {
        base_dir,
        out: Expansion::default(),
        macros: HashMap::new(),
        include_stack: Vec::new(),
        depth: 0,
        header_seen: false,
    };
    pre.out.files.push(file_name.to_path_buf());
    pre.out.include_sites.push(None);
    let input = positioned(text, 0);
    pre.expand(&input, base_dir.map(Path::to_path_buf).as_deref())?;
    Ok(pre.out)
}

/// Pairs each character of `text` with its line and column.
fn positioned(text: &str, file: u32) -> Vec<(char, Pos)> {
    let mut line = 1;
    let mut column = 1;
    let mut result = Vec::with_capacity(text.len());
    // Editors on Windows often save UTF-8 with a byte order mark, which is not part of the text.
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    for c in text.chars() {
        // The marker characters are reserved for the pre-pass.
        let c = if ('\u{E000}'..='\u{E003}').contains(&c) {
            '\u{FFFD}'
        } else {
            c
        };
        result.push((c, Pos { file, line, column }));
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    result
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl Preprocessor<'_> {
    fn error(&self, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(self.out.location(pos), message)
    }

    fn push(&mut self, c: char, pos: Pos) -> Result<(), Diagnostic> {
        if self.out.chars.len() >= MAX_EXPANDED_CHARS {
            return Err(self.error(pos, "the schedule has more than 4 Mi characters with its includes and macros expanded, more than this parser reads: check the macros for runaway expansion, or shorten the schedule"));
        }
        self.out.chars.push(c);
        self.out.positions.push(pos);
        Ok(())
    }

    fn push_str(&mut self, text: &str, pos: Pos) -> Result<(), Diagnostic> {
        for c in text.chars() {
            self.push(c, pos)?;
        }
        Ok(())
    }

    /// Expands `input` into the output; `dir` is the folder of the file the text comes from.
    fn expand(&mut self, input: &[(char, Pos)], dir: Option<&Path>) -> Result<(), Diagnostic> {
        let mut i = 0;
        while i < input.len() {
            let (c, pos) = input[i];
            let next = input.get(i + 1).map(|&(c, _)| c);
            let at_word_start = i == 0 || !is_word(input[i - 1].0);
            match c {
                '#' => {
                    i = skip_line(input, i);
                    self.push(' ', pos)?;
                }
                '/' if next == Some('/') => {
                    i = skip_line(input, i);
                    self.push(' ', pos)?;
                }
                '/' if next == Some('*') => {
                    let mut j = i + 2;
                    loop {
                        if j + 1 >= input.len() {
                            return Err(
                                self.error(pos, "unterminated comment: close `/*` with `*/`")
                            );
                        }
                        if input[j].0 == '*' && input[j + 1].0 == '/' {
                            break;
                        }
                        j += 1;
                    }
                    i = j + 2;
                    self.push(' ', pos)?;
                }
                '"' | '\'' => {
                    i = self.expand_string(input, i)?;
                }
                '-' if next == Some('8')
                    && input.get(i + 2).map(|x| x.0) == Some('<')
                    && input.get(i + 3).map(|x| x.0) == Some('-') =>
                {
                    i = self.expand_cut_string(input, i)?;
                }
                '$' if next == Some('$') && input.get(i + 2).map(|x| x.0) == Some('{') => {
                    // `$${` escapes a macro call.
                    self.push('$', pos)?;
                    self.push('{', pos)?;
                    i += 3;
                }
                '$' if next == Some('{') => {
                    i = self.expand_call(input, i)?;
                }
                '$' if next == Some('(') => {
                    i = self.expand_environment(input, i)?;
                }
                c if at_word_start && (c.is_ascii_alphabetic() || c == '_') => {
                    let end = word_end(input, i);
                    let word: String = input[i..end].iter().map(|x| x.0).collect();
                    let followed_by_colon = input.get(end).map(|x| x.0) == Some(':');
                    if word == "project" && !followed_by_colon {
                        self.header_seen = true;
                    }
                    if word == "macro" && !followed_by_colon {
                        i = self.define_macro(input, i, end)?;
                    } else if word == "include" && !followed_by_colon {
                        i = self.include(input, i, end, dir)?;
                    } else {
                        for &(c, p) in &input[i..end] {
                            self.push(c, p)?;
                        }
                        i = end;
                    }
                }
                _ => {
                    self.push(c, pos)?;
                    i += 1;
                }
            }
        }
        Ok(())
    }

    /// Copies a quoted string, expanding macro calls inside it; returns the index after it.
    fn expand_string(&mut self, input: &[(char, Pos)], start: usize) -> Result<usize, Diagnostic> {
        let (quote, pos) = input[start];
        self.push(quote, pos)?;
        let mut i = start + 1;
        while i < input.len() {
            let (c, p) = input[i];
            match c {
                '\\' if i + 1 < input.len() => {
                    self.push(c, p)?;
                    self.push(input[i + 1].0, input[i + 1].1)?;
                    i += 2;
                }
                '$' if input.get(i + 1).map(|x| x.0) == Some('{') => {
                    i = self.expand_call(input, i)?;
                }
                c if c == quote => {
                    self.push(c, p)?;
                    return Ok(i + 1);
                }
                _ => {
                    self.push(c, p)?;
                    i += 1;
                }
            }
        }
        Err(self.error(pos, format!("unterminated string: close it with {quote}")))
    }

    /// Copies a cut string `-8<-` ... `->8-`, expanding macro calls inside it as TaskJuggler
    /// does; comments, quotes and keywords in it are text. Returns the index after it.
    fn expand_cut_string(
        &mut self,
        input: &[(char, Pos)],
        start: usize,
    ) -> Result<usize, Diagnostic> {
        let at = |k: usize| input.get(k).map(|x| x.0);
        let (end, _) = scan_cut_string(at, start)
            .map_err(|error| self.error(input[start].1, error.message()))?;
        let mut i = start;
        while i < end {
            let (c, pos) = input[i];
            if c == '$' && at(i + 1) == Some('{') {
                i = self.expand_call(input, i)?;
            } else {
                self.push(c, pos)?;
                i += 1;
            }
        }
        Ok(i)
    }

    /// Before the project header, an included file may only define macros: TaskJuggler reads
    /// properties only after the header. Checks the text expanded from `mark` on.
    fn check_prolog_include(&self, mark: usize, pos: Pos, name: &str) -> Result<(), Diagnostic> {
        let content = (mark..self.out.chars.len()).find(|&k| {
            let c = self.out.chars[k];
            !c.is_whitespace() && !(PREFIX_START..=BUILTIN).contains(&c)
        });
        match content {
            None => Ok(()),
            Some(k) => {
                let found = self.out.location(self.out.positions[k]);
                Err(self.error(
                    pos,
                    format!("\"{name}\" is included before the project header but contains more than macro definitions (at {found}): move the include after the project header"),
                ))
            }
        }
    }

    /// Expands `${NAME "arg" ...}` or `${?NAME}` starting at `start`; returns the index after it.
    fn expand_call(&mut self, input: &[(char, Pos)], start: usize) -> Result<usize, Diagnostic> {
        let call_pos = input[start].1;
        let mut i = start + 2;
        let optional = input.get(i).map(|x| x.0) == Some('?');
        if optional {
            i += 1;
        }
        i = skip_blanks(input, i);
        let name_end = word_end(input, i);
        if name_end == i {
            return Err(self.error(
                call_pos,
                "invalid macro call: expected a macro name after `${`, as in `${name}`",
            ));
        }
        let name: String = input[i..name_end].iter().map(|x| x.0).collect();
        i = name_end;
        let mut arguments: Vec<String> = Vec::new();
        loop {
            i = skip_blanks(input, i);
            match input.get(i).map(|x| x.0) {
                Some('}') => {
                    i += 1;
                    break;
                }
                Some(quote @ ('"' | '\'')) => {
                    // An argument is a string whose macro calls are expanded first.
                    let mark = self.out.chars.len();
                    i = self.expand_string(input, i)?;
                    let expanded: String = self.out.chars[mark..].iter().collect();
                    self.out.chars.truncate(mark);
                    self.out.positions.truncate(mark);
                    let inner = &expanded[quote.len_utf8()..expanded.len() - quote.len_utf8()];
                    arguments.push(inner.to_string());
                }
                None => {
                    return Err(self.error(
                        call_pos,
                        format!("unterminated call of macro `{name}`: close it with `}}`"),
                    ));
                }
                Some(_) => {
                    // TaskJuggler reads only quoted strings as macro arguments.
                    let argument_end = (i..input.len())
                        .find(|&k| input[k].0.is_whitespace() || input[k].0 == '}')
                        .unwrap_or(input.len());
                    let argument: String = input[i..argument_end].iter().map(|x| x.0).collect();
                    return Err(self.error(
                        input[i].1,
                        format!(
                            "invalid argument `{argument}` in the call of macro `{name}`: \
                             arguments are quoted strings, so write \"{argument}\""
                        ),
                    ));
                }
            }
        }

        if name.chars().all(|c| c.is_ascii_digit()) {
            return Err(self.error(
                call_pos,
                format!("`${{{name}}}` refers to a macro argument outside a macro body"),
            ));
        }
        let Some(definition) = self.macros.get(&name).cloned() else {
            if optional {
                return Ok(i);
            }
            if BUILTIN_MACROS.contains(&name.as_str()) {
                self.push(BUILTIN, call_pos)?;
                self.push_str(&name, call_pos)?;
                self.push(BUILTIN, call_pos)?;
                return Ok(i);
            }
            return Err(self.error(
                call_pos,
                format!("undefined macro `{name}`: define it with `macro {name} [ ... ]` before its first use"),
            ));
        };
        if self.depth >= MAX_MACRO_DEPTH {
            return Err(self.error(
                call_pos,
                format!(
                    "macro `{name}` expands into itself more than {MAX_MACRO_DEPTH} levels deep"
                ),
            ));
        }

        // Substitute `${0}` (the name) and `${1}`, `${2}`, ... (the arguments), then expand the
        // result; the expanded text points at the call.
        let body: Vec<char> = definition.body.iter().map(|x| x.0).collect();
        let mut substituted: Vec<(char, Pos)> = Vec::with_capacity(body.len());
        let mut j = 0;
        while j < body.len() {
            if body[j] == '$' && body.get(j + 1) == Some(&'{') {
                let digits_end = (j + 2..body.len())
                    .find(|&k| !body[k].is_ascii_digit())
                    .unwrap_or(body.len());
                if digits_end > j + 2 && body.get(digits_end) == Some(&'}') {
                    let index: usize = body[j + 2..digits_end]
                        .iter()
                        .collect::<String>()
                        .parse()
                        .unwrap_or(usize::MAX);
                    let value = match index {
                        0 => Some(name.as_str()),
                        n => arguments.get(n - 1).map(String::as_str),
                    };
                    let Some(value) = value else {
                        return Err(self.error(
                            call_pos,
                            format!(
                                "macro `{name}` uses argument {index} but the call passes {}",
                                arguments.len()
                            ),
                        ));
                    };
                    substituted.extend(value.chars().map(|c| (c, call_pos)));
                    j = digits_end + 1;
                    continue;
                }
            }
            substituted.push((body[j], call_pos));
            j += 1;
        }
        self.depth += 1;
        let result = self.expand(&substituted, None);
        self.depth -= 1;
        result?;
        Ok(i)
    }

    /// Expands `$(NAME)` with the environment variable NAME.
    fn expand_environment(
        &mut self,
        input: &[(char, Pos)],
        start: usize,
    ) -> Result<usize, Diagnostic> {
        let pos = input[start].1;
        let name_end = word_end(input, start + 2);
        let name: String = input[start + 2..name_end].iter().map(|x| x.0).collect();
        if input.get(name_end).map(|x| x.0) != Some(')') || name.is_empty() {
            // Not a variable reference: keep the text as it is.
            self.push('$', pos)?;
            return Ok(start + 1);
        }
        match std::env::var(&name) {
            Ok(value) => {
                self.push_str(&value, pos)?;
                Ok(name_end + 1)
            }
            Err(_) => Err(self.error(
                pos,
                format!("environment variable `{name}` is not set: set it or remove `$({name})`"),
            )),
        }
    }

    /// Reads `macro NAME [ body ]`; the body ends at the first `]` that is the last character
    /// of its line.
    fn define_macro(
        &mut self,
        input: &[(char, Pos)],
        start: usize,
        keyword_end: usize,
    ) -> Result<usize, Diagnostic> {
        let pos = input[start].1;
        let mut i = skip_blanks(input, keyword_end);
        let name_end = word_end(input, i);
        if name_end == i {
            return Err(self.error(pos, "invalid macro definition: expected a name after `macro`, as in `macro name [ body ]`"));
        }
        let name: String = input[i..name_end].iter().map(|x| x.0).collect();
        i = skip_blanks(input, name_end);
        if input.get(i).map(|x| x.0) != Some('[') {
            let at = input.get(i).map_or(pos, |x| x.1);
            return Err(self.error(
                at,
                format!("invalid definition of macro `{name}`: expected `[` to open its body"),
            ));
        }
        let body_start = i + 1;
        let mut j = body_start;
        let body_end = loop {
            if j >= input.len() {
                return Err(self.error(
                    input[i].1,
                    format!("unterminated body of macro `{name}`: end it with `]` as the last character of a line"),
                ));
            }
            if input[j].0 == ']' {
                let after = skip_spaces(input, j + 1);
                if after >= input.len() || matches!(input[after].0, '\n' | '\r') {
                    break j;
                }
            }
            j += 1;
        };
        if self.macros.contains_key(&name) {
            self.out.warnings.push(Diagnostic::warning(
                self.out.location(pos),
                format!("macro `{name}` is defined again: the new body replaces the old one"),
            ));
        }
        self.macros.insert(
            name,
            Macro {
                body: input[body_start..body_end].to_vec(),
            },
        );
        self.push(' ', pos)?;
        Ok(body_end + 1)
    }

    /// Reads `include "FILE" [{ resourceprefix ID ... }]` and expands the file in place.
    fn include(
        &mut self,
        input: &[(char, Pos)],
        start: usize,
        keyword_end: usize,
        dir: Option<&Path>,
    ) -> Result<usize, Diagnostic> {
        let pos = input[start].1;
        let mut i = skip_whitespace(input, keyword_end);
        let Some(&(quote @ ('"' | '\''), name_pos)) = input.get(i) else {
            return Err(self.error(
                pos,
                "invalid include: expected a file name in quotes, as in `include \"holidays.tji\"`",
            ));
        };
        let name_start = i + 1;
        let Some(name_end) = (name_start..input.len()).find(|&k| input[k].0 == quote) else {
            return Err(self.error(
                name_pos,
                format!("unterminated string: close it with {quote}"),
            ));
        };
        let name: String = input[name_start..name_end].iter().map(|x| x.0).collect();
        i = name_end + 1;
        if !name.ends_with(".tji") {
            return Err(self.error(
                name_pos,
                format!("cannot include \"{name}\": included files must have the extension .tji, as TaskJuggler requires; rename the file"),
            ));
        }

        // The optional block of prefixes.
        let mut prefix = None;
        let after = skip_whitespace(input, i);
        if input.get(after).map(|x| x.0) == Some('{') {
            let Some(close) = (after..input.len()).find(|&k| input[k].0 == '}') else {
                return Err(self.error(
                    input[after].1,
                    "unterminated include block: close it with `}`",
                ));
            };
            let block: String = input[after + 1..close].iter().map(|x| x.0).collect();
            let mut words = block.split_whitespace();
            while let Some(word) = words.next() {
                if word == "resourceprefix" {
                    prefix = words.next().map(str::to_string);
                }
            }
            i = close + 1;
        }

        let Some(dir) = dir.or(self.base_dir) else {
            return Err(self.error(pos, format!("cannot include \"{name}\": this schedule has no folder to include files from; paste the file's content instead")));
        };
        let path = dir.join(&name);
        let canonical = path.canonicalize().map_err(|error| {
            self.error(
                name_pos,
                format!("cannot include \"{}\": {error}", path.display()),
            )
        })?;
        // Opening a named pipe would wait for a writer, and a device may never end.
        if !canonical.is_file() {
            return Err(self.error(
                name_pos,
                format!("cannot include \"{}\": it is not a regular file, such as a directory, a named pipe or a device; include a .tji file", path.display()),
            ));
        }
        if self.include_stack.contains(&canonical) {
            return Err(self.error(
                name_pos,
                format!("cyclic include: \"{}\" includes itself", path.display()),
            ));
        }
        if self.include_stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(self.error(
                name_pos,
                format!("includes are nested more than {MAX_INCLUDE_DEPTH} levels deep"),
            ));
        }
        let text = read_file(&path).map_err(|error| {
            let prefix = format!("cannot read included file \"{}\"", path.display());
            error.diagnostic(&path, self.out.location(name_pos), &prefix)
        })?;
        let file = u32::try_from(self.out.files.len()).unwrap_or(u32::MAX);
        self.out.files.push(path.clone());
        self.out.include_sites.push(Some(name_pos));
        let content = positioned(&text, file);

        if let Some(prefix) = &prefix {
            self.push(PREFIX_START, pos)?;
            self.push_str(prefix, pos)?;
            self.push(PREFIX_END_OF_NAME, pos)?;
        }
        self.push('\n', pos)?;
        let before_header = !self.header_seen;
        let mark = self.out.chars.len();
        self.include_stack.push(canonical);
        let result = self.expand(&content, path.parent());
        self.include_stack.pop();
        result?;
        if before_header {
            self.check_prolog_include(mark, pos, &name)?;
        }
        self.push('\n', pos)?;
        if prefix.is_some() {
            self.push(PREFIX_END, pos)?;
        }
        Ok(i)
    }
}

fn skip_line(input: &[(char, Pos)], mut i: usize) -> usize {
    while i < input.len() && input[i].0 != '\n' {
        i += 1;
    }
    i
}

fn word_end(input: &[(char, Pos)], mut i: usize) -> usize {
    while i < input.len() && is_word(input[i].0) {
        i += 1;
    }
    i
}

fn skip_spaces(input: &[(char, Pos)], mut i: usize) -> usize {
    while i < input.len() && matches!(input[i].0, ' ' | '\t') {
        i += 1;
    }
    i
}

fn skip_blanks(input: &[(char, Pos)], mut i: usize) -> usize {
    while i < input.len() && input[i].0.is_whitespace() {
        i += 1;
    }
    i
}

/// Skips whitespace and comments.
fn skip_whitespace(input: &[(char, Pos)], mut i: usize) -> usize {
    loop {
        i = skip_blanks(input, i);
        match input.get(i).map(|x| x.0) {
            Some('#') => i = skip_line(input, i),
            Some('/') if input.get(i + 1).map(|x| x.0) == Some('/') => i = skip_line(input, i),
            _ => return i,
        }
    }
}
