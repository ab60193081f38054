//! GBNF text to rules: llama.cpp's grammar syntax (`name ::= alternatives`, `"literals"` with `\n \t \r \\ \"
//! \xHH \uHHHH \UHHHHHHHH` escapes, `[a-z]` and `[^...]` classes, `.`, `( )`, `* + ? {m} {m,} {m,n}`, `#` comments),
//! its repetitions rewritten into rules as llama.cpp rewrites them.

use std::collections::HashMap;

use super::{CharSet, GrammarError, Symbol};

/// Most repetitions a `{m,n}` may ask for; above it an upper bound is dropped, as llama.cpp drops it.
const MOST_REPEATS: u64 = 2000;
/// Most symbols the rules may hold once repetitions are written out, so no grammar takes unbounded memory.
const MOST_SYMBOLS: usize = 1 << 20;

/// The parsed rules: each one's name and alternatives (`None` while used but not yet defined).
#[derive(Debug, Default)]
pub(super) struct Rules {
    pub names: Vec<String>,
    pub alternatives: Vec<Option<Vec<Vec<Symbol>>>>,
    ids: HashMap<String, usize>,
    symbols: usize,
}

impl Rules {
    /// The id of the rule named `name`, made when first seen.
    fn id(&mut self, name: &str) -> usize {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.fresh(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    /// A new rule named `name`.
    fn fresh(&mut self, name: String) -> usize {
        self.names.push(name);
        self.alternatives.push(None);
        self.names.len() - 1
    }

    /// A rule made from part of `base`'s definition (a group or a repetition), named after it (not a name a
    /// grammar can use).
    fn generated(&mut self, base: &str) -> usize {
        self.fresh(format!("{base}#{}", self.names.len()))
    }

    fn define(&mut self, id: usize, alternatives: Vec<Vec<Symbol>>) -> Result<(), String> {
        self.symbols += alternatives.iter().map(|a| a.len() + 1).sum::<usize>();
        if self.symbols > MOST_SYMBOLS {
            return Err(format!(
                "the grammar's repetitions write out more than {MOST_SYMBOLS} symbols"
            ));
        }
        self.alternatives[id] = Some(alternatives);
        Ok(())
    }
}

/// Reads `text` into rules.
pub(super) fn parse(text: &str) -> Result<Rules, GrammarError> {
    let mut p = Parser {
        text,
        at: 0,
        rules: Rules::default(),
    };
    p.space(true);
    while p.at < text.len() {
        p.rule()
            .map_err(|message| GrammarError::at(text, p.at, message))?;
    }
    Ok(p.rules)
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
    rules: Rules,
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.text.as_bytes().get(self.at + ahead).copied()
    }

    /// Skips blanks and `#` comments, and line breaks too where `lines` (inside a group, or between rules).
    fn space(&mut self, lines: bool) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' => self.at += 1,
                b'\r' | b'\n' if lines => self.at += 1,
                b'#' => {
                    while self.peek().is_some_and(|b| b != b'\r' && b != b'\n') {
                        self.at += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn name(&mut self) -> Result<&str, String> {
        let start = self.at;
        while self.peek().is_some_and(is_name_byte) {
            self.at += 1;
        }
        match start == self.at {
            true => Err("expected a rule name".into()),
            false => Ok(&self.text[start..self.at]),
        }
    }

    /// `name ::= alternatives`, ended by a line break or the end of the text.
    fn rule(&mut self) -> Result<(), String> {
        let name = self.name()?.to_string();
        self.space(false);
        if !self.text[self.at..].starts_with("::=") {
            return Err(format!("expected ::= after the rule name {name:?}"));
        }
        self.at += 3;
        self.space(true);
        let id = self.rules.id(&name);
        if self.rules.alternatives[id].is_some() {
            return Err(format!("the rule {name:?} is defined twice"));
        }
        let alternatives = self.alternatives(&name, false)?;
        self.rules.define(id, alternatives)?;
        match self.peek() {
            None | Some(b'\n') | Some(b'\r') => {}
            Some(_) => return Err("expected a line break or the end after the rule".into()),
        }
        self.space(true);
        Ok(())
    }

    /// Sequences separated by `|`; `nested` inside a group (where line breaks are blanks).
    fn alternatives(&mut self, base: &str, nested: bool) -> Result<Vec<Vec<Symbol>>, String> {
        let mut alternatives = vec![self.sequence(base, nested)?];
        while self.peek() == Some(b'|') {
            self.at += 1;
            self.space(true);
            alternatives.push(self.sequence(base, nested)?);
        }
        Ok(alternatives)
    }

    fn sequence(&mut self, base: &str, nested: bool) -> Result<Vec<Symbol>, String> {
        let mut seq = Vec::new();
        // where the last item starts: what a repetition repeats
        let mut last = None;
        while let Some(b) = self.peek() {
            let start = seq.len();
            match b {
                b'"' => {
                    self.at += 1;
                    while self.peek() != Some(b'"') {
                        let c = self.char()?;
                        seq.push(Symbol::Chars(CharSet::one(c)));
                    }
                    self.at += 1;
                }
                b'[' => {
                    self.at += 1;
                    seq.push(Symbol::Chars(self.class()?));
                }
                b'.' => {
                    self.at += 1;
                    seq.push(Symbol::Chars(CharSet::any()));
                }
                b'(' => {
                    self.at += 1;
                    self.space(true);
                    let id = self.rules.generated(base);
                    let alternatives = self.alternatives(base, true)?;
                    self.rules.define(id, alternatives)?;
                    if self.peek() != Some(b')') {
                        return Err("expected ) to close the group".into());
                    }
                    self.at += 1;
                    seq.push(Symbol::Rule(id));
                }
                b'*' | b'+' | b'?' | b'{' => {
                    let Some(from) = last else {
                        return Err(format!("`{}` repeats nothing", b as char));
                    };
                    let (least, most) = self.repeats()?;
                    self.repeat(base, &mut seq, from, least, most)?;
                    self.space(nested);
                    continue;
                }
                b'<' | b'!' => {
                    return Err("token references (<...>, !<...>) are not supported".into())
                }
                b if is_name_byte(b) => {
                    let name = self.name()?.to_string();
                    seq.push(Symbol::Rule(self.rules.id(&name)));
                }
                _ => break,
            }
            last = Some(start);
            self.space(nested);
        }
        Ok(seq)
    }

    /// A class's ranges after its `[`, through its `]`.
    fn class(&mut self) -> Result<CharSet, String> {
        let negated = self.peek() == Some(b'^');
        if negated {
            self.at += 1;
        }
        let mut ranges = Vec::new();
        while self.peek() != Some(b']') {
            let lo = self.char()?;
            let hi = match (self.peek(), self.peek_at(1)) {
                (Some(b'-'), Some(next)) if next != b']' => {
                    self.at += 1;
                    self.char()?
                }
                _ => lo,
            };
            ranges.push((lo, hi));
        }
        self.at += 1;
        Ok(CharSet::new(negated, ranges))
    }

    /// One character of a literal or class, escapes read.
    fn char(&mut self) -> Result<u32, String> {
        let rest = &self.text[self.at..];
        let Some(c) = rest.chars().next() else {
            return Err("the text ends inside a literal or class".into());
        };
        if c != '\\' {
            self.at += c.len_utf8();
            return Ok(c as u32);
        }
        let escaped = rest[1..].chars().next();
        let hex = |digits: usize| {
            let h = rest
                .get(2..2 + digits)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
            h.and_then(|h| u32::from_str_radix(h, 16).ok())
                .map(|v| (v, 2 + digits))
                .ok_or_else(|| format!("\\{} needs {digits} hex digits", escaped.unwrap_or(' ')))
        };
        let (c, len) = match escaped {
            Some('x') => hex(2)?,
            Some('u') => hex(4)?,
            Some('U') => hex(8)?,
            Some('t') => (9, 2),
            Some('r') => (13, 2),
            Some('n') => (10, 2),
            Some(c @ ('\\' | '"' | '[' | ']' | '-')) => (c as u32, 2),
            _ => return Err(format!("unknown escape {:?}", &rest[..rest.len().min(2)])),
        };
        self.at += len;
        Ok(c)
    }

    /// The bounds of `*`, `+`, `?` or `{m}`, `{m,}`, `{m,n}` (`None`: no upper one).
    fn repeats(&mut self) -> Result<(u64, Option<u64>), String> {
        let b = self.peek().unwrap_or_default();
        self.at += 1;
        match b {
            b'*' => return Ok((0, None)),
            b'+' => return Ok((1, None)),
            b'?' => return Ok((0, Some(1))),
            _ => {}
        }
        self.space(true);
        let least = self.number()?;
        self.space(true);
        let most = match self.peek() {
            Some(b'}') => Some(least),
            Some(b',') => {
                self.at += 1;
                self.space(true);
                match self.peek() {
                    Some(b) if b.is_ascii_digit() => Some(self.number()?),
                    _ => None,
                }
            }
            _ => return Err("expected , or } in a repetition".into()),
        };
        self.space(true);
        if self.peek() != Some(b'}') {
            return Err("expected } to close the repetition".into());
        }
        self.at += 1;
        if least > MOST_REPEATS {
            return Err(format!("{least} repetitions; at most {MOST_REPEATS}"));
        }
        match most {
            Some(most) if most < least => Err(format!(
                "{{{least},{most}}}: the upper bound is below the lower"
            )),
            Some(most) if most > MOST_REPEATS => Ok((least, None)),
            most => Ok((least, most)),
        }
    }

    fn number(&mut self) -> Result<u64, String> {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        self.text[start..self.at]
            .parse()
            .map_err(|_| "expected a number in a repetition".into())
    }

    /// Rewrites `seq[from..]` (S) repeated `least` to `most` times: S written `least` times, then optional ones
    /// as rules (`R ::= S R |` without an upper bound; else `R1 ::= S |`, `Rk ::= S Rk-1 |`).
    fn repeat(
        &mut self,
        base: &str,
        seq: &mut Vec<Symbol>,
        from: usize,
        least: u64,
        most: Option<u64>,
    ) -> Result<(), String> {
        let item = seq.split_off(from);
        let budget = item
            .len()
            .saturating_mul(least.max(most.unwrap_or(1)) as usize);
        if self.rules.symbols.saturating_add(budget) > MOST_SYMBOLS {
            return Err(format!(
                "the grammar's repetitions write out more than {MOST_SYMBOLS} symbols"
            ));
        }
        for _ in 0..least {
            seq.extend_from_slice(&item);
        }
        let optional = match most {
            None => {
                let id = self.rules.generated(base);
                let again = [item.as_slice(), &[Symbol::Rule(id)]].concat();
                self.rules.define(id, vec![again, Vec::new()])?;
                Some(id)
            }
            Some(most) => {
                let mut previous: Option<usize> = None;
                for _ in least..most {
                    let id = self.rules.generated(base);
                    let mut once = item.clone();
                    once.extend(previous.map(Symbol::Rule));
                    self.rules.define(id, vec![once, Vec::new()])?;
                    previous = Some(id);
                }
                previous
            }
        };
        seq.extend(optional.map(Symbol::Rule));
        Ok(())
    }
}
