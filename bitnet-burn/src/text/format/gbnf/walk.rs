//! Following a [`Grammar`] byte by byte: the ways the text so far can go on are stacks of positions in the rules
//! (the top is the next symbol to match, the ones below where each enclosing rule goes on), as llama.cpp keeps
//! them; a character steps every stack whose top set holds it. A character split across tokens waits in
//! [`Partial`] while some top set holds a character it can still become.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Element, Grammar};
use crate::text::format::Machine;
use crate::text::tokenizer::SortedVocab;

/// The first bytes of a UTF-8 character: its bits so far, and how many continuation bytes it still needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Partial {
    bits: u32,
    left: u8,
    /// Its whole length in bytes.
    len: u8,
}

impl Partial {
    /// The code points it can still become (none where the start is overlong or a surrogate).
    fn span(self) -> Option<(u32, u32)> {
        let shift = 6 * u32::from(self.left);
        let (lo, hi) = (
            self.bits << shift,
            (self.bits << shift) | ((1 << shift) - 1),
        );
        let (least, most) = match self.len {
            2 => (0x80, 0x7ff),
            3 => (0x800, 0xffff),
            _ => (0x1_0000, 0x10_ffff),
        };
        let (lo, hi) = (lo.max(least), hi.min(most));
        let surrogate = (0xd800..=0xdfff).contains(&lo) && (0xd800..=0xdfff).contains(&hi);
        (lo <= hi && !surrogate).then_some((lo, hi))
    }
}

/// Where the text so far stands in the grammar.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Ways {
    /// Each a stack of element positions, top last; an empty one: the text can end here.
    stacks: Vec<Vec<u32>>,
    partial: Partial,
}

impl Grammar {
    /// Whether `text` is in the grammar's language.
    pub fn holds(&self, text: &str) -> bool {
        self.after(self.start(), text.as_bytes())
            .is_some_and(|ways| ways.complete())
    }

    /// Whether some text in the grammar's language starts with `bytes` (which may end inside a character).
    pub fn starts(&self, bytes: &[u8]) -> bool {
        self.after(self.start(), bytes).is_some()
    }

    /// The ways after `bytes` from `ways`, if any.
    fn after(&self, mut ways: Ways, bytes: &[u8]) -> Option<Ways> {
        for &b in bytes {
            ways = self.step(&ways, b)?;
        }
        Some(ways)
    }

    /// The ways at the start of the text.
    fn start(&self) -> Ways {
        let mut stacks = Vec::new();
        self.expand(vec![Vec::new()], Some(self.root as u32), &mut stacks);
        stacks.sort_unstable();
        stacks.dedup();
        Ways {
            stacks,
            partial: Partial::default(),
        }
    }

    /// Adds to `out` the stacks `stack` becomes once rule `rule` (if any) is opened on it: every rule on a
    /// top replaced by its alternatives until each top is a set of characters (or the stack is empty).
    fn expand(&self, pending: Vec<Vec<u32>>, rule: Option<u32>, out: &mut Vec<Vec<u32>>) {
        let mut work: Vec<(Vec<u32>, Option<u32>)> =
            pending.into_iter().map(|s| (s, rule)).collect();
        // a rule opened on a stack it was opened on before (a rule that comes back to itself last) adds nothing
        let mut opened: Vec<(Vec<u32>, u32)> = Vec::new();
        let mut taken = 0;
        while let Some((stack, open)) = work.pop() {
            taken += 1;
            if taken > MOST_EXPANSIONS {
                // a grammar this ambiguous here is not followed further: nothing fits (no request stalls on it)
                out.clear();
                return;
            }
            match open {
                Some(rule) => {
                    if opened.iter().any(|(s, r)| *r == rule && *s == stack) {
                        continue;
                    }
                    opened.push((stack.clone(), rule));
                    for &start in &self.starts[rule as usize] {
                        let mut s = stack.clone();
                        if self.elements[start as usize] != Element::End {
                            s.push(start);
                        }
                        work.push((s, None));
                    }
                }
                None => match stack.last().map(|&p| &self.elements[p as usize]) {
                    Some(Element::Rule(r)) => {
                        let r = *r;
                        let mut s = stack;
                        self.advance(&mut s);
                        work.push((s, Some(r)));
                    }
                    _ => out.push(stack),
                },
            }
        }
    }

