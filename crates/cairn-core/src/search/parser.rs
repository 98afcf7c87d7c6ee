//! Lexer and recursive-descent parser for MLflow's filter and order_by syntax.
//!
//! MLflow parses filters with `sqlparse` and then picks the pieces apart per entity
//! (`mlflow/utils/search_utils.py`). We cannot reuse that, so this is a small
//! hand-written grammar that accepts what MLflow accepts (with a few deliberate
//! extensions) and produces the typed tree in [`super::ast`]:
//!
//! ```text
//! filter     := or_expr EOF
//! or_expr    := and_expr ( OR and_expr )*          -- OR is a Cairn extension
//! and_expr   := primary ( AND primary )*
//! primary    := '(' or_expr ')' | comparison       -- parentheses are a Cairn extension
//! comparison := identifier op value
//!             | identifier IS [NOT] NULL
//!             | identifier [NOT] IN '(' string ( ',' string )* [','] ')'
//! op         := '=' | '!=' | '<' | '<=' | '>' | '>=' | LIKE | ILIKE
//! identifier := [ type '.' ] key                   -- no type means an attribute
//! order_by   := identifier [ ASC | DESC ]
//! ```
//!
//! Keywords are case-insensitive; entity types and attribute names are case-sensitive,
//! exactly like MLflow. Every error names the problem and a 0-based character
//! position, because filters arrive from users typing into a search box.
//!
//! The parser never panics: it works on a `Vec<char>` (so multibyte UTF-8 cannot
//! split), reads it only through `get`, and bounds both input length and
//! parenthesis nesting so hostile input cannot exhaust the stack.

use super::ast::*;
use crate::error::{CoreError, CoreResult};

/// Longest filter or order_by clause we accept, in characters. MLflow has no limit,
/// but a filter longer than this is certainly not typed by a person.
const MAX_INPUT_CHARS: usize = 100_000;
/// Deepest parenthesis nesting we accept; each level costs a few stack frames.
const MAX_DEPTH: usize = 100;
/// How much of the input error messages echo back.
const MAX_ECHO_CHARS: usize = 200;
/// How much of a single offending token error messages echo back.
const MAX_TOKEN_ECHO_CHARS: usize = 40;

/// Parses a filter string for `kind`. Empty or blank input means "no filter".
pub fn parse_filter(kind: SearchKind, input: &str) -> CoreResult<Option<Filter>> {
    if input.trim().is_empty() {
        return Ok(None);
    }
    parse_filter_inner(kind, input)
        .map(Some)
        .map_err(|e| e.into_core("filter", input))
}

/// Parses `order_by` clauses such as `metrics.loss DESC` for `kind`.
pub fn parse_order_by(kind: SearchKind, clauses: &[String]) -> CoreResult<Vec<OrderBy>> {
    clauses
        .iter()
        .map(|clause| {
            parse_order_by_inner(kind, clause).map_err(|e| e.into_core("order_by clause", clause))
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------

/// A parse error before it is dressed up with the input it came from.
#[derive(Debug)]
struct ParseError {
    /// 0-based character offset of the offending spot.
    pos: usize,
    /// What went wrong, phrased to be followed by "at position N".
    msg: String,
    /// Optional extra advice (valid keys, valid comparators, ...).
    hint: Option<String>,
}

type PResult<T> = Result<T, ParseError>;

impl ParseError {
    fn new(pos: usize, msg: impl Into<String>) -> Self {
        Self {
            pos,
            msg: msg.into(),
            hint: None,
        }
    }

    fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Formats the final message: "Invalid filter '<input>': <msg> at position N. <hint>".
    fn into_core(self, what: &str, input: &str) -> CoreError {
        let mut msg = format!(
            "Invalid {what} '{}': {} at position {}",
            truncate(input, MAX_ECHO_CHARS),
            self.msg,
            self.pos
        );
        if let Some(hint) = self.hint {
            msg.push_str(". ");
            msg.push_str(&hint);
        }
        CoreError::invalid(msg)
    }
}

/// Shortens `s` to at most `max` characters (never splitting a char), marking the cut.
fn truncate(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().nth(max).is_some() {
        out.push_str("...");
    }
    out
}

/// Rejects over-long input before we allocate per-character buffers for it.
fn check_length(input: &str) -> PResult<Vec<char>> {
    let chars: Vec<char> = input.chars().take(MAX_INPUT_CHARS + 1).collect();
    if chars.len() > MAX_INPUT_CHARS {
        return Err(ParseError::new(
            MAX_INPUT_CHARS,
            format!("input is longer than the limit of {MAX_INPUT_CHARS} characters"),
        ));
    }
    Ok(chars)
}

// ---------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------

/// One dot-separated piece of a name: `metrics`, `` `a.b` ``, `'x'`.
#[derive(Debug, Clone, PartialEq)]
struct Part {
    /// The text, with quotes removed and escapes resolved.
    text: String,
    /// The quote character used, or `None` for a bare word.
    quote: Option<char>,
    /// Position of the part's first character (its opening quote if quoted).
    pos: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Comma,
    /// A symbolic comparator (`=`, `!=`, `<`, `<=`, `>`, `>=`).
    Sym(CompareOp),
    /// A comparator MLflow's tokenizer knows but its search never accepts (`==`, `<>`).
    BadSym,
    Number(f64),
    /// A word, a quoted string, or several of them joined by dots. Whether this is an
    /// identifier, a string value or a keyword depends on where the parser meets it,
    /// so the lexer stays context-free.
    Name(Vec<Part>),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// Position of the first character.
    pos: usize,
    /// The source text, for error messages.
    text: String,
}

/// Keywords are bare, undotted words compared case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    And,
    Or,
    Not,
    In,
    Is,
    Null,
    Like,
    ILike,
    Asc,
    Desc,
}

impl Token {
    /// The keyword this token spells, if any. `metrics.and` or `` `AND` `` are not keywords.
    fn keyword(&self) -> Option<Kw> {
        let Tok::Name(parts) = &self.tok else {
            return None;
        };
        let [part] = parts.as_slice() else {
            return None;
        };
        if part.quote.is_some() {
            return None;
        }
        let word = part.text.to_ascii_uppercase();
        Some(match word.as_str() {
            "AND" => Kw::And,
            "OR" => Kw::Or,
            "NOT" => Kw::Not,
            "IN" => Kw::In,
            "IS" => Kw::Is,
            "NULL" => Kw::Null,
            "LIKE" => Kw::Like,
            "ILIKE" => Kw::ILike,
            "ASC" => Kw::Asc,
            "DESC" => Kw::Desc,
            _ => return None,
        })
    }

    /// Whether this is a symbol or bracket rather than a word, number or string; such
    /// a token where a value belongs reads best as plain "unexpected '>'".
    fn is_punctuation(&self) -> bool {
        matches!(
            self.tok,
            Tok::LParen | Tok::RParen | Tok::Comma | Tok::Sym(_) | Tok::BadSym
        )
    }

    /// The token as users typed it, shortened, for "unexpected 'x'" messages.
    fn shown(&self) -> String {
        truncate(&self.text, MAX_TOKEN_ECHO_CHARS)
    }
}

/// Characters allowed in an unquoted name after its first character. Beyond MLflow's
/// `[A-Za-z0-9_]` (and any Unicode letter, which sqlparse also accepts) we allow
/// `-`, `/` and `:`, which MLflow permits in metric/param/tag names but forces users
/// to backtick-quote in filters.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '/' | ':')
}

/// Characters that may start an unquoted name (digits start numbers instead).
fn is_word_start(c: char) -> bool {
    (c.is_alphanumeric() && !c.is_ascii_digit()) || c == '_'
}

fn is_quote(c: char) -> bool {
    matches!(c, '\'' | '"' | '`')
}

fn quote_name(q: char) -> &'static str {
    match q {
        '\'' => "single quote",
        '"' => "double quote",
        _ => "backtick",
    }
}

/// Splits the input into tokens. Whitespace only separates tokens.
fn lex(chars: &[char]) -> PResult<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let next = chars.get(i + 1).copied();
        let next2 = chars.get(i + 2).copied();
        let tok = match c {
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            '=' if next == Some('=') => {
                i += 2;
                Tok::BadSym
            }
            '=' => {
                i += 1;
                Tok::Sym(CompareOp::Eq)
            }
            '!' if next == Some('=') => {
                i += 2;
                Tok::Sym(CompareOp::Ne)
            }
            '<' if next == Some('>') => {
                i += 2;
                Tok::BadSym
            }
            '<' if next == Some('=') => {
                i += 2;
                Tok::Sym(CompareOp::Le)
            }
            '<' => {
                i += 1;
                Tok::Sym(CompareOp::Lt)
            }
            '>' if next == Some('=') => {
                i += 2;
                Tok::Sym(CompareOp::Ge)
            }
            '>' => {
                i += 1;
                Tok::Sym(CompareOp::Gt)
            }
            // A number may start with a digit, a '.' before a digit, or a sign before
            // either. A lone sign or dot is a stray character.
            _ if c.is_ascii_digit()
                || (c == '.' && next.is_some_and(|n| n.is_ascii_digit()))
                || (matches!(c, '-' | '+')
                    && (next.is_some_and(|n| n.is_ascii_digit())
                        || (next == Some('.') && next2.is_some_and(|n| n.is_ascii_digit())))) =>
            {
                let (n, end) = lex_number(chars, start)?;
                i = end;
                Tok::Number(n)
            }
            _ if is_word_start(c) || is_quote(c) => {
                let (parts, end) = lex_name(chars, start)?;
                i = end;
                Tok::Name(parts)
            }
            _ => {
                let err = ParseError::new(start, format!("unexpected '{c}'"));
                return Err(if c == '!' {
                    err.with_hint("Did you mean '!='?")
                } else {
                    err
                });
            }
        };
        let text: String = chars.get(start..i).unwrap_or_default().iter().collect();
        tokens.push(Token {
            tok,
            pos: start,
            text,
        });
    }
    Ok(tokens)
}

