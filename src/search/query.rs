//! The event query language: parsing a query string into an expression tree, and compiling
//! that tree and the filter parameters ([`Filter`]) into a tantivy query. Also the time
//! parameter syntax ([`parse_time_param`]).
//!
//! # Query language
//!
//! ```text
//! query      = [ or_expr ]                       empty query matches every event
//! or_expr    = and_expr { "OR" and_expr }        OR binds looser than AND
//! and_expr   = unary { [ "AND" ] unary }          terms side by side mean AND
//! unary      = ( "NOT" | "-" ) unary | primary    "-" must touch its term: -timeout
//! primary    = "(" or_expr ")" | term
//! term       = word                               free text: timeout
//!            | phrase                             free text, words in this order: "connection reset"
//!            | field ":" value                    exact match: level:error, carrier:twilio
//!            | field ":" phrase                   exact match with spaces: name:"call started"
//!            | field ":" op number                metric range: latency_ms:>500, cost_usd:<=0.02
//!            | "timestamp:" op time               time range: timestamp:>=2026-11-21T10:00:00Z
//! op         = ">" | ">=" | "<" | "<="
//! phrase     = '"' { char | '\"' | '\\' } '"'
//! field      = letter or "_", then letters, digits, "_" or "."
//! ```
//!
//! - `AND`, `OR`, `NOT` are operators only in upper case; `and`/`or`/`not` are words.
//! - Free text (bare words and phrases) searches the event name, the error message, code and
//!   domain, the module and the string dimensions, case-insensitively. A word is split like the
//!   indexed text (on anything that is not a letter or digit), so `recognition_failed` matches the
//!   phrase "recognition failed". A word with no letters or digits matches everything.
//! - Exact-match fields (case-sensitive, whole value): the field catalogue's exact fields
//!   ([`crate::fields`], `Use::Exact`) by name, such as `product`, `platform`, `level`, `name`,
//!   `app_version`, `country_code`, `install_id`, `error_code`; older spellings are accepted
//!   (`country:US` = `country_code:US`). `level` accepts any level name clients use, in any case
//!   (`level:WARNING` = `level:warn`).
//! - Any other `name:value` is a dimension (`carrier:twilio` matches `dims.carrier`), and any
//!   other `name:>N` a metric (`latency_ms:>500`); `name:N` on a metric is equality. `dims.` and
//!   `metrics.` prefixes are accepted. A name that is neither a fixed field nor a dimension or
//!   metric present in the index is an error that lists the known names.
//! - `timestamp` takes only comparisons; the time is RFC 3339, a date (`2026-11-21`, UTC
//!   midnight), epoch milliseconds, `now`, or relative to now (`-24h`, `-7d`, `-30m`).
//! - Parentheses and negations nest at most [`MAX_QUERY_DEPTH`] deep; deeper is an error
//!   (`query nested deeper than 64 levels at position 130`), so no query can exhaust the stack.
//! - Syntax errors name the byte position: `unclosed quote at position 14`,
//!   `expected a value after "level:" at position 6`, `unknown field "lvel" at position 0; known: ...`.

use std::ops::Bound;

use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, ExistsQuery, Occur, PhraseQuery, Query, RangeQuery,
};
use tantivy::schema::Field;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Searcher, Term};

use super::schema::{escape_json_key, exact_field, IndexFields};
pub use super::timerange::{segments_in_range, time_range_query};
use super::whole_segment::term_query;
use super::{Filter, SearchError};
use crate::fields::{EventField, Use};
use crate::model::Level;

// ---------------------------------------------------------------------------------------------
// Syntax tree

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    fn as_str(self) -> &'static str {
        match self {
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
        }
    }
}

/// A parsed query. Positions are byte offsets into the query string.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Every event (the empty query).
    All,
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// A bare word (`phrase == false`) or a quoted phrase.
    Text {
        text: String,
        phrase: bool,
        position: usize,
    },
    /// `field:value`
    Match {
        field: String,
        field_pos: usize,
        value: String,
        value_pos: usize,
    },
    /// `field:>value` etc.
    Compare {
        field: String,
        field_pos: usize,
        op: CmpOp,
        value: String,
        value_pos: usize,
    },
}