    /// Moves a stack's top past its symbol: to the next one, or off the stack at the end of its alternative.
    fn advance(&self, stack: &mut Vec<u32>) {
        let next = stack.pop().expect("a position") + 1;
        if self.elements[next as usize] != Element::End {
            stack.push(next);
        }
    }

    /// The ways after character `c`, if any.
    fn step_char(&self, ways: &Ways, c: u32) -> Option<Vec<Vec<u32>>> {
        let mut moved = Vec::new();
        for stack in &ways.stacks {
            if let Some(Element::Chars(set)) = stack.last().map(|&p| &self.elements[p as usize]) {
                if set.contains(c) {
                    let mut s = stack.clone();
                    self.advance(&mut s);
                    moved.push(s);
                }
            }
        }
        let mut stacks = Vec::with_capacity(moved.len());
        self.expand(moved, None, &mut stacks);
        stacks.sort_unstable();
        stacks.dedup();
        (!stacks.is_empty()).then_some(stacks)
    }

    /// Whether some top set holds a character in `lo..=hi`.
    fn may_meet(&self, ways: &Ways, (lo, hi): (u32, u32)) -> bool {
        ways.stacks.iter().any(|stack| {
            matches!(stack.last().map(|&p| &self.elements[p as usize]),
                Some(Element::Chars(set)) if set.meets(lo, hi))
        })
    }

    /// The ways after byte `b`, if any.
    fn step(&self, ways: &Ways, b: u8) -> Option<Ways> {
        let p = ways.partial;
        let partial = if p.left == 0 {
            let (bits, len) = match b {
                0..=0x7f => {
                    let stacks = self.step_char(ways, u32::from(b))?;
                    return Some(Ways { stacks, partial: p });
                }
                0xc2..=0xdf => (b & 0x1f, 2),
                0xe0..=0xef => (b & 0x0f, 3),
                0xf0..=0xf4 => (b & 0x07, 4),
                _ => return None,
            };
            Partial {
                bits: u32::from(bits),
                left: len - 1,
                len,
            }
        } else {
            if b & 0xc0 != 0x80 {
                return None;
            }
            Partial {
                bits: p.bits << 6 | u32::from(b & 0x3f),
                left: p.left - 1,
                len: p.len,
            }
        };
        let span = partial.span()?;
        if partial.left == 0 {
            let stacks = self.step_char(ways, partial.bits)?;
            return Some(Ways {
                stacks,
                partial: Partial::default(),
            });
        }
        self.may_meet(ways, span).then(|| Ways {
            stacks: ways.stacks.clone(),
            partial,
        })
    }
}

impl Ways {
    /// The text can end here.
    fn complete(&self) -> bool {
        self.partial.left == 0 && self.stacks.iter().any(Vec::is_empty)
    }
}

/// Most stack expansions one character may take (an ambiguous grammar's stacks can multiply).
const MOST_EXPANSIONS: usize = 1 << 16;
/// Most distinct ways [`Steps`] keeps before starting over (each with a row of 256 steps: 4 MiB at most).
const MOST_KEPT: usize = 4096;
/// A step not taken yet, and a byte that does not fit.
const UNKNOWN: u32 = u32::MAX;
const DEAD: u32 = u32::MAX - 1;

/// The grammar's steps as they are taken, by number: the ways reached, and from each the ways after each byte.
/// Inside a JSON string nearly every byte comes back to the same ways, so a check of the whole vocabulary is
/// mostly lookups (as a DFA's) instead of stacks expanded again for every byte of every token.
#[derive(Debug, Default)]
struct Steps {
    ways: Vec<Ways>,
    numbers: HashMap<Ways, u32>,
    next: Vec<[u32; 256]>,
}

impl Steps {
    /// The number of `ways`, given one when first seen.
    fn number(&mut self, ways: Ways) -> u32 {
        if let Some(&n) = self.numbers.get(&ways) {
            return n;
        }
        let n = self.ways.len() as u32;
        self.numbers.insert(ways.clone(), n);
        self.ways.push(ways);
        self.next.push([UNKNOWN; 256]);
        n
    }

    /// The number of the ways after byte `b` from ways number `from`, or [`DEAD`].
    fn step(&mut self, grammar: &Grammar, from: u32, b: u8) -> u32 {
        let known = self.next[from as usize][b as usize];
        if known != UNKNOWN {
            return known;
        }
        let to = match grammar.step(&self.ways[from as usize], b) {
            Some(ways) => self.number(ways),
            None => DEAD,
        };
        self.next[from as usize][b as usize] = to;
        to
    }
}