/// Lexes `[+-] digits [. digits] [e [+-] digits]` (either side of the dot may be empty,
/// as in MLflow's `1.` and `.5`). Returns the value and the index after it.
fn lex_number(chars: &[char], start: usize) -> PResult<(f64, usize)> {
    let is_digit = |i: usize| chars.get(i).is_some_and(|c| c.is_ascii_digit());
    let mut i = start;
    if matches!(chars.get(i), Some('+' | '-')) {
        i += 1;
    }
    while is_digit(i) {
        i += 1;
    }
    if chars.get(i) == Some(&'.') {
        i += 1;
        while is_digit(i) {
            i += 1;
        }
    }
    if matches!(chars.get(i), Some('e' | 'E')) {
        let mut j = i + 1;
        if matches!(chars.get(j), Some('+' | '-')) {
            j += 1;
        }
        // Only treat the 'e' as an exponent if digits follow; otherwise `1e` or `1ex`
        // falls through to the "glued to a word" check below.
        if is_digit(j) {
            while is_digit(j) {
                j += 1;
            }
            i = j;
        }
    }
    let text: String = chars.get(start..i).unwrap_or_default().iter().collect();
    // `1abc`, `1.2.3` or `1'x'` is one malformed token, not a number followed by junk.
    if chars
        .get(i)
        .is_some_and(|&c| is_word_char(c) || c == '.' || is_quote(c))
    {
        let mut end = i;
        while chars.get(end).is_some_and(|&c| is_word_char(c) || c == '.') {
            end += 1;
        }
        let bad: String = chars.get(start..end).unwrap_or_default().iter().collect();
        return Err(ParseError::new(
            start,
            format!("invalid number '{}'", truncate(&bad, MAX_TOKEN_ECHO_CHARS)),
        ));
    }
    match text.parse::<f64>() {
        Ok(n) if n.is_finite() => Ok((n, i)),
        _ => Err(ParseError::new(
            start,
            format!(
                "number '{}' is out of range",
                truncate(&text, MAX_TOKEN_ECHO_CHARS)
            ),
        )),
    }
}

/// Lexes one or more parts (bare words or quoted strings) joined by dots, with no
/// whitespace around the dots: `metrics.a.b`, ``tags.`mlflow.runName` ``, `'value'`.
fn lex_name(chars: &[char], start: usize) -> PResult<(Vec<Part>, usize)> {
    let mut parts = Vec::new();
    let mut i = start;
    loop {
        match chars.get(i).copied() {
            Some(q) if is_quote(q) => {
                let (text, end) = lex_quoted(chars, i, q)?;
                parts.push(Part {
                    text,
                    quote: Some(q),
                    pos: i,
                });
                i = end;
            }
            Some(c) if is_word_char(c) => {
                let part_start = i;
                while chars.get(i).is_some_and(|&c| is_word_char(c)) {
                    i += 1;
                }
                parts.push(Part {
                    text: chars
                        .get(part_start..i)
                        .unwrap_or_default()
                        .iter()
                        .collect(),
                    quote: None,
                    pos: part_start,
                });
            }
            // Only reachable after a dot (the caller checked the first character).
            _ => return Err(ParseError::new(i, "expected a name after '.'")),
        }
        if chars.get(i) == Some(&'.') {
            i += 1;
        } else {
            return Ok((parts, i));
        }
    }
}

/// Lexes a string quoted with `q`, starting at the opening quote. Inside, a doubled
/// quote (`''`, SQL style) or a backslash-escaped quote (`\'`) stands for the quote
/// itself; `\\` is kept verbatim (so it cannot escape a closing quote); every other
/// character, including a lone backslash, is literal — LIKE patterns pass through
/// untouched, as in MLflow.
fn lex_quoted(chars: &[char], start: usize, q: char) -> PResult<(String, usize)> {
    let mut text = String::new();
    let mut i = start + 1;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(ParseError::new(
                start,
                format!("unterminated {} string", quote_name(q)),
            ));
        };
        let next = chars.get(i + 1).copied();
        if c == q {
            if next == Some(q) {
                text.push(q);
                i += 2;
            } else {
                return Ok((text, i + 1));
            }
        } else if c == '\\' && next == Some(q) {
            text.push(q);
            i += 2;
        } else if c == '\\' && next == Some('\\') {
            text.push_str("\\\\");
            i += 2;
        } else {
            text.push(c);
            i += 1;
        }
    }
}

// ---------------------------------------------------------------------------------
// Identifier resolution (shared by filters and order_by)
// ---------------------------------------------------------------------------------

/// Whether an identifier is being resolved for a filter or an order_by key; the
/// valid entity types and attributes differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Filter,
    OrderBy,
}

/// The canonical entity types, after alias resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntityType {
    Metric,
    Param,
    Tag,
    Attribute,
    Dataset,
}

impl EntityType {
    /// MLflow's canonical spelling, used in messages.
    fn name(self) -> &'static str {
        match self {
            Self::Metric => "metric",
            Self::Param => "parameter",
            Self::Tag => "tag",
            Self::Attribute => "attribute",
            Self::Dataset => "dataset",
        }
    }

    /// Resolves MLflow's type aliases. Case-sensitive, like MLflow (`METRICS.x` fails).
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "metric" | "metrics" => Self::Metric,
            "parameter" | "parameters" | "param" | "params" => Self::Param,
            "tag" | "tags" => Self::Tag,
            "attribute" | "attributes" | "attr" | "run" => Self::Attribute,
            "dataset" | "datasets" => Self::Dataset,
            _ => return None,
        })
    }
}

/// Which entity types each search accepts. Every alias of a type is accepted for
/// every kind (MLflow's experiment parser only takes `attribute`/`tag`/`tags`, and
/// its logged-model parser only the plural forms; accepting all is harmless).
fn entity_types(kind: SearchKind, ctx: Ctx) -> &'static [EntityType] {
    use EntityType::*;
    match (kind, ctx) {
        (SearchKind::Runs, Ctx::Filter) => &[Metric, Param, Tag, Attribute, Dataset],
        // Dataset fields are multi-valued per run, so they cannot define an order.
        (SearchKind::Runs, Ctx::OrderBy) => &[Metric, Param, Tag, Attribute],
        (SearchKind::Experiments, Ctx::Filter) => &[Attribute, Tag],
        // MLflow's parser accepts `tags.x` here but both its stores then reject it.
        (SearchKind::Experiments, Ctx::OrderBy) => &[Attribute],
        (SearchKind::LoggedModels, Ctx::Filter) => &[Metric, Param, Tag, Attribute],
        // MLflow's logged-model order_by only knows attributes and `metrics.<name>`.
        (SearchKind::LoggedModels, Ctx::OrderBy) => &[Metric, Attribute],
        (SearchKind::RegisteredModels | SearchKind::ModelVersions, Ctx::Filter) => {
            &[Attribute, Tag]
        }
        (SearchKind::RegisteredModels | SearchKind::ModelVersions, Ctx::OrderBy) => &[Attribute],
    }
}

/// Attribute names (including MLflow's aliases) for each search, in the order shown
/// in "valid keys" messages.
fn attributes(kind: SearchKind, ctx: Ctx) -> &'static [(&'static str, Attribute)] {
    use Attribute::*;
    match (kind, ctx) {
        (SearchKind::Runs, Ctx::Filter) => &[
            ("run_id", RunId),
            ("run_name", RunName),
            ("run name", RunName),
            ("Run name", RunName),
            ("Run Name", RunName),
            ("status", Status),
            ("artifact_uri", ArtifactUri),
            ("user_id", UserId),
            ("start_time", StartTime),
            ("end_time", EndTime),
            ("created", StartTime),
            ("Created", StartTime),
        ],
        // MLflow's orderable run attributes omit the "run name" aliases.
        (SearchKind::Runs, Ctx::OrderBy) => &[
            ("run_id", RunId),
            ("run_name", RunName),
            ("status", Status),
            ("artifact_uri", ArtifactUri),
            ("user_id", UserId),
            ("start_time", StartTime),
            ("end_time", EndTime),
            ("created", StartTime),
            ("Created", StartTime),
        ],
        (SearchKind::Experiments, _) => &[
            ("name", Name),
            ("experiment_id", ExperimentId),
            ("creation_time", CreationTime),
            ("last_update_time", LastUpdateTime),
        ],
        // MLflow's SQL store resolves any column here, experiment_id included.
        (SearchKind::LoggedModels, _) => &[
            ("name", Name),
            ("model_id", ModelId),
            ("model_type", ModelType),
            ("status", Status),
            ("source_run_id", SourceRunId),
            ("experiment_id", ExperimentId),
            ("creation_timestamp", CreationTime),
            ("creation_time", CreationTime),
            ("last_updated_timestamp", LastUpdateTime),
            ("last_updated_time", LastUpdateTime),
        ],
        // MLflow's registered-model filters know only `name`.
        (SearchKind::RegisteredModels, Ctx::Filter) => &[("name", Name)],
        // MLflow's SQL store sorts `timestamp` by the last update; Cairn also sorts by
        // the creation time, which MLflow's file store offered.
        (SearchKind::RegisteredModels, Ctx::OrderBy) => &[
            ("name", Name),
            ("timestamp", LastUpdateTime),
            ("creation_timestamp", CreationTime),
            ("last_updated_timestamp", LastUpdateTime),
        ],
        (SearchKind::ModelVersions, Ctx::Filter) => &[
            ("name", Name),
            ("version_number", VersionNumber),
            ("run_id", RunId),
            ("source_path", SourcePath),
        ],
        (SearchKind::ModelVersions, Ctx::OrderBy) => &[
            ("name", Name),
            ("version_number", VersionNumber),
            ("creation_timestamp", CreationTime),
            ("last_updated_timestamp", LastUpdateTime),
        ],
    }
}

fn kind_name(kind: SearchKind) -> &'static str {
    match kind {
        SearchKind::Runs => "runs",
        SearchKind::Experiments => "experiments",
        SearchKind::LoggedModels => "logged models",
        SearchKind::RegisteredModels => "registered models",
        SearchKind::ModelVersions => "model versions",
    }
}

/// Formats `['a', 'b']` as `'a', 'b'` for "valid values are ..." hints.
fn quoted_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items
        .into_iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Turns the parts of an identifier token into a [`Field`] valid for `kind`/`ctx`.