fn syntax_error(message: impl Into<String>, position: usize) -> SearchError {
    SearchError::Query {
        message: message.into(),
        position,
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Not,
    Minus,
    Word(String),
    Phrase(String),
    Match {
        field: String,
        value: String,
        value_pos: usize,
    },
    Compare {
        field: String,
        op: CmpOp,
        value: String,
        value_pos: usize,
    },
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
}

pub(crate) fn is_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

fn ends_word(c: char) -> bool {
    c.is_whitespace() || c == '(' || c == ')' || c == '"'
}

/// Reads a quoted string starting at the `"` at byte `start`; returns the unescaped text and the
/// byte offset after the closing quote.
fn read_quoted(input: &str, start: usize) -> Result<(String, usize), SearchError> {
    let mut text = String::new();
    let mut escaped = false;
    for (offset, c) in input[start + 1..].char_indices() {
        if escaped {
            text.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Ok((text, start + 1 + offset + 1));
        } else {
            text.push(c);
        }
    }
    Err(syntax_error(
        format!("unclosed quote at position {start}"),
        start,
    ))
}

fn lex(input: &str) -> Result<Vec<Token>, SearchError> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(c) = input[i..].chars().next() {
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        let start = i;
        match c {
            '(' => {
                tokens.push(Token {
                    tok: Tok::LParen,
                    pos: start,
                });
                i += 1;
            }
            ')' => {
                tokens.push(Token {
                    tok: Tok::RParen,
                    pos: start,
                });
                i += 1;
            }
            '"' => {
                let (text, end) = read_quoted(input, start)?;
                tokens.push(Token {
                    tok: Tok::Phrase(text),
                    pos: start,
                });
                i = end;
            }
            '-' => {
                let next = input[i + 1..].chars().next();
                match next {
                    Some(n) if !n.is_whitespace() && n != ')' && n != '-' => {
                        tokens.push(Token {
                            tok: Tok::Minus,
                            pos: start,
                        });
                        i += 1;
                    }
                    _ => {
                        return Err(syntax_error(
                            format!("expected a term after \"-\" at position {}", start + 1),
                            start + 1,
                        ))
                    }
                }
            }
            _ => {
                let end = input[i..]
                    .char_indices()
                    .find(|(_, c)| ends_word(*c))
                    .map(|(o, _)| i + o)
                    .unwrap_or(input.len());
                let word = &input[start..end];
                i = end;
                let tok = match word {
                    "AND" => Tok::And,
                    "OR" => Tok::Or,
                    "NOT" => Tok::Not,
                    _ => match word.split_once(':') {
                        Some((field, rest)) if is_field_name(field) => {
                            let value_pos = start + field.len() + 1;
                            lex_field_value(input, field, rest, value_pos, &mut i)?
                        }
                        _ => Tok::Word(word.to_string()),
                    },
                };
                tokens.push(Token { tok, pos: start });
            }
        }
    }
    Ok(tokens)
}

/// Lexes what follows `field:`; `rest` is the rest of the word, `end` the lexer position (moved
/// past a quoted value).
fn lex_field_value(
    input: &str,
    field: &str,
    rest: &str,
    value_pos: usize,
    end: &mut usize,
) -> Result<Tok, SearchError> {
    let ops = [
        (">=", CmpOp::Ge),
        ("<=", CmpOp::Le),
        (">", CmpOp::Gt),
        ("<", CmpOp::Lt),
    ];
    for (text, op) in ops {
        if let Some(operand) = rest.strip_prefix(text) {
            let operand_pos = value_pos + text.len();
            if operand.is_empty() {
                return Err(syntax_error(
                    format!("expected a value after \"{field}:{text}\" at position {operand_pos}"),
                    operand_pos,
                ));
            }
            return Ok(Tok::Compare {
                field: field.to_string(),
                op,
                value: operand.to_string(),
                value_pos: operand_pos,
            });
        }
    }
    if rest.is_empty() {
        if input[value_pos..].starts_with('"') {
            let (value, after) = read_quoted(input, value_pos)?;
            *end = after;
            return Ok(Tok::Match {
                field: field.to_string(),
                value,
                value_pos,
            });
        }
        return Err(syntax_error(
            format!("expected a value after \"{field}:\" at position {value_pos}"),
            value_pos,
        ));
    }
    Ok(Tok::Match {
        field: field.to_string(),
        value: rest.to_string(),
        value_pos,
    })
}