/// The [`Machine`] of a grammar: the ways so far, the steps taken in earlier checks of the vocabulary, and the
/// ways after each byte of the token being checked, kept for the bytes the next token in byte order shares.
#[derive(Debug)]
pub struct GrammarWalker {
    grammar: Arc<Grammar>,
    ways: Ways,
    steps: Steps,
    levels: Vec<u32>,
}

impl GrammarWalker {
    /// At the start of the text.
    pub fn new(grammar: Arc<Grammar>) -> Self {
        Self {
            ways: grammar.start(),
            grammar,
            steps: Steps::default(),
            levels: Vec::new(),
        }
    }

    fn after(&self, bytes: &[u8]) -> Option<Ways> {
        self.grammar.after(self.ways.clone(), bytes)
    }
}

impl Machine for GrammarWalker {
    fn fits(&self, bytes: &[u8]) -> bool {
        self.after(bytes).is_some()
    }

    fn accept(&mut self, bytes: &[u8]) -> bool {
        self.after(bytes).map(|ways| self.ways = ways).is_some()
    }

    fn fitting(&mut self, vocab: &SortedVocab, logits: &[f32], out: &mut Vec<(u32, f32)>) {
        if self.steps.ways.len() > MOST_KEPT {
            self.steps = Steps::default();
        }
        let (steps, levels, grammar) = (&mut self.steps, &mut self.levels, &*self.grammar);
        levels.clear();
        levels.push(steps.number(self.ways.clone()));
        for i in 0..vocab.len() {
            let (id, bytes, shared) = vocab.entry(i);
            if shared >= levels.len() {
                continue; // it starts with the bytes that did not fit in the token before
            }
            levels.truncate(shared + 1);
            let fits = bytes[shared..].iter().all(|&b| {
                let next = steps.step(grammar, *levels.last().expect("the start"), b);
                levels.push(next);
                next != DEAD
            });
            if !fits {
                levels.pop();
            }
            if let Some(&logit) = logits.get(id as usize).filter(|_| fits) {
                out.push((id, logit));
            }
        }
    }

    fn is_complete(&self) -> bool {
        self.ways.complete()
    }

    fn can_go_on(&self) -> bool {
        self.ways.partial.left > 0 || self.ways.stacks.iter().any(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multibyte_characters_count_once_and_split_ones_wait() {
        let g = Grammar::parse("root ::= [^a] \"é\"? [α-ω]{2}").unwrap();
        assert!(g.holds("🔵αβ") && g.holds("xéωω"));
        assert!(!g.holds("aαβ") && !g.holds("🔵α") && !g.holds("xeαβ"));
        // the first byte of "é" fits after "x" (it may become é), the first of "😀" does not (no set holds it)
        let x = g.step(&g.start(), b'x').unwrap();
        assert!(g.step(&x, 0xc3).is_some() && g.step(&x, 0xf0).is_none());
        // an overlong start or a lone continuation byte never fits
        assert!(g.step(&g.start(), 0xc0).is_none() && g.step(&g.start(), 0x80).is_none());
        assert!(g.step(&g.step(&g.start(), 0xe0).unwrap(), 0x80).is_none());
    }

    #[test]
    fn a_grammar_whose_stacks_multiply_without_end_stops_fitting_instead_of_stalling() {
        // each level opens the next 8 ways, each with its own digit after it: 8^8 stacks before the first character
        let mut text = String::from("root ::= l0 \"a\"\n");
        for i in 0..8 {
            let ways: Vec<String> = (0..8).map(|k| format!("l{} \"{k}\"", i + 1)).collect();
            text += &format!("l{i} ::= {}\n", ways.join(" | "));
        }
        text += "l8 ::= \"b\"?\n";
        let g = Grammar::parse(&text).unwrap();
        let started = std::time::Instant::now();
        assert!(!g.holds("b01234567a"));
        assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
        // with one level the same rules are followed
        let small = Grammar::parse(&text.replace("root ::= l0", "root ::= l7")).unwrap();
        assert!(
            small.holds("0a") && small.holds("b7a") && !small.holds("a") && !small.holds("08a")
        );
    }
}