///
/// Like MLflow, the identifier is split at its first dot: the left side is the entity
/// type and everything to the right is the key (so `metrics.a.b` is metric `a.b`).
/// Without a dot the whole identifier is an attribute name.
fn resolve_field(kind: SearchKind, ctx: Ctx, parts: &[Part]) -> PResult<Field> {
    let (ty, key, key_pos) = match parts {
        [] => return Err(ParseError::new(0, "expected an identifier")),
        [only] => {
            // Single quotes mean a string value; MLflow rejects `'status' = 'x'` too.
            if only.quote == Some('\'') {
                return Err(ParseError::new(
                    only.pos,
                    format!(
                        "expected an identifier, found the string '{}'",
                        truncate(&only.text, MAX_TOKEN_ECHO_CHARS)
                    ),
                )
                .with_hint("Quote identifiers with backticks or double quotes"));
            }
            (EntityType::Attribute, only.text.clone(), only.pos)
        }
        [type_part, key_parts @ ..] => {
            let Some(ty) = EntityType::parse(&type_part.text) else {
                let valid = entity_types(kind, ctx).iter().map(|t| t.name());
                return Err(ParseError::new(
                    type_part.pos,
                    format!(
                        "invalid entity type '{}'",
                        truncate(&type_part.text, MAX_TOKEN_ECHO_CHARS)
                    ),
                )
                .with_hint(format!("Valid values are {}", quoted_list(valid))));
            };
            if !entity_types(kind, ctx).contains(&ty) {
                let valid = entity_types(kind, ctx).iter().map(|t| t.name());
                let what = match ctx {
                    Ctx::Filter => "filters",
                    Ctx::OrderBy => "order_by",
                };
                return Err(ParseError::new(
                    type_part.pos,
                    format!(
                        "entity type '{}' is not supported in {what} when searching {}",
                        type_part.text,
                        kind_name(kind)
                    ),
                )
                .with_hint(format!("Valid values are {}", quoted_list(valid))));
            }
            let key_pos = key_parts.first().map_or(type_part.pos, |p| p.pos);
            (ty, join_key(key_parts)?, key_pos)
        }
    };
    if key.is_empty() {
        return Err(ParseError::new(key_pos, "empty key"));
    }
    Ok(match ty {
        EntityType::Metric => Field::Metric(key),
        EntityType::Param => Field::Param(key),
        EntityType::Tag => Field::Tag(key),
        EntityType::Dataset => Field::Dataset(match key.as_str() {
            "name" => DatasetField::Name,
            "digest" => DatasetField::Digest,
            "context" => DatasetField::Context,
            _ => {
                return Err(ParseError::new(
                    key_pos,
                    format!(
                        "invalid dataset key '{}'",
                        truncate(&key, MAX_TOKEN_ECHO_CHARS)
                    ),
                )
                .with_hint("Valid keys are 'name', 'digest', 'context'"))
            }
        }),
        EntityType::Attribute => {
            let table = attributes(kind, ctx);
            match table.iter().find(|(name, _)| *name == key) {
                Some((_, attr)) => Field::Attr(*attr),
                None => {
                    return Err(ParseError::new(
                        key_pos,
                        format!(
                            "invalid attribute key '{}'",
                            truncate(&key, MAX_TOKEN_ECHO_CHARS)
                        ),
                    )
                    .with_hint(format!(
                        "Valid keys are {}",
                        quoted_list(table.iter().map(|(n, _)| *n))
                    )))
                }
            }
        }
    })
}

/// Joins the key parts after the type: bare words keep their dots (`a.b`), a quoted
/// key must be the whole key (`` `a.b` ``). Mixing the two (`` a.`b` ``) is rejected;
/// MLflow would keep the backticks in the key, which is never what the user meant.
fn join_key(parts: &[Part]) -> PResult<String> {
    match parts {
        [] => Ok(String::new()),
        [single] => Ok(single.text.clone()),
        _ => {
            if let Some(quoted) = parts.iter().find(|p| p.quote.is_some()) {
                return Err(ParseError::new(
                    quoted.pos,
                    "a quoted key must be the whole key after the entity type",
                )
                .with_hint("Quote the entire key, e.g. metrics.`a.b`"));
            }
            Ok(parts
                .iter()
                .map(|p| p.text.as_str())
                .collect::<Vec<_>>()
                .join("."))
        }
    }
}

/// How a field is described in messages: "metric 'loss'", "attribute 'status'".
fn describe(field: &Field) -> String {
    let (ty, key) = match field {
        Field::Metric(k) => ("metric", k.as_str()),
        Field::Param(k) => ("parameter", k.as_str()),
        Field::Tag(k) => ("tag", k.as_str()),
        Field::Attr(a) => ("attribute", attribute_name(*a)),
        Field::Dataset(d) => (
            "dataset",
            match d {
                DatasetField::Name => "name",
                DatasetField::Digest => "digest",
                DatasetField::Context => "context",
            },
        ),
    };
    format!("{ty} '{}'", truncate(key, MAX_TOKEN_ECHO_CHARS))
}

fn attribute_name(a: Attribute) -> &'static str {
    match a {
        Attribute::RunId => "run_id",
        Attribute::RunName => "run_name",
        Attribute::Status => "status",
        Attribute::ArtifactUri => "artifact_uri",
        Attribute::UserId => "user_id",
        Attribute::StartTime => "start_time",
        Attribute::EndTime => "end_time",
        Attribute::Name => "name",
        Attribute::ExperimentId => "experiment_id",
        Attribute::CreationTime => "creation_time",
        Attribute::LastUpdateTime => "last_update_time",
        Attribute::ModelId => "model_id",
        Attribute::ModelType => "model_type",
        Attribute::SourceRunId => "source_run_id",
        Attribute::VersionNumber => "version_number",
        Attribute::SourcePath => "source_path",
    }
}

// ---------------------------------------------------------------------------------
// Operator and value rules
// ---------------------------------------------------------------------------------

use CompareOp as Op;

const NUMERIC_OPS: &[CompareOp] = &[Op::Eq, Op::Ne, Op::Gt, Op::Ge, Op::Lt, Op::Le];
/// Cairn accepts IN/NOT IN for every string attribute (MLflow: only run_id /
/// experiment_id), since the SQL is the same.
const STRING_ATTR_OPS: &[CompareOp] = &[Op::Eq, Op::Ne, Op::Like, Op::ILike, Op::In, Op::NotIn];
const NULLABLE_STRING_OPS: &[CompareOp] = &[
    Op::Eq,
    Op::Ne,
    Op::Like,
    Op::ILike,
    Op::IsNull,
    Op::IsNotNull,
];
const PLAIN_STRING_OPS: &[CompareOp] = &[Op::Eq, Op::Ne, Op::Like, Op::ILike];

/// The comparators `field` accepts when searching `kind` (MLflow's `VALID_*_COMPARATORS`).
fn allowed_ops(kind: SearchKind, field: &Field) -> &'static [CompareOp] {
    match field {
        Field::Metric(_) => NUMERIC_OPS,
        // Logged-model and registry params and tags have no IS NULL in MLflow.
        Field::Param(_) | Field::Tag(_)
            if matches!(
                kind,
                SearchKind::LoggedModels | SearchKind::RegisteredModels | SearchKind::ModelVersions
            ) =>
        {
            PLAIN_STRING_OPS
        }
        Field::Param(_) | Field::Tag(_) => NULLABLE_STRING_OPS,
        Field::Attr(a) if a.is_numeric() => NUMERIC_OPS,
        Field::Attr(_) | Field::Dataset(_) => STRING_ATTR_OPS,
    }
}

/// Whether the field's values are numbers (metrics and time attributes).
fn is_numeric_field(field: &Field) -> bool {
    match field {
        Field::Metric(_) => true,
        Field::Attr(a) => a.is_numeric(),
        _ => false,
    }
}

fn op_name(op: CompareOp) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Ne => "!=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Like => "LIKE",
        Op::ILike => "ILIKE",
        Op::In => "IN",
        Op::NotIn => "NOT IN",
        Op::IsNull => "IS NULL",
        Op::IsNotNull => "IS NOT NULL",
    }
}

// ---------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------