// ---------------------------------------------------------------------------------------------
// Parser

/// How deep parentheses and negations (`NOT`, `-`) may nest. The parser, the compiler and the
/// tree's drop all recurse once per level, so the limit bounds their stack use.
pub const MAX_QUERY_DEPTH: usize = 64;

struct Parser<'a> {
    tokens: Vec<Token>,
    next: usize,
    input: &'a str,
    /// Open parentheses and negations around the current position.
    depth: usize,
}

fn describe(tok: &Tok) -> &'static str {
    match tok {
        Tok::LParen => "\"(\"",
        Tok::RParen => "\")\"",
        Tok::And => "\"AND\"",
        Tok::Or => "\"OR\"",
        Tok::Not => "\"NOT\"",
        Tok::Minus => "\"-\"",
        _ => "a term",
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next)
    }

    fn bump(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.next).cloned();
        if token.is_some() {
            self.next += 1;
        }
        token
    }

    /// Enters one more level of nesting (at `pos`), failing past [`MAX_QUERY_DEPTH`]; the
    /// caller leaves it with `self.depth -= 1`.
    fn descend(&mut self, pos: usize) -> Result<(), SearchError> {
        if self.depth >= MAX_QUERY_DEPTH {
            return Err(syntax_error(
                format!("query nested deeper than {MAX_QUERY_DEPTH} levels at position {pos}"),
                pos,
            ));
        }
        self.depth += 1;
        Ok(())
    }

    fn starts_term(tok: &Tok) -> bool {
        !matches!(tok, Tok::RParen | Tok::And | Tok::Or)
    }

    /// Fails unless a term follows the operator `op` (at `pos`).
    fn expect_term_after(&self, op: &Tok, pos: usize) -> Result<(), SearchError> {
        match self.peek() {
            Some(t) if Self::starts_term(&t.tok) => Ok(()),
            Some(t) => Err(syntax_error(
                format!(
                    "expected a term after {} but found {} at position {}",
                    describe(op),
                    describe(&t.tok),
                    t.pos
                ),
                t.pos,
            )),
            None => Err(syntax_error(
                format!(
                    "expected a term after {} at position {}",
                    describe(op),
                    self.input.len()
                ),
                pos,
            )),
        }
    }

    fn parse_or(&mut self) -> Result<Expr, SearchError> {
        let mut items = vec![self.parse_and()?];
        while let Some(Token { tok: Tok::Or, pos }) = self.peek().cloned() {
            self.bump();
            self.expect_term_after(&Tok::Or, pos)?;
            items.push(self.parse_and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn parse_and(&mut self) -> Result<Expr, SearchError> {
        let mut items = vec![self.parse_unary()?];
        loop {
            match self.peek().cloned() {
                Some(Token { tok: Tok::And, pos }) => {
                    self.bump();
                    self.expect_term_after(&Tok::And, pos)?;
                    items.push(self.parse_unary()?);
                }
                Some(t) if Self::starts_term(&t.tok) => items.push(self.parse_unary()?),
                _ => break,
            }
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn parse_unary(&mut self) -> Result<Expr, SearchError> {
        match self.peek().cloned() {
            Some(Token {
                tok: tok @ (Tok::Not | Tok::Minus),
                pos,
            }) => {
                self.bump();
                self.expect_term_after(&tok, pos)?;
                self.descend(pos)?;
                let inner = self.parse_unary()?;
                self.depth -= 1;
                Ok(Expr::Not(Box::new(inner)))
            }
            _ => self.parse_primary(),
        }
    }

    fn parse_primary(&mut self) -> Result<Expr, SearchError> {
        let Some(token) = self.bump() else {
            return Err(syntax_error(
                format!("expected a term at position {}", self.input.len()),
                self.input.len(),
            ));
        };
        match token.tok {
            Tok::LParen => {
                if let Some(Token {
                    tok: Tok::RParen,
                    pos,
                }) = self.peek()
                {
                    return Err(syntax_error(
                        format!("empty parentheses at position {}", token.pos),
                        *pos,
                    ));
                }
                self.descend(token.pos)?;
                let inner = self.parse_or()?;
                self.depth -= 1;
                match self.bump() {
                    Some(Token {
                        tok: Tok::RParen, ..
                    }) => Ok(inner),
                    _ => Err(syntax_error(
                        format!(
                            "unclosed parenthesis at position {} (missing \")\")",
                            token.pos
                        ),
                        token.pos,
                    )),
                }
            }
            Tok::Word(text) => Ok(Expr::Text {
                text,
                phrase: false,
                position: token.pos,
            }),
            Tok::Phrase(text) => Ok(Expr::Text {
                text,
                phrase: true,
                position: token.pos,
            }),
            Tok::Match {
                field,
                value,
                value_pos,
            } => Ok(Expr::Match {
                field,
                field_pos: token.pos,
                value,
                value_pos,
            }),
            Tok::Compare {
                field,
                op,
                value,
                value_pos,
            } => Ok(Expr::Compare {
                field,
                field_pos: token.pos,
                op,
                value,
                value_pos,
            }),
            other => Err(syntax_error(
                format!(
                    "expected a term but found {} at position {}",
                    describe(&other),
                    token.pos
                ),
                token.pos,
            )),
        }
    }
}

/// Parses a query string into an expression (syntax only; field names are checked when the
/// expression is compiled against an index).
pub fn parse(input: &str) -> Result<Expr, SearchError> {
    let tokens = lex(input)?;
    if tokens.is_empty() {
        return Ok(Expr::All);
    }
    let mut parser = Parser {
        tokens,
        next: 0,
        input,
        depth: 0,
    };
    let expr = parser.parse_or()?;
    if let Some(extra) = parser.peek() {
        return Err(syntax_error(
            format!(
                "unexpected {} at position {} (no matching \"(\")",
                describe(&extra.tok),
                extra.pos
            ),
            extra.pos,
        ));
    }
    Ok(expr)
}

// ---------------------------------------------------------------------------------------------
// Compilation to tantivy queries

/// What a query is compiled against: the schema's fields, the current searcher (to know which
/// dimensions and metrics exist), the full-text tokenizer and the current time.
pub struct QueryContext<'a> {
    pub fields: &'a IndexFields,
    pub searcher: &'a Searcher,
    pub tokenizer: TextAnalyzer,
    pub now_ms: i64,
    /// The index's smallest and largest timestamp (see [`super::timestamp_bounds`]).
    pub time_bounds: Option<(i64, i64)>,
    /// The filter's time range only skips segments wholly outside it; the collector checks
    /// each document's timestamp itself (scans, which read every timestamp anyway).
    pub time_checked_by_collector: bool,
}

/// Whether a dimension or metric column named `root.key` exists in any segment.
fn has_json_column(searcher: &Searcher, root: &str, key: &str) -> Result<bool, SearchError> {
    let name = format!("{root}.{}", escape_json_key(key));
    for segment in searcher.segment_readers() {
        if !segment
            .fast_fields()
            .dynamic_column_handles(&name)?
            .is_empty()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Every field name a query may use: fixed fields, then dimensions and metrics in the index.
fn known_field_names(searcher: &Searcher) -> Vec<String> {
    let mut names: Vec<String> = EventField::with_use(Use::Exact)
        .map(|f| f.name().to_string())
        .collect();
    names.push("timestamp".to_string());
    let mut dynamic = std::collections::BTreeSet::new();
    for segment in searcher.segment_readers() {
        // Only on the error path: listing JSON paths walks the dimension term dictionary.
        if let Ok(metadata) = segment.fields_metadata() {
            for field in metadata {
                for root in ["dims.", "metrics."] {
                    if let Some(key) = field.field_name.strip_prefix(root) {
                        dynamic.insert(key.replace('\\', ""));
                    }
                }
            }
        }
    }
    names.extend(dynamic);
    names
}

fn all_query() -> Box<dyn Query> {
    Box::new(AllQuery)
}

/// `NOT inner`: everything except `inner`.
fn negate(inner: Box<dyn Query>) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(vec![
        (Occur::Must, all_query()),
        (Occur::MustNot, inner),
    ]))
}

fn bounds_for(op: CmpOp, term: Term) -> (Bound<Term>, Bound<Term>) {
    match op {
        CmpOp::Gt => (Bound::Excluded(term), Bound::Unbounded),
        CmpOp::Ge => (Bound::Included(term), Bound::Unbounded),
        CmpOp::Lt => (Bound::Unbounded, Bound::Excluded(term)),
        CmpOp::Le => (Bound::Unbounded, Bound::Included(term)),
    }
}

/// A JSON term for `root.key`, without a value yet.
fn json_path_term(field: Field, key: &str) -> Term {
    Term::from_field_json_path(field, &escape_json_key(key), false)
}

fn metric_term(fields: &IndexFields, key: &str, value: f64) -> Term {
    let mut term = json_path_term(fields.metrics, key);
    term.append_type_and_fast_value(value);
    term
}

/// Matches the events whose `field` (held in `index_field`) is exactly `value`: a term of the
/// exact field, or for a span id in the canonical form a scan of its number column.
fn exact_query(
    fields: &IndexFields,
    index_field: Field,
    field: EventField,
    value: &str,
) -> Box<dyn Query> {
    match fields.id_number(field, value) {
        Some((column, number)) => {
            let term = Term::from_field_u64(column, number);
            Box::new(RangeQuery::new(
                Bound::Included(term.clone()),
                Bound::Included(term),
            ))
        }
        None => term_query(Term::from_field_text(index_field, value)),
    }
}

/// Matches documents with `seq < below`.
pub fn seq_range_query(fields: &IndexFields, seqs: std::ops::Range<u64>) -> Box<dyn Query> {
    Box::new(RangeQuery::new(
        Bound::Included(Term::from_field_u64(fields.seq, seqs.start)),
        Bound::Excluded(Term::from_field_u64(fields.seq, seqs.end)),
    ))
}

fn parse_level(text: &str, position: usize) -> Result<Level, SearchError> {
    Level::parse(text.trim()).ok_or_else(|| {
        syntax_error(
            format!(
                "unknown level \"{text}\" at position {position}; known: debug, info, warn, error, fatal"
            ),
            position,
        )
    })
}

enum Resolved {
    Exact(Field, EventField),
    Timestamp,
    Dim(String),
    Metric(String),
}

impl QueryContext<'_> {
    fn resolve(
        &self,
        name: &str,
        position: usize,
        comparison: bool,
    ) -> Result<Resolved, SearchError> {
        if let Some(field) = exact_field(name) {
            if let Some(index_field) = self.fields.exact(field) {
                return Ok(Resolved::Exact(index_field, field));
            }
        }
        if name == "timestamp" {
            return Ok(Resolved::Timestamp);
        }
        if let Some(key) = name.strip_prefix("dims.") {
            return Ok(Resolved::Dim(key.to_string()));
        }
        if let Some(key) = name.strip_prefix("metrics.") {
            return Ok(Resolved::Metric(key.to_string()));
        }
        let (first, second) = if comparison {
            ("metrics", "dims")
        } else {
            ("dims", "metrics")
        };
        for root in [first, second] {
            if has_json_column(self.searcher, root, name)? {
                return Ok(if root == "dims" {
                    Resolved::Dim(name.to_string())
                } else {
                    Resolved::Metric(name.to_string())
                });
            }
        }
        let known = known_field_names(self.searcher).join(", ");
        Err(syntax_error(
            format!("unknown field \"{name}\" at position {position}; known: {known}"),
            position,
        ))
    }

    fn parse_number(
        &self,
        field: &str,
        op: &str,
        value: &str,
        position: usize,
    ) -> Result<f64, SearchError> {
        value
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| {
                syntax_error(
                    format!(
                        "expected a number after \"{field}:{op}\" at position {position}, found \"{value}\""
                    ),
                    position,
                )
            })
    }

    fn parse_time(&self, op: &str, value: &str, position: usize) -> Result<i64, SearchError> {
        parse_time_param(value, self.now_ms).map_err(|message| {
            syntax_error(
                format!("after \"timestamp:{op}\" at position {position}: {message}"),
                position,
            )
        })
    }

    fn text_query(&mut self, text: &str) -> Box<dyn Query> {
        let mut terms = Vec::new();
        let mut stream = self.tokenizer.token_stream(text);
        while let Some(token) = stream.next() {
            terms.push(Term::from_field_text(self.fields.text, &token.text));
        }
        match terms.len() {
            0 => all_query(),
            1 => term_query(terms.remove(0)),
            _ => Box::new(PhraseQuery::new(terms)),
        }
    }

    /// Compiles a parsed expression into a tantivy query.
    pub fn compile(&mut self, expr: &Expr) -> Result<Box<dyn Query>, SearchError> {
        Ok(match expr {
            Expr::All => all_query(),
            Expr::Text { text, .. } => self.text_query(text),
            Expr::Not(inner) => negate(self.compile(inner)?),
            Expr::And(items) => {
                let mut clauses = Vec::with_capacity(items.len() + 1);
                for item in items {
                    match item {
                        Expr::Not(inner) => clauses.push((Occur::MustNot, self.compile(inner)?)),
                        other => clauses.push((Occur::Must, self.compile(other)?)),
                    }
                }
                if !clauses.iter().any(|(occur, _)| *occur == Occur::Must) {
                    clauses.push((Occur::Must, all_query()));
                }
                Box::new(BooleanQuery::new(clauses))
            }
            Expr::Or(items) => {
                let mut clauses = Vec::with_capacity(items.len());
                for item in items {
                    clauses.push((Occur::Should, self.compile(item)?));
                }
                Box::new(BooleanQuery::new(clauses))
            }
            Expr::Match {
                field,
                field_pos,
                value,
                value_pos,
            } => match self.resolve(field, *field_pos, false)? {
                Resolved::Exact(f, EventField::Level) => {
                    let level = parse_level(value, *value_pos)?;
                    term_query(Term::from_field_text(f, level.as_str()))
                }
                Resolved::Exact(f, field) => exact_query(self.fields, f, field, value),
                Resolved::Timestamp => {
                    return Err(syntax_error(
                        format!(
                            "\"timestamp\" needs a comparison (timestamp:>=2026-11-21T10:00:00Z) at position {field_pos}"
                        ),
                        *field_pos,
                    ))
                }
                Resolved::Dim(key) => {
                    let mut term = json_path_term(self.fields.dims, &key);
                    term.append_type_and_str(value);
                    term_query(term)
                }
                Resolved::Metric(key) => {
                    let number = self.parse_number(field, "", value, *value_pos)?;
                    let term = metric_term(self.fields, &key, number);
                    Box::new(RangeQuery::new(
                        Bound::Included(term.clone()),
                        Bound::Included(term),
                    ))
                }
            },
            Expr::Compare {
                field,
                field_pos,
                op,
                value,
                value_pos,
            } => match self.resolve(field, *field_pos, true)? {
                Resolved::Exact(_, field) => {
                    return Err(syntax_error(
                        format!(
                            "\"{field}\" is matched exactly; comparisons ({}) work on metrics and timestamp, at position {field_pos}",
                            op.as_str()
                        ),
                        *field_pos,
                    ))
                }
                Resolved::Dim(key) => {
                    return Err(syntax_error(
                        format!(
                            "\"{key}\" is a dimension; comparisons ({}) work on metrics and timestamp, at position {field_pos}",
                            op.as_str()
                        ),
                        *field_pos,
                    ))
                }
                Resolved::Timestamp => {
                    let ms = self.parse_time(op.as_str(), value, *value_pos)?;
                    let after = |ms: i64| ms.saturating_add(1);
                    let (from, to) = match op {
                        CmpOp::Gt => (Some(after(ms)), None),
                        CmpOp::Ge => (Some(ms), None),
                        CmpOp::Lt => (None, Some(ms)),
                        CmpOp::Le => (None, Some(after(ms))),
                    };
                    time_range_query(self.fields, from, to, self.time_bounds)
                }
                Resolved::Metric(key) => {
                    let number = self.parse_number(field, op.as_str(), value, *value_pos)?;
                    let (lower, upper) = bounds_for(*op, metric_term(self.fields, &key, number));
                    Box::new(RangeQuery::new(lower, upper))
                }
            },
        })
    }

    /// Compiles the filter parameters and the query string into one query.
    pub fn filter_query(&mut self, filter: &Filter) -> Result<Box<dyn Query>, SearchError> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (field, value) in filter.field_params() {
            let Some(index_field) = self.fields.exact(field).filter(|_| field.has(Use::Filter))
            else {
                return Err(SearchError::InvalidRequest(format!(
                    "cannot filter by \"{field}\""
                )));
            };
            if field == EventField::Level {
                clauses.push((Occur::Must, level_query(index_field, value)?));
            } else {
                clauses.push((
                    Occur::Must,
                    exact_query(self.fields, index_field, field, value),
                ));
            }
        }
        if let Some(products) = filter.scope.products() {
            let index_field = self.fields.exact(EventField::Product).ok_or_else(|| {
                SearchError::InvalidRequest("the index has no product field".into())
            })?;
            let should: Vec<(Occur, Box<dyn Query>)> = products
                .iter()
                .map(|p| {
                    (
                        Occur::Should,
                        term_query(Term::from_field_text(index_field, p)),
                    )
                })
                .collect();
            clauses.push((Occur::Must, Box::new(BooleanQuery::new(should))));
        }
        if !filter.present.is_empty() {
            let mut any: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for field in &filter.present {
                if !field.has(Use::Column) {
                    return Err(SearchError::InvalidRequest(format!(
                        "\"{field}\" is not kept as a column"
                    )));
                }
                let exists = ExistsQuery::new(field.name().to_string(), false);
                any.push((Occur::Should, Box::new(exists)));
            }
            clauses.push((Occur::Must, Box::new(BooleanQuery::new(any))));
        }
        if let (Some(from), Some(to)) = (filter.from_ms, filter.to_ms) {
            if from >= to {
                return Ok(Box::new(EmptyQuery));
            }
        }
        if filter.from_ms.is_some() || filter.to_ms.is_some() {
            clauses.push((
                Occur::Must,
                if self.time_checked_by_collector {
                    segments_in_range(filter.from_ms, filter.to_ms)
                } else {
                    time_range_query(self.fields, filter.from_ms, filter.to_ms, self.time_bounds)
                },
            ));
        }
        if let Some(q) = filter.q.as_deref() {
            let expr = parse(q)?;
            if expr != Expr::All {
                clauses.push((Occur::Must, self.compile(&expr)?));
            }
        }
        Ok(match clauses.len() {
            0 => all_query(),
            1 => clauses.remove(0).1,
            _ => Box::new(BooleanQuery::new(clauses)),
        })
    }
}