struct Parser<'a> {
    tokens: &'a [Token],
    /// Index of the next unread token.
    next: usize,
    kind: SearchKind,
    /// Current parenthesis nesting.
    depth: usize,
    /// Position reported for "end of input" errors (the input's length in chars).
    end: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.next)
    }

    fn bump(&mut self) -> Option<&'a Token> {
        let tok = self.tokens.get(self.next);
        if tok.is_some() {
            self.next += 1;
        }
        tok
    }

    /// Consumes the next token if it is keyword `kw`.
    fn eat_keyword(&mut self, kw: Kw) -> bool {
        if self.peek().and_then(Token::keyword) == Some(kw) {
            self.next += 1;
            true
        } else {
            false
        }
    }

    /// An error for running out of tokens while expecting `what`.
    fn eof(&self, what: &str) -> ParseError {
        ParseError::new(self.end, format!("expected {what}, found end of input"))
    }

    /// `or_expr := and_expr (OR and_expr)*`
    fn parse_or(&mut self) -> PResult<Filter> {
        let mut items = vec![self.parse_and()?];
        while self.eat_keyword(Kw::Or) {
            items.push(self.parse_and()?);
        }
        Ok(combine(items, true))
    }

    /// `and_expr := primary (AND primary)*` — binds tighter than OR, as in SQL.
    fn parse_and(&mut self) -> PResult<Filter> {
        let mut items = vec![self.parse_primary()?];
        while self.eat_keyword(Kw::And) {
            items.push(self.parse_primary()?);
        }
        Ok(combine(items, false))
    }

    /// `primary := '(' or_expr ')' | comparison`
    fn parse_primary(&mut self) -> PResult<Filter> {
        let Some(tok) = self.peek() else {
            return Err(self.eof("a comparison"));
        };
        if tok.tok != Tok::LParen {
            return self.parse_comparison().map(Filter::Cond);
        }
        // Bound the recursion: each level costs parse_or + parse_and + parse_primary.
        if self.depth >= MAX_DEPTH {
            return Err(ParseError::new(
                tok.pos,
                format!("parentheses are nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        self.next += 1;
        self.depth += 1;
        let inner = self.parse_or()?;
        self.depth -= 1;
        match self.bump() {
            Some(t) if t.tok == Tok::RParen => Ok(inner),
            Some(t) => Err(ParseError::new(
                t.pos,
                format!("unexpected '{}', expected AND, OR or ')'", t.shown()),
            )),
            None => Err(ParseError::new(
                tok.pos,
                "unclosed '(' (missing ')' before the end of input)",
            )),
        }
    }

    /// `comparison := identifier op value`
    fn parse_comparison(&mut self) -> PResult<Condition> {
        let Some(tok) = self.bump() else {
            return Err(self.eof("an identifier"));
        };
        let parts = match &tok.tok {
            Tok::Name(parts) if tok.keyword().is_none() => parts,
            _ => {
                return Err(ParseError::new(
                    tok.pos,
                    format!("expected an identifier, found '{}'", tok.shown()),
                )
                .with_hint("Comparisons look like metrics.loss < 0.5 or tags.team = 'ml'"))
            }
        };
        let field = resolve_field(self.kind, Ctx::Filter, parts)?;
        let (op, op_pos) = self.parse_op()?;
        let allowed = allowed_ops(self.kind, &field);
        if !allowed.contains(&op) {
            return Err(ParseError::new(
                op_pos,
                format!(
                    "invalid comparator '{}' for {}",
                    op_name(op),
                    describe(&field)
                ),
            )
            .with_hint(format!(
                "Valid comparators are {}",
                quoted_list(allowed.iter().map(|o| op_name(*o)))
            )));
        }
        let value = match op {
            Op::IsNull | Op::IsNotNull => Value::None,
            Op::In | Op::NotIn => Value::List(self.parse_list(&field)?),
            _ if is_numeric_field(&field) => Value::Number(self.parse_number(&field)?),
            _ => Value::Str(self.parse_string(&field, "a quoted string value")?),
        };
        Ok(Condition { field, op, value })
    }

    /// Reads a comparator: a symbol, `LIKE`, `ILIKE`, `IN`, `NOT IN`, `IS [NOT] NULL`.
    fn parse_op(&mut self) -> PResult<(CompareOp, usize)> {
        let Some(tok) = self.bump() else {
            return Err(self.eof("a comparison operator"));
        };
        let pos = tok.pos;
        let op = match (&tok.tok, tok.keyword()) {
            (Tok::Sym(op), _) => *op,
            // sqlparse tokenizes these, but MLflow's search rejects them later.
            (Tok::BadSym, _) => {
                return Err(
                    ParseError::new(pos, format!("invalid comparator '{}'", tok.text))
                        .with_hint("Use '=' or '!='"),
                )
            }
            (_, Some(Kw::Like)) => Op::Like,
            (_, Some(Kw::ILike)) => Op::ILike,
            (_, Some(Kw::In)) => Op::In,
            (_, Some(Kw::Not)) => {
                let next = self.bump();
                match next.and_then(Token::keyword) {
                    Some(Kw::In) => Op::NotIn,
                    Some(Kw::Like | Kw::ILike) => {
                        return Err(ParseError::new(
                            pos,
                            format!(
                                "invalid comparator 'NOT {}'",
                                next.map_or(String::new(), |t| t.text.to_ascii_uppercase())
                            ),
                        )
                        .with_hint("Use '!=' or combine conditions instead"))
                    }
                    _ => {
                        return Err(match next {
                            Some(t) => ParseError::new(
                                t.pos,
                                format!("expected IN after NOT, found '{}'", t.shown()),
                            ),
                            None => self.eof("IN after NOT"),
                        })
                    }
                }
            }
            (_, Some(Kw::Is)) => {
                let negated = self.eat_keyword(Kw::Not);
                match self.bump() {
                    Some(t) if t.keyword() == Some(Kw::Null) => {
                        if negated {
                            Op::IsNotNull
                        } else {
                            Op::IsNull
                        }
                    }
                    Some(t) => {
                        return Err(ParseError::new(
                            t.pos,
                            format!("expected NULL after IS, found '{}'", t.shown()),
                        ))
                    }
                    None => return Err(self.eof("NULL after IS")),
                }
            }
            _ => {
                return Err(ParseError::new(
                    pos,
                    format!("expected a comparison operator, found '{}'", tok.shown()),
                )
                .with_hint(
                    "Valid comparators are '=', '!=', '<', '<=', '>', '>=', 'LIKE', 'ILIKE', \
                     'IN', 'NOT IN', 'IS NULL', 'IS NOT NULL'",
                ))
            }
        };
        Ok((op, pos))
    }

    /// Reads a string literal in single or double quotes (MLflow accepts both).
    fn parse_string(&mut self, field: &Field, what: &str) -> PResult<String> {
        let Some(tok) = self.bump() else {
            return Err(self.eof(&format!("{what} for {}", describe(field))));
        };
        if tok.is_punctuation() {
            return Err(
                ParseError::new(tok.pos, format!("unexpected '{}'", tok.shown()))
                    .with_hint(format!("Expected {what} for {}", describe(field))),
            );
        }
        if let Tok::Name(parts) = &tok.tok {
            if let [part] = parts.as_slice() {
                match part.quote {
                    Some('\'' | '"') => return Ok(part.text.clone()),
                    Some(_) => {
                        return Err(ParseError::new(
                            tok.pos,
                            format!(
                                "expected {what} for {}, found a backtick-quoted name",
                                describe(field)
                            ),
                        )
                        .with_hint("Backticks quote identifiers; quote values with single quotes"))
                    }
                    None => {}
                }
            }
        }
        Err(ParseError::new(
            tok.pos,
            format!(
                "expected {what} for {}, found '{}'",
                describe(field),
                tok.shown()
            ),
        )
        .with_hint("Quote string values with single or double quotes, e.g. 'my-value'"))
    }

    /// Reads a number. MLflow rejects quoted numbers for metrics and time attributes,
    /// and so do we.
    fn parse_number(&mut self, field: &Field) -> PResult<f64> {
        match self.bump() {
            Some(Token {
                tok: Tok::Number(n),
                ..
            }) => Ok(*n),
            Some(tok) if tok.is_punctuation() => Err(ParseError::new(
                tok.pos,
                format!("unexpected '{}'", tok.shown()),
            )
            .with_hint(format!("Expected a numeric value for {}", describe(field)))),
            Some(tok) => Err(ParseError::new(
                tok.pos,
                format!(
                    "expected a numeric value for {}, found '{}'",
                    describe(field),
                    tok.shown()
                ),
            )),
            None => Err(self.eof(&format!("a numeric value for {}", describe(field)))),
        }
    }

    /// Reads `( 'a', 'b', ... )`: non-empty, strings only, trailing comma allowed (MLflow
    /// parses the list with Python's `literal_eval`, which allows it).
    fn parse_list(&mut self, field: &Field) -> PResult<Vec<String>> {
        match self.bump() {
            Some(t) if t.tok == Tok::LParen => {}
            Some(t) => {
                return Err(ParseError::new(
                    t.pos,
                    format!("expected '(' to start a list, found '{}'", t.shown()),
                )
                .with_hint("Write lists as ('a', 'b')"))
            }
            None => return Err(self.eof("'(' to start a list")),
        }
        if let Some(t) = self.peek() {
            if t.tok == Tok::RParen {
                return Err(ParseError::new(t.pos, "empty list")
                    .with_hint("IN and NOT IN need at least one quoted string value"));
            }
        }
        let mut items = Vec::new();
        loop {
            if let Some(t) = self.peek() {
                // Only reachable after a trailing comma: `('a',)`.
                if t.tok == Tok::RParen && !items.is_empty() {
                    self.next += 1;
                    return Ok(items);
                }
            }
            items.push(self.parse_string(field, "a quoted string in the list")?);
            match self.bump() {
                Some(t) if t.tok == Tok::Comma => {}
                Some(t) if t.tok == Tok::RParen => return Ok(items),
                Some(t) => {
                    return Err(ParseError::new(
                        t.pos,
                        format!("expected ',' or ')' in list, found '{}'", t.shown()),
                    ))
                }
                None => return Err(self.eof("',' or ')' to continue the list")),
            }
        }
    }
}

/// Builds an And/Or node, flattening children of the same kind so that `a AND (b AND
/// c)` is `And[a, b, c]`, and returning a lone child as-is (never a 1-element node).
fn combine(items: Vec<Filter>, is_or: bool) -> Filter {
    let mut flat = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Filter::Or(children) if is_or => flat.extend(children),
            Filter::And(children) if !is_or => flat.extend(children),
            other => flat.push(other),
        }
    }
    if flat.len() == 1 {
        if let Some(only) = flat.pop() {
            return only;
        }
    }
    if is_or {
        Filter::Or(flat)
    } else {
        Filter::And(flat)
    }
}

fn parse_filter_inner(kind: SearchKind, input: &str) -> PResult<Filter> {
    let chars = check_length(input)?;
    let tokens = lex(&chars)?;
    let mut parser = Parser {
        tokens: &tokens,
        next: 0,
        kind,
        depth: 0,
        end: chars.len(),
    };
    let filter = parser.parse_or()?;
    // Anything left over is an error: MLflow silently accepts juxtaposed clauses
    // (`a = 'x' b = 'y'`) and a dangling AND; we do not.
    match parser.peek() {
        None => Ok(filter),
        Some(t) if t.tok == Tok::RParen => Err(ParseError::new(t.pos, "unmatched ')'")),
        Some(t) => Err(ParseError::new(
            t.pos,
            format!(
                "unexpected '{}', expected AND, OR or end of filter",
                t.shown()
            ),
        )),
    }
}

fn parse_order_by_inner(kind: SearchKind, clause: &str) -> PResult<OrderBy> {
    let chars = check_length(clause)?;
    let tokens = lex(&chars)?;
    let mut iter = tokens.iter();
    let field = match iter.next() {
        None => return Err(ParseError::new(0, "empty order_by clause")),
        Some(Token {
            tok: Tok::Name(parts),
            ..
        }) => resolve_field(kind, Ctx::OrderBy, parts)?,
        Some(t) => {
            return Err(ParseError::new(
                t.pos,
                format!("expected an identifier, found '{}'", t.shown()),
            ))
        }
    };
    // The direction is optional and case-insensitive; ascending by default.
    let ascending = match iter.next() {
        None => true,
        Some(t) => match t.keyword() {
            Some(Kw::Asc) => true,
            Some(Kw::Desc) => false,
            _ => {
                return Err(
                    ParseError::new(t.pos, format!("invalid ordering key '{}'", t.shown()))
                        .with_hint("Expected ASC or DESC"),
                )
            }
        },
    };
    if let Some(t) = iter.next() {
        return Err(ParseError::new(
            t.pos,
            format!("unexpected '{}' after the sort direction", t.shown()),
        ));
    }
    Ok(OrderBy { field, ascending })
}

#[cfg(test)]
mod tests {
    use super::*;
    use SearchKind::{Experiments as Exp, LoggedModels as Lm, Runs};

    // ---- helpers ----

    fn parse(kind: SearchKind, s: &str) -> Option<Filter> {
        parse_filter(kind, s).ok().flatten()
    }

    /// The single condition `s` parses to, if it parses to exactly one.
    fn cond_of(kind: SearchKind, s: &str) -> Option<Condition> {
        match parse(kind, s) {
            Some(Filter::Cond(c)) => Some(c),
            _ => None,
        }
    }

    /// The error message for `s`, or "" if it parsed.
    fn err(kind: SearchKind, s: &str) -> String {
        match parse_filter(kind, s) {
            Err(CoreError::InvalidParameter(m)) => m,
            Err(other) => format!("WRONG VARIANT: {other:?}"),
            Ok(_) => String::new(),
        }
    }

    fn order_err(kind: SearchKind, s: &str) -> String {
        match parse_order_by(kind, &[s.to_string()]) {
            Err(CoreError::InvalidParameter(m)) => m,
            Err(other) => format!("WRONG VARIANT: {other:?}"),
            Ok(_) => String::new(),
        }
    }

    fn order(kind: SearchKind, s: &str) -> Option<OrderBy> {
        parse_order_by(kind, &[s.to_string()])
            .ok()
            .and_then(|mut v| v.pop())
    }

    fn c(field: Field, op: CompareOp, value: Value) -> Filter {
        Filter::Cond(Condition { field, op, value })
    }

    fn metric(k: &str) -> Field {
        Field::Metric(k.to_string())
    }
    fn param(k: &str) -> Field {
        Field::Param(k.to_string())
    }
    fn tag(k: &str) -> Field {
        Field::Tag(k.to_string())
    }
    fn s(v: &str) -> Value {
        Value::Str(v.to_string())
    }
    fn list(v: &[&str]) -> Value {
        Value::List(v.iter().map(|x| x.to_string()).collect())
    }

    /// Asserts that `s` fails and its message mentions every needle.
    fn assert_err(kind: SearchKind, s: &str, needles: &[&str]) {
        let m = err(kind, s);
        assert!(!m.is_empty(), "expected {s:?} to fail");
        assert!(m.contains("at position"), "no position in {m:?}");
        for n in needles {
            assert!(m.contains(n), "{s:?}: message {m:?} lacks {n:?}");
        }
    }

    // ---- empty input ----

    #[test]
    fn blank_input_is_no_filter() {
        for input in ["", " ", "\t\n", "\u{3000}"] {
            assert!(matches!(parse_filter(Runs, input), Ok(None)), "{input:?}");
        }
    }

    // ---- identifiers ----

    #[test]
    fn metric_aliases() {
        for p in ["metric", "metrics", "`metrics`"] {
            let f = format!("{p}.loss < 1");
            assert_eq!(
                parse(Runs, &f),
                Some(c(metric("loss"), Op::Lt, Value::Number(1.0))),
                "{f}"
            );
        }
    }

    #[test]
    fn param_aliases() {
        for p in ["param", "params", "parameter", "parameters", "`params`"] {
            let f = format!("{p}.lr = '0.1'");
            assert_eq!(
                parse(Runs, &f),
                Some(c(param("lr"), Op::Eq, s("0.1"))),
                "{f}"
            );
        }
    }

    #[test]
    fn tag_aliases() {
        for p in ["tag", "tags"] {
            let f = format!("{p}.team = 'ml'");
            assert_eq!(
                parse(Runs, &f),
                Some(c(tag("team"), Op::Eq, s("ml"))),
                "{f}"
            );
        }
    }

    #[test]
    fn attribute_aliases() {
        for p in ["attribute.", "attributes.", "attr.", "run.", ""] {
            let f = format!("{p}status = 'FINISHED'");
            assert_eq!(
                parse(Runs, &f),
                Some(c(Field::Attr(Attribute::Status), Op::Eq, s("FINISHED"))),
                "{f}"
            );
        }
    }

    #[test]
    fn dataset_aliases() {
        for p in ["dataset", "datasets"] {
            for (k, d) in [
                ("name", DatasetField::Name),
                ("digest", DatasetField::Digest),
                ("context", DatasetField::Context),
            ] {
                let f = format!("{p}.{k} = 'x'");
                assert_eq!(
                    parse(Runs, &f),
                    Some(c(Field::Dataset(d), Op::Eq, s("x"))),
                    "{f}"
                );
            }
        }
    }

    #[test]
    fn entity_types_are_case_sensitive() {
        // MLflow rejects these too.
        assert_err(
            Runs,
            "METRICS.x > 1",
            &["invalid entity type 'METRICS'", "position 0"],
        );
        assert_err(Runs, "Metrics.x > 1", &["invalid entity type 'Metrics'"]);
        assert_err(Runs, "STATUS = 'x'", &["invalid attribute key 'STATUS'"]);
    }

    #[test]
    fn unknown_entity_type() {
        assert_err(
            Runs,
            "foo.bar = 'x'",
            &[
                "invalid entity type 'foo'",
                "position 0",
                "'metric'",
                "'dataset'",
            ],
        );
        assert_err(
            Runs,
            "metrics.a = 1 AND x.y = 'z'",
            &["invalid entity type 'x'", "position 18"],
        );
    }

    #[test]
    fn run_attributes_all_resolve() {
        let strings = [
            ("run_id", Attribute::RunId),
            ("run_name", Attribute::RunName),
            ("status", Attribute::Status),
            ("artifact_uri", Attribute::ArtifactUri),
            ("user_id", Attribute::UserId),
        ];
        for (name, attr) in strings {
            let f = format!("{name} = 'v'");
            assert_eq!(parse(Runs, &f), Some(c(Field::Attr(attr), Op::Eq, s("v"))));
        }
        let numbers = [
            ("start_time", Attribute::StartTime),
            ("end_time", Attribute::EndTime),
            ("created", Attribute::StartTime),
            ("Created", Attribute::StartTime),
        ];
        for (name, attr) in numbers {
            let f = format!("attributes.{name} >= 5");
            assert_eq!(
                parse(Runs, &f),
                Some(c(Field::Attr(attr), Op::Ge, Value::Number(5.0)))
            );
        }
    }

    #[test]
    fn run_name_aliases_need_quotes() {
        for q in [
            "`run name`",
            "\"run name\"",
            "`Run name`",
            "`Run Name`",
            "attributes.`Run Name`",
            "attr.\"run name\"",
        ] {
            let f = format!("{q} = 'x'");
            assert_eq!(
                parse(Runs, &f),
                Some(c(Field::Attr(Attribute::RunName), Op::Eq, s("x"))),
                "{f}"
            );
        }
        // Unquoted, "run name" is attribute `run` followed by junk.
        assert_err(
            Runs,
            "run name = 'x'",
            &["invalid attribute key 'run'", "position 0"],
        );
        // Other spellings are not aliases.
        assert_err(
            Runs,
            "`RUN NAME` = 'x'",
            &["invalid attribute key 'RUN NAME'"],
        );
    }

    #[test]
    fn unknown_attribute() {
        assert_err(
            Runs,
            "foo = 'x'",
            &[
                "invalid attribute key 'foo'",
                "position 0",
                "Valid keys are 'run_id'",
            ],
        );
        assert_err(
            Runs,
            "attributes.experiment_id = '1'",
            &["invalid attribute key 'experiment_id'", "position 11"],
        );
        assert_err(
            Runs,
            "lifecycle_stage = 'active'",
            &["invalid attribute key"],
        );
        assert_err(
            Runs,
            "datasets.foo = 'x'",
            &["invalid dataset key 'foo'", "position 9"],
        );
    }

    #[test]
    fn quoted_keys() {
        let cases = [
            ("tags.`mlflow.runName` = 'x'", tag("mlflow.runName")),
            ("tags.\"mlflow.runName\" = 'x'", tag("mlflow.runName")),
            ("params.\"my param\" = 'x'", param("my param")),
            ("params.'my param' = 'x'", param("my param")),
            ("params.`a` = 'x'", param("a")),
            ("tags.`it``s` = 'x'", tag("it`s")),
            ("tags.`ключ` = 'x'", tag("ключ")),
            ("tags.`a = 'b'` = 'x'", tag("a = 'b'")),
        ];
        for (f, field) in cases {
            assert_eq!(parse(Runs, f), Some(c(field, Op::Eq, s("x"))), "{f}");
        }
        assert_eq!(
            parse(Runs, "metrics.\"a.b\" > 1"),
            Some(c(metric("a.b"), Op::Gt, Value::Number(1.0)))
        );
        assert_eq!(
            parse(Runs, "metrics.`a b` > 1"),
            Some(c(metric("a b"), Op::Gt, Value::Number(1.0)))
        );
    }

    #[test]
    fn unquoted_dotted_and_punctuated_keys() {
        // As in MLflow, everything after the first dot is the key.
        assert_eq!(
            parse(Runs, "metrics.a.b > 1"),
            Some(c(metric("a.b"), Op::Gt, Value::Number(1.0)))
        );
        assert_eq!(
            parse(Runs, "tags.a.b.c = 'x'"),
            Some(c(tag("a.b.c"), Op::Eq, s("x")))
        );
        assert_eq!(
            parse(Runs, "metrics.1abc > 1"),
            Some(c(metric("1abc"), Op::Gt, Value::Number(1.0)))
        );
        assert_eq!(
            parse(Runs, "metrics.损失 > 1"),
            Some(c(metric("损失"), Op::Gt, Value::Number(1.0)))
        );
        // Extension: '-', '/' and ':' need no quoting.
        assert_eq!(
            parse(Runs, "metrics.train/loss-x:y <= 2"),
            Some(c(metric("train/loss-x:y"), Op::Le, Value::Number(2.0)))
        );
        // `metrics.and` is a key, not a keyword.
        assert_eq!(
            parse(Runs, "metrics.and > 1"),
            Some(c(metric("and"), Op::Gt, Value::Number(1.0)))
        );
    }

    #[test]
    fn malformed_identifiers() {
        assert_err(
            Runs,
            "metrics. x > 1",
            &["expected a name after '.'", "position 8"],
        );
        assert_err(
            Runs,
            "metrics.x. > 1",
            &["expected a name after '.'", "position 10"],
        );
        assert_err(
            Runs,
            "metrics.a.`b` > 1",
            &["quoted key must be the whole key", "position 10"],
        );
        assert_err(Runs, "metrics.`` > 1", &["empty key", "position 8"]);
        assert_err(
            Runs,
            "'status' = 'x'",
            &["expected an identifier", "position 0"],
        );
        assert_err(
            Runs,
            "= 'x'",
            &["expected an identifier, found '='", "position 0"],
        );
        assert_err(Runs, "1 = 1", &["expected an identifier, found '1'"]);
        assert_err(
            Runs,
            "AND status = 'x'",
            &["expected an identifier, found 'AND'"],
        );
        assert_err(Runs, "metrics .x > 1", &["position 8"]);
    }

    // ---- operators by field type (runs) ----

    #[test]
    fn metric_operators() {
        for (sym, op) in [
            ("=", Op::Eq),
            ("!=", Op::Ne),
            (">", Op::Gt),
            (">=", Op::Ge),
            ("<", Op::Lt),
            ("<=", Op::Le),
        ] {
            let f = format!("metrics.m {sym} 2");
            assert_eq!(
                parse(Runs, &f),
                Some(c(metric("m"), op, Value::Number(2.0)))
            );
            // No whitespace needed around symbols.
            let f = format!("metrics.m{sym}2");
            assert_eq!(
                parse(Runs, &f),
                Some(c(metric("m"), op, Value::Number(2.0)))
            );
        }
        for bad in [
            "metrics.m LIKE 'x'",
            "metrics.m ILIKE 'x'",
            "metrics.m IN ('1')",
            "metrics.m NOT IN ('1')",
            "metrics.m IS NULL",
            "metrics.m IS NOT NULL",
        ] {
            assert_err(
                Runs,
                bad,
                &["invalid comparator", "for metric 'm'", "position 10"],
            );
        }
        assert_err(
            Runs,
            "metrics.m = 'x'",
            &["expected a numeric value", "position 12"],
        );
        assert_err(Runs, "metrics.m = '1'", &["expected a numeric value"]);
        assert_err(Runs, "metrics.m = x", &["expected a numeric value"]);
    }

    #[test]
    fn param_and_tag_operators() {
        for field_src in ["params.p", "tags.p"] {
            let field = if field_src.starts_with("params") {
                param("p")
            } else {
                tag("p")
            };
            for (sym, op) in [
                ("=", Op::Eq),
                ("!=", Op::Ne),
                ("LIKE", Op::Like),
                ("like", Op::Like),
                ("ILIKE", Op::ILike),
                ("iLiKe", Op::ILike),
            ] {
                let f = format!("{field_src} {sym} 'a%'");
                assert_eq!(parse(Runs, &f), Some(c(field.clone(), op, s("a%"))), "{f}");
            }
            for (src, op) in [
                ("IS NULL", Op::IsNull),
                ("is null", Op::IsNull),
                ("IS NOT NULL", Op::IsNotNull),
                ("Is Not Null", Op::IsNotNull),
            ] {
                let f = format!("{field_src} {src}");
                assert_eq!(
                    parse(Runs, &f),
                    Some(c(field.clone(), op, Value::None)),
                    "{f}"
                );
            }
            for bad in [">", ">=", "<", "<="] {
                let f = format!("{field_src} {bad} 'x'");
                assert_err(Runs, &f, &["invalid comparator"]);
            }
            assert_err(
                Runs,
                &format!("{field_src} IN ('x')"),
                &["invalid comparator 'IN'"],
            );
            assert_err(
                Runs,
                &format!("{field_src} = 1"),
                &["expected a quoted string value"],
            );
            assert_err(
                Runs,
                &format!("{field_src} = x"),
                &["expected a quoted string value"],
            );
            assert_err(Runs, &format!("{field_src} = `x`"), &["backtick"]);
        }
    }

    #[test]
    fn string_attribute_operators() {
        for (src, op) in [
            ("=", Op::Eq),
            ("!=", Op::Ne),
            ("LIKE", Op::Like),
            ("ILIKE", Op::ILike),
        ] {
            let f = format!("run_name {src} 'x'");
            assert_eq!(
                parse(Runs, &f),
                Some(c(Field::Attr(Attribute::RunName), op, s("x")))
            );
        }
        assert_eq!(
            parse(Runs, "run_id IN ('a', 'b')"),
            Some(c(Field::Attr(Attribute::RunId), Op::In, list(&["a", "b"])))
        );
        // Extension: IN on any string attribute.
        assert_eq!(
            parse(Runs, "status not in (\"RUNNING\")"),
            Some(c(
                Field::Attr(Attribute::Status),
                Op::NotIn,
                list(&["RUNNING"])
            ))
        );
        assert_err(
            Runs,
            "status > 'a'",
            &["invalid comparator '>' for attribute 'status'"],
        );
        assert_err(Runs, "status IS NULL", &["invalid comparator 'IS NULL'"]);
        assert_err(Runs, "user_id = 5", &["expected a quoted string value"]);
    }

    #[test]
    fn numeric_attribute_operators() {
        assert_eq!(
            parse(Runs, "start_time > 1.5"),
            Some(c(
                Field::Attr(Attribute::StartTime),
                Op::Gt,
                Value::Number(1.5)
            ))
        );
        assert_eq!(
            parse(Runs, "end_time != 0"),
            Some(c(
                Field::Attr(Attribute::EndTime),
                Op::Ne,
                Value::Number(0.0)
            ))
        );
        // MLflow rejects quoted numbers for numeric attributes.
        assert_err(
            Runs,
            "start_time > '1'",
            &["expected a numeric value for attribute 'start_time'"],
        );
        assert_err(Runs, "end_time IN ('1')", &["invalid comparator 'IN'"]);
        assert_err(Runs, "created LIKE '1'", &["invalid comparator 'LIKE'"]);
    }

    #[test]
    fn dataset_operators() {
        assert_eq!(
            parse(Runs, "datasets.digest IN ('a','b')"),
            Some(c(
                Field::Dataset(DatasetField::Digest),
                Op::In,
                list(&["a", "b"])
            ))
        );
        assert_eq!(
            parse(Runs, "dataset.context ILIKE 'train%'"),
            Some(c(
                Field::Dataset(DatasetField::Context),
                Op::ILike,
                s("train%")
            ))
        );
        assert_err(Runs, "datasets.name > 'x'", &["invalid comparator '>'"]);
        assert_err(
            Runs,
            "datasets.name IS NULL",
            &["invalid comparator 'IS NULL'"],
        );
    }

    #[test]
    fn bad_comparators() {
        assert_err(
            Runs,
            "metrics.x >> 1",
            &["unexpected '>'", "at position 11"],
        );
        assert_err(
            Runs,
            "metrics.x == 1",
            &["invalid comparator '=='", "position 10"],
        );
        assert_err(Runs, "metrics.x <> 1", &["invalid comparator '<>'"]);
        assert_err(Runs, "metrics.x ! 1", &["unexpected '!'", "position 10"]);
        assert_err(
            Runs,
            "tags.x NOT LIKE 'a'",
            &["invalid comparator 'NOT LIKE'", "position 7"],
        );
        assert_err(
            Runs,
            "tags.x NOT 'a'",
            &["expected IN after NOT", "position 11"],
        );
        assert_err(
            Runs,
            "tags.x IS 'a'",
            &["expected NULL after IS", "position 10"],
        );
        assert_err(
            Runs,
            "tags.x IS NOT",
            &["expected NULL after IS", "end of input", "position 13"],
        );
        assert_err(
            Runs,
            "tags.x 'a'",
            &["expected a comparison operator", "position 7"],
        );
        assert_err(
            Runs,
            "tags.x",
            &[
                "expected a comparison operator",
                "end of input",
                "position 6",
            ],
        );
    }

    // ---- values ----

    #[test]
    fn numbers() {
        let cases: &[(&str, f64)] = &[
            ("1", 1.0),
            ("01", 1.0),
            ("-1", -1.0),
            ("+2", 2.0),
            ("1.5", 1.5),
            ("-0.25", -0.25),
            ("1.", 1.0),
            (".5", 0.5),
            ("-.5", -0.5),
            ("1e-3", 1e-3),
            ("1E3", 1000.0),
            ("-1.5e+2", -150.0),
            ("9999999999999999999999", 9_999_999_999_999_999_999_999.0),
        ];
        for (src, want) in cases {
            let f = format!("metrics.x > {src}");
            assert_eq!(
                cond_of(Runs, &f).map(|c| c.value),
                Some(Value::Number(*want)),
                "{f}"
            );
        }
        for bad in ["1abc", "1.2.3", "0x10", "1e", "1e+", "1'a'"] {
            let f = format!("metrics.x > {bad}");
            assert_err(Runs, &f, &["invalid number", "position 12"]);
        }
        assert_err(Runs, "metrics.x > 1e999", &["out of range", "position 12"]);
        assert_err(Runs, "metrics.x > -", &["unexpected '-'", "position 12"]);
        assert_err(Runs, "metrics.x > .", &["unexpected '.'", "position 12"]);
        assert_err(Runs, "metrics.x > inf", &["expected a numeric value"]);
        assert_err(Runs, "metrics.x > NaN", &["expected a numeric value"]);
    }

    #[test]
    fn strings() {
        let cases = [
            ("tags.t = 'x'", "x"),
            ("tags.t = \"x\"", "x"),
            ("tags.t = ''", ""),
            ("tags.t = 'it''s'", "it's"),
            ("tags.t = 'it\\'s'", "it's"),
            ("tags.t = \"say \"\"hi\"\"\"", "say \"hi\""),
            ("tags.t = 'a\\_b%'", "a\\_b%"),
            ("tags.t = 'a\\\\'", "a\\\\"),
            ("tags.t = 'AND OR ( ) , = 1'", "AND OR ( ) , = 1"),
            ("tags.t = 'héllo 世界 🎉'", "héllo 世界 🎉"),
            ("tags.t = \"single ' inside\"", "single ' inside"),
        ];
        for (f, want) in cases {
            assert_eq!(cond_of(Runs, f).map(|c| c.value), Some(s(want)), "{f}");
        }
        assert_err(
            Runs,
            "tags.t = 'abc",
            &["unterminated single quote string", "position 9"],
        );
        assert_err(
            Runs,
            "tags.t = \"abc",
            &["unterminated double quote", "position 9"],
        );
        assert_err(
            Runs,
            "tags.`t = 'abc'",
            &["unterminated backtick", "position 5"],
        );
        assert_err(Runs, "tags.t = 'a\\'", &["unterminated"]);
        assert_err(
            Runs,
            "tags.t = 'a'.'b'",
            &["expected a quoted string value", "position 9"],
        );
        assert_err(
            Runs,
            "tags.t =",
            &[
                "expected a quoted string value",
                "end of input",
                "position 8",
            ],
        );
    }

    #[test]
    fn in_lists() {
        assert_eq!(
            cond_of(Runs, "run_id IN ('a')").map(|c| c.value),
            Some(list(&["a"]))
        );
        assert_eq!(
            cond_of(Runs, "run_id in('a',\"b\" , 'c')").map(|c| c.value),
            Some(list(&["a", "b", "c"]))
        );
        // Trailing comma, as Python's literal_eval allows.
        assert_eq!(
            cond_of(Runs, "run_id IN ('a',)").map(|c| c.value),
            Some(list(&["a"]))
        );
        assert_eq!(
            cond_of(Runs, "run_id NOT IN ('a', 'b')").map(|c| c.op),
            Some(Op::NotIn)
        );
        assert_err(Runs, "run_id IN ()", &["empty list", "position 11"]);
        assert_err(
            Runs,
            "run_id IN (,)",
            &[
                "unexpected ','",
                "a quoted string in the list",
                "position 11",
            ],
        );
        assert_err(Runs, "run_id IN ('a',,)", &["position 15"]);
        assert_err(
            Runs,
            "run_id IN ('a', 1)",
            &["expected a quoted string in the list", "position 16"],
        );
        assert_err(
            Runs,
            "run_id IN ('a' 'b')",
            &["expected ',' or ')'", "position 15"],
        );
        assert_err(
            Runs,
            "run_id IN 'a'",
            &["expected '(' to start a list", "position 10"],
        );
        assert_err(Runs, "run_id IN ('a'", &["end of input", "position 14"]);
        assert_err(Runs, "run_id IN", &["end of input"]);
    }

    // ---- boolean structure ----

    fn m(k: &str) -> Filter {
        c(metric(k), Op::Gt, Value::Number(0.0))
    }

    #[test]
    fn and_chain_is_flat() {
        assert_eq!(
            parse(Runs, "metrics.a > 0 AND metrics.b > 0 and metrics.c > 0"),
            Some(Filter::And(vec![m("a"), m("b"), m("c")]))
        );
    }

    #[test]
    fn and_binds_tighter_than_or() {
        assert_eq!(
            parse(Runs, "metrics.a > 0 AND metrics.b > 0 OR metrics.c > 0"),
            Some(Filter::Or(vec![Filter::And(vec![m("a"), m("b")]), m("c")]))
        );
        assert_eq!(
            parse(Runs, "metrics.a > 0 or metrics.b > 0 AnD metrics.c > 0"),
            Some(Filter::Or(vec![m("a"), Filter::And(vec![m("b"), m("c")])]))
        );
        assert_eq!(
            parse(Runs, "metrics.a > 0 OR metrics.b > 0 OR metrics.c > 0"),
            Some(Filter::Or(vec![m("a"), m("b"), m("c")]))
        );
    }

    #[test]
    fn parentheses_group_and_flatten() {
        assert_eq!(
            parse(Runs, "metrics.a > 0 AND (metrics.b > 0 OR metrics.c > 0)"),
            Some(Filter::And(vec![m("a"), Filter::Or(vec![m("b"), m("c")])]))
        );
        assert_eq!(parse(Runs, "((metrics.a > 0))"), Some(m("a")));
        assert_eq!(
            parse(Runs, "(metrics.a > 0 AND metrics.b > 0) AND metrics.c > 0"),
            Some(Filter::And(vec![m("a"), m("b"), m("c")]))
        );
        assert_eq!(
            parse(Runs, "metrics.a > 0 OR (metrics.b > 0 OR (metrics.c > 0))"),
            Some(Filter::Or(vec![m("a"), m("b"), m("c")]))
        );
        assert_eq!(
            parse(
                Runs,
                "(metrics.a > 0 OR metrics.b > 0) AND (metrics.c > 0 OR metrics.d > 0)"
            ),
            Some(Filter::And(vec![
                Filter::Or(vec![m("a"), m("b")]),
                Filter::Or(vec![m("c"), m("d")])
            ]))
        );
        assert_eq!(
            parse(Runs, "(metrics.a>0)and(metrics.b>0)"),
            Some(Filter::And(vec![m("a"), m("b")]))
        );
    }

    #[test]
    fn structural_errors() {
        assert_err(
            Runs,
            "metrics.a > 0 AND",
            &["expected a comparison", "end of input", "position 17"],
        );
        assert_err(Runs, "metrics.a > 0 OR", &["end of input"]);
        assert_err(Runs, "AND", &["expected an identifier, found 'AND'"]);
        assert_err(
            Runs,
            "metrics.a > 0 AND AND metrics.b > 0",
            &["found 'AND'", "position 18"],
        );
        assert_err(
            Runs,
            "metrics.a > 0 metrics.b > 0",
            &["unexpected 'metrics.b'", "position 14"],
        );
        assert_err(Runs, "status = 'x';", &["unexpected ';'", "position 12"]);
        assert_err(Runs, "(metrics.a > 0", &["unclosed '('", "position 0"]);
        assert_err(Runs, "metrics.a > 0)", &["unmatched ')'", "position 13"]);
        assert_err(
            Runs,
            "()",
            &["expected an identifier, found ')'", "position 1"],
        );
        assert_err(
            Runs,
            "(metrics.a > 0 metrics.b > 0)",
            &["expected AND, OR or ')'", "position 15"],
        );
        assert_err(Runs, "metrics.a > 0 AND ()", &["position 19"]);
    }

    #[test]
    fn nesting_limit() {
        let ok = format!(
            "{}metrics.a > 0{}",
            "(".repeat(MAX_DEPTH),
            ")".repeat(MAX_DEPTH)
        );
        assert_eq!(parse(Runs, &ok), Some(m("a")));
        let deep = format!(
            "{}metrics.a > 0{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert_err(Runs, &deep, &["nested more than 100", "position 100"]);
        // Far deeper than any stack could handle recursively.
        let huge = "(".repeat(50_000);
        assert_err(Runs, &huge, &["nested"]);
    }

    #[test]
    fn length_limit() {
        let clause = "metrics.a > 0 AND ";
        let mut long = clause.repeat(MAX_INPUT_CHARS / clause.len() + 1);
        long.push_str("metrics.a > 0");
        assert_err(Runs, &long, &["longer than the limit", "position 100000"]);
        // Error messages echo only a prefix of the input.
        assert!(err(Runs, &long).len() < 1000);
        // Just under the limit works.
        let mut fits = clause.repeat((MAX_INPUT_CHARS - 20) / clause.len());
        fits.push_str("metrics.a > 0");
        assert!(matches!(parse(Runs, &fits), Some(Filter::And(v)) if v.len() > 1000));
    }

    #[test]
    fn error_message_shape() {
        assert_eq!(
            err(Runs, "metrics.x >> 1"),
            "Invalid filter 'metrics.x >> 1': unexpected '>' at position 11. \
             Expected a numeric value for metric 'x'"
        );
        assert_eq!(
            err(Runs, "metrics.x LIKE 'a'"),
            "Invalid filter 'metrics.x LIKE 'a'': invalid comparator 'LIKE' for metric 'x' \
             at position 10. Valid comparators are '=', '!=', '>', '>=', '<', '<='"
        );
        // Positions count characters, not bytes.
        assert_err(Runs, "tags.é = 'ü' >", &["unexpected '>'", "position 13"]);
    }

    // ---- experiments ----

    #[test]
    fn experiment_filters() {
        assert_eq!(
            parse(Exp, "name = 'x'"),
            Some(c(Field::Attr(Attribute::Name), Op::Eq, s("x")))
        );
        assert_eq!(
            parse(Exp, "attribute.name LIKE 'x%'"),
            Some(c(Field::Attr(Attribute::Name), Op::Like, s("x%")))
        );
        assert_eq!(
            parse(Exp, "experiment_id IN ('1', '2')"),
            Some(c(
                Field::Attr(Attribute::ExperimentId),
                Op::In,
                list(&["1", "2"])
            ))
        );
        assert_eq!(
            parse(Exp, "creation_time > 100"),
            Some(c(
                Field::Attr(Attribute::CreationTime),
                Op::Gt,
                Value::Number(100.0)
            ))
        );
        assert_eq!(
            parse(Exp, "last_update_time <= 100"),
            Some(c(
                Field::Attr(Attribute::LastUpdateTime),
                Op::Le,
                Value::Number(100.0)
            ))
        );
        assert_eq!(
            parse(Exp, "tags.a IS NULL OR tag.b ILIKE 'x'"),
            Some(Filter::Or(vec![
                c(tag("a"), Op::IsNull, Value::None),
                c(tag("b"), Op::ILike, s("x"))
            ]))
        );
        assert_err(
            Exp,
            "metrics.x > 1",
            &["entity type 'metrics' is not supported", "experiments"],
        );
        assert_err(Exp, "params.x = 'a'", &["not supported"]);
        assert_err(Exp, "datasets.name = 'a'", &["not supported"]);
        assert_err(Exp, "name IS NULL", &["invalid comparator 'IS NULL'"]);
        assert_err(Exp, "name > 'a'", &["invalid comparator '>'"]);
        assert_err(Exp, "creation_time = '1'", &["expected a numeric value"]);
        assert_err(
            Exp,
            "experiment_id = 1",
            &["expected a quoted string value"],
        );
        assert_err(
            Exp,
            "run_id = 'x'",
            &["invalid attribute key 'run_id'", "'experiment_id'"],
        );
        assert_err(Exp, "lifecycle_stage = 'x'", &["invalid attribute key"]);
    }

    // ---- logged models ----

    #[test]
    fn registry_filters() {
        use SearchKind::{ModelVersions as Mv, RegisteredModels as Rm};
        assert_eq!(
            parse(Rm, "name LIKE 'a%'"),
            Some(c(Field::Attr(Attribute::Name), Op::Like, s("a%")))
        );
        assert_eq!(
            parse(Rm, "tags.`mlflow.prompt.is_prompt` != 'true'"),
            Some(c(tag("mlflow.prompt.is_prompt"), Op::Ne, s("true")))
        );
        assert_err(Rm, "run_id = 'x'", &["invalid attribute key 'run_id'"]);
        assert_err(Rm, "tags.a IS NULL", &["invalid comparator 'IS NULL'"]);
        assert_err(Rm, "metrics.a > 1", &["not supported in filters"]);
        assert_eq!(
            parse(Mv, "version_number >= 2"),
            Some(c(
                Field::Attr(Attribute::VersionNumber),
                Op::Ge,
                Value::Number(2.0)
            ))
        );
        assert_eq!(
            parse(Mv, "run_id IN ('a', 'b')"),
            Some(c(Field::Attr(Attribute::RunId), Op::In, list(&["a", "b"])))
        );
        assert_eq!(
            parse(Mv, "source_path = 's3://x'"),
            Some(c(Field::Attr(Attribute::SourcePath), Op::Eq, s("s3://x")))
        );
        assert_err(Mv, "version_number = 'x'", &["numeric value"]);
        assert_eq!(
            order(Mv, "version_number DESC"),
            Some(OrderBy {
                field: Field::Attr(Attribute::VersionNumber),
                ascending: false
            })
        );
        assert_eq!(
            order(Rm, "timestamp DESC").map(|o| o.field),
            Some(Field::Attr(Attribute::LastUpdateTime))
        );
        assert!(order(Rm, "version_number").is_none());
        assert!(order(Rm, "tags.a").is_none());
    }

    #[test]
    fn logged_model_filters() {
        let strings = [
            ("name", Attribute::Name),
            ("model_id", Attribute::ModelId),
            ("model_type", Attribute::ModelType),
            ("status", Attribute::Status),
            ("source_run_id", Attribute::SourceRunId),
            ("experiment_id", Attribute::ExperimentId),
        ];
        for (n, a) in strings {
            let f = format!("attributes.{n} != 'v'");
            assert_eq!(
                parse(Lm, &f),
                Some(c(Field::Attr(a), Op::Ne, s("v"))),
                "{f}"
            );
        }
        let numbers = [
            ("creation_timestamp", Attribute::CreationTime),
            ("creation_time", Attribute::CreationTime),
            ("last_updated_timestamp", Attribute::LastUpdateTime),
            ("last_updated_time", Attribute::LastUpdateTime),
        ];
        for (n, a) in numbers {
            let f = format!("{n} < 10");
            assert_eq!(
                parse(Lm, &f),
                Some(c(Field::Attr(a), Op::Lt, Value::Number(10.0))),
                "{f}"
            );
        }
        assert_eq!(
            parse(
                Lm,
                "metrics.acc >= 0.9 AND params.lr = '0.1' AND tags.t LIKE 'x'"
            ),
            Some(Filter::And(vec![
                c(metric("acc"), Op::Ge, Value::Number(0.9)),
                c(param("lr"), Op::Eq, s("0.1")),
                c(tag("t"), Op::Like, s("x")),
            ]))
        );
        assert_err(Lm, "tags.t IS NULL", &["invalid comparator 'IS NULL'"]);
        assert_err(Lm, "params.p IN ('a')", &["invalid comparator 'IN'"]);
        assert_err(
            Lm,
            "datasets.name = 'x'",
            &["not supported", "logged models"],
        );
        assert_err(Lm, "metrics.acc = 'x'", &["expected a numeric value"]);
        assert_err(
            Lm,
            "run_id = 'x'",
            &["invalid attribute key 'run_id'", "'model_id'"],
        );
        assert_err(Lm, "name > 'x'", &["invalid comparator '>'"]);
    }

    // ---- order_by ----

    #[test]
    fn order_by_runs() {
        let cases = [
            ("metrics.loss", metric("loss"), true),
            ("metrics.loss DESC", metric("loss"), false),
            ("metrics.loss desc", metric("loss"), false),
            ("metrics.loss Asc", metric("loss"), true),
            ("  metrics.loss   ASC  ", metric("loss"), true),
            ("metric.`a b` DESC", metric("a b"), false),
            ("metrics.\"a.b\"", metric("a.b"), true),
            ("params.p", param("p"), true),
            ("tags.`mlflow.runName` DESC", tag("mlflow.runName"), false),
            ("start_time DESC", Field::Attr(Attribute::StartTime), false),
            ("created", Field::Attr(Attribute::StartTime), true),
            ("Created DESC", Field::Attr(Attribute::StartTime), false),
            ("attributes.run_name", Field::Attr(Attribute::RunName), true),
            ("attr.end_time", Field::Attr(Attribute::EndTime), true),
            ("run_id", Field::Attr(Attribute::RunId), true),
            ("status", Field::Attr(Attribute::Status), true),
            ("artifact_uri", Field::Attr(Attribute::ArtifactUri), true),
            ("user_id", Field::Attr(Attribute::UserId), true),
        ];
        for (src, field, ascending) in cases {
            assert_eq!(
                order(Runs, src),
                Some(OrderBy { field, ascending }),
                "{src}"
            );
        }
        let many = parse_order_by(
            Runs,
            &["metrics.a DESC".to_string(), "start_time".to_string()],
        );
        assert!(matches!(many, Ok(v) if v.len() == 2));
        assert!(matches!(parse_order_by(Runs, &[]), Ok(v) if v.is_empty()));
    }

    #[test]
    fn order_by_errors() {
        let e = order_err(Runs, "metrics.x up");
        assert!(
            e.starts_with("Invalid order_by clause 'metrics.x up'"),
            "{e}"
        );
        assert!(
            e.contains("invalid ordering key 'up' at position 10"),
            "{e}"
        );
        assert!(order_err(Runs, "metrics.x DESC DESC").contains("position 15"));
        assert!(order_err(Runs, "").contains("empty order_by clause at position 0"));
        assert!(order_err(Runs, "   ").contains("empty"));
        assert!(order_err(Runs, "datasets.name").contains("not supported in order_by"));
        assert!(order_err(Runs, "`run name`").contains("invalid attribute key 'run name'"));
        assert!(order_err(Runs, "run name").contains("invalid attribute key 'run'"));
        assert!(order_err(Runs, "run_name name").contains("invalid ordering key 'name'"));
        assert!(order_err(Runs, "experiment_id").contains("invalid attribute key"));
        assert!(order_err(Runs, "DESC").contains("invalid attribute key 'DESC'"));
        assert!(order_err(Runs, "metrics.x > 1").contains("invalid ordering key '>'"));
        assert!(order_err(Runs, "(metrics.x)").contains("expected an identifier"));
        assert!(order_err(Runs, "'start_time'").contains("expected an identifier"));
        assert!(order_err(Runs, "metrics.`x").contains("unterminated"));
        // One bad clause fails the whole list.
        let res = parse_order_by(Runs, &["metrics.a".to_string(), "bogus".to_string()]);
        assert!(matches!(res, Err(CoreError::InvalidParameter(m)) if m.contains("'bogus'")));
    }

    #[test]
    fn order_by_experiments() {
        for (src, a) in [
            ("name", Attribute::Name),
            ("experiment_id", Attribute::ExperimentId),
            ("creation_time", Attribute::CreationTime),
            ("last_update_time", Attribute::LastUpdateTime),
        ] {
            assert_eq!(
                order(Exp, &format!("{src} DESC")),
                Some(OrderBy {
                    field: Field::Attr(a),
                    ascending: false
                })
            );
        }
        assert!(order_err(Exp, "tags.x").contains("not supported in order_by"));
        assert!(order_err(Exp, "metrics.x").contains("not supported"));
        assert!(order_err(Exp, "start_time").contains("invalid attribute key"));
    }

    #[test]
    fn order_by_logged_models() {
        for (src, a) in [
            ("name", Attribute::Name),
            ("model_id", Attribute::ModelId),
            ("model_type", Attribute::ModelType),
            ("status", Attribute::Status),
            ("source_run_id", Attribute::SourceRunId),
            ("creation_timestamp", Attribute::CreationTime),
            ("creation_time", Attribute::CreationTime),
            ("last_updated_timestamp", Attribute::LastUpdateTime),
        ] {
            assert_eq!(
                order(Lm, src),
                Some(OrderBy {
                    field: Field::Attr(a),
                    ascending: true
                }),
                "{src}"
            );
        }
        assert_eq!(
            order(Lm, "metrics.acc DESC"),
            Some(OrderBy {
                field: metric("acc"),
                ascending: false
            })
        );
        assert!(order_err(Lm, "params.p").contains("not supported"));
        assert!(order_err(Lm, "tags.t").contains("not supported"));
    }

    // ---- robustness ----

    #[test]
    fn never_panics_on_odd_input() {
        let odd = [
            "'",
            "\"",
            "`",
            "''",
            "`",
            "(",
            ")",
            "((",
            "))",
            ",",
            ".",
            "-",
            "+",
            "!",
            "=",
            "<",
            ">",
            "==",
            "<>",
            "IS",
            "NOT",
            "IN",
            "NULL",
            "OR",
            "AND",
            "a.",
            ".a",
            "a..b",
            "a.'",
            "metrics.",
            "metrics.x >",
            "metrics.x > 1 AND (",
            "tags.x IN (",
            "tags.x IN ('a'",
            "tags.x IN ('a',",
            "tags.x IS",
            "tags.x IS NOT",
            "tags.x NOT",
            "status = 'é",
            "status = 'é'é",
            "é",
            "🎉 = '🎉'",
            "tags.🎉 = '🎉'",
            "tags.`🎉` = \"🎉\"",
            "\u{0}",
            "tags.x = '\u{0}'",
            "\u{feff}status = 'x'",
            "status\u{a0}= 'x'",
            "metrics.x > 1e",
            "metrics.x > 1e+",
            "metrics.x > --1",
            "metrics.x > -.",
            "metrics.x > 1.e5",
            "metrics.x > ..5",
            "\\",
            "tags.x = '\\",
            "tags.x = '\\'",
            "tags.x = 'a\\\\",
            "status = 'x' OR",
            "OR status = 'x'",
            "(status = 'x'))",
            "((status = 'x')",
            "a = 'b' = 'c'",
            "metrics.x > 1 > 2",
            "status IN ('a') IN ('b')",
            "`",
            "``",
            "```",
            "`a``",
            "params.\"\"\"",
            "tags.x = ''''",
            "tags.x = '''",
            "attributes.`run name` = 'a'",
            "run. = 'x'",
            "datasets.`` = 'x'",
            "x'y'",
            "1abc = 2",
            "metrics.x > 99999999999999999999999999999999999999999999999999999",
            "metrics.x < -1e308",
            "metrics.x < 1e309",
            "ılike",
            "tags.x İLIKE 'a'",
            "tags.x ＝ 'a'",
            "tags.x = 'a' ＡＮＤ tags.y = 'b'",
        ];
        let kinds = [Runs, Exp, Lm];
        for input in odd {
            for kind in kinds {
                // Only checks that nothing panics and errors carry a position.
                if let Err(e) = parse_filter(kind, input) {
                    assert!(
                        matches!(&e, CoreError::InvalidParameter(m) if m.contains("at position")),
                        "{input:?}: {e:?}"
                    );
                }
                if let Err(e) = parse_order_by(kind, &[input.to_string()]) {
                    assert!(
                        matches!(&e, CoreError::InvalidParameter(m) if m.contains("at position")),
                        "{input:?}: {e:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn never_panics_on_generated_input() {
        // Deterministic pseudo-random strings over an alphabet of grammar fragments,
        // including multibyte characters, to shake out index and boundary bugs.
        let alphabet = [
            "(",
            ")",
            "'",
            "\"",
            "`",
            ",",
            ".",
            "-",
            "+",
            "=",
            "!",
            "<",
            ">",
            " ",
            "e",
            "1",
            "metrics",
            "params",
            "tags",
            "attributes",
            "datasets",
            "name",
            "status",
            "run_id",
            "start_time",
            "AND",
            "OR",
            "NOT",
            "IN",
            "IS",
            "NULL",
            "LIKE",
            "DESC",
            "é",
            "🎉",
            "世",
            "\\",
            "\u{0}",
            "\t",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..5_000 {
            let mut input = String::new();
            // xorshift64: good enough to vary lengths and picks, and reproducible.
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let len = (next() % 16) as usize;
            for _ in 0..len {
                let pick = (next() % alphabet.len() as u64) as usize;
                input.push_str(alphabet.get(pick).copied().unwrap_or(" "));
            }
            for kind in [Runs, Exp, Lm] {
                let _ = parse_filter(kind, &input);
                let _ = parse_order_by(kind, std::slice::from_ref(&input));
            }
        }
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé...");
        assert_eq!(truncate("🎉🎉", 2), "🎉🎉");
        assert_eq!(truncate("", 0), "");
    }
}