/// One level or a comma list of levels ("error,fatal", any names clients use); a list with no
/// level in it matches everything.
fn level_query(level_field: Field, levels: &str) -> Result<Box<dyn Query>, SearchError> {
    let mut should = Vec::new();
    for part in levels.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let level = Level::parse(part).ok_or_else(|| {
            SearchError::InvalidRequest(format!(
                "unknown level \"{part}\"; known: debug, info, warn, error, fatal"
            ))
        })?;
        should.push((
            Occur::Should,
            term_query(Term::from_field_text(level_field, level.as_str())),
        ));
    }
    Ok(if should.is_empty() {
        all_query()
    } else {
        Box::new(BooleanQuery::new(should))
    })
}

// ---------------------------------------------------------------------------------------------
// Time parameters

/// Parses a time parameter into epoch milliseconds: RFC 3339 (`2026-11-21T10:00:00Z`,
/// `2026-11-21T12:00:00+02:00`), a date (`2026-11-21`, UTC midnight), epoch milliseconds
/// (`1763719200000`), `now`, or a time relative to `now_ms`: `-` and a [`crate::timespan`]
/// duration (`-24h`, `-7d`, `-30m`, `-45s`, `-2w`).
pub fn parse_time_param(text: &str, now_ms: i64) -> Result<i64, String> {
    let t = text.trim();
    let invalid = || {
        format!(
            "invalid time \"{text}\": expected RFC 3339 (2026-11-21T10:00:00Z), a date (2026-11-21), \
             epoch milliseconds, \"now\", or a relative time like -24h, -7d, -30m"
        )
    };
    if t.eq_ignore_ascii_case("now") {
        return Ok(now_ms);
    }
    if let Some(relative) = t.strip_prefix('-') {
        return crate::timespan::parse_duration_ms(relative)
            .ok()
            .and_then(|d| now_ms.checked_sub(d))
            .ok_or_else(invalid);
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<i64>().map_err(|_| invalid());
    }
    if let Ok(dt) = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339) {
        return i64::try_from(dt.unix_timestamp_nanos() / 1_000_000).map_err(|_| invalid());
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(date) = time::Date::parse(t, &date_format) {
        let dt = date.midnight().assume_utc();
        return i64::try_from(dt.unix_timestamp_nanos() / 1_000_000).map_err(|_| invalid());
    }
    Err(invalid())
}
