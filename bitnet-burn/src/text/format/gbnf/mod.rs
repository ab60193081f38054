//! GBNF grammars (llama.cpp's format, its `grammars/*.gbnf` and llama-server's `grammar` parameter): text is held
//! to the language of the rule `root`. Parsed as llama.cpp parses them ([`parse`]) and followed as llama.cpp
//! follows them: a set of stacks of the symbols still to match, stepped a character at a time ([`walk`]).

mod parse;
mod walk;

pub(super) use walk::GrammarWalker;

/// What a symbol of a rule matches.
#[derive(Clone, Debug, PartialEq)]
enum Symbol {
    /// One character of a set.
    Chars(CharSet),
    /// What rule `id` matches.
    Rule(usize),
}

/// A set of characters: ranges of code points, or all but them.
#[derive(Clone, Debug, PartialEq)]
struct CharSet {
    negated: bool,
    /// Inclusive, sorted, not overlapping.
    ranges: Vec<(u32, u32)>,
}

impl CharSet {
    fn new(negated: bool, mut ranges: Vec<(u32, u32)>) -> Self {
        ranges.retain(|(lo, hi)| lo <= hi);
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        Self {
            negated,
            ranges: merged,
        }
    }

    fn one(c: u32) -> Self {
        Self::new(false, vec![(c, c)])
    }

    /// `.`: any character.
    fn any() -> Self {
        Self::new(true, Vec::new())
    }

    fn contains(&self, c: u32) -> bool {
        let inside = self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
        inside != self.negated
    }

    /// Whether some character in `lo..=hi` is in the set.
    fn meets(&self, lo: u32, hi: u32) -> bool {
        if !self.negated {
            return self.ranges.iter().any(|&(a, b)| a <= hi && lo <= b);
        }
        // all but the ranges: some character of lo..=hi is left uncovered
        let mut next = lo;
        for &(a, b) in &self.ranges {
            if a > next {
                break;
            }
            if b >= next {
                match b.checked_add(1) {
                    Some(n) => next = n,
                    None => return false,
                }
            }
        }
        next <= hi
    }
}

/// One element of the rules laid end to end: each alternative's symbols, then [`Element::End`].
#[derive(Clone, Debug, PartialEq)]
enum Element {
    Chars(CharSet),
    Rule(u32),
    End,
}

/// A grammar ready to follow: its rules' alternatives laid end to end.
#[derive(Debug, PartialEq)]
pub struct Grammar {
    elements: Vec<Element>,
    /// Where each alternative of each rule starts in `elements`.
    starts: Vec<Vec<u32>>,
    root: usize,
}

/// A grammar that cannot be followed, with where in its text (line and column) when that is known.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct GrammarError {
    /// What is wrong, and where.
    pub message: String,
}

impl GrammarError {
    fn at(text: &str, at: usize, message: String) -> Self {
        let before = &text[..at.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Self {
            message: format!("line {line}, column {column}: {message}"),
        }
    }

    fn new(message: String) -> Self {
        Self { message }
    }
}

impl Grammar {
    /// Parses GBNF `text`; its rule `root` is what the text must be. Rules used but not defined, no `root`, and
    /// left recursion (which llama.cpp refuses too: following it would never end) are errors.
    pub fn parse(text: &str) -> Result<Self, GrammarError> {
        let rules = parse::parse(text)?;
        let defined = |id: usize| {
            rules.alternatives[id].as_ref().ok_or_else(|| {
                GrammarError::new(format!(
                    "the rule {:?} is used but not defined",
                    rules.names[id]
                ))
            })
        };
        let alternatives = (0..rules.names.len())
            .map(defined)
            .collect::<Result<Vec<_>, _>>()?;
        let root = rules
            .names
            .iter()
            .position(|n| n == "root")
            .ok_or_else(|| GrammarError::new("the grammar has no rule named root".into()))?;
        if let Some(rule) = left_recursive(&alternatives) {
            return Err(GrammarError::new(format!(
                "the rule {:?} is left-recursive (it can start with itself)",
                rules.names[rule]
            )));
        }
        let mut elements = Vec::new();
        let mut starts = Vec::with_capacity(alternatives.len());
        for alts in &alternatives {
            let mut rule = Vec::with_capacity(alts.len());
            for alt in alts.iter() {
                rule.push(elements.len() as u32);
                elements.extend(alt.iter().map(|s| match s {
                    Symbol::Chars(set) => Element::Chars(set.clone()),
                    Symbol::Rule(id) => Element::Rule(*id as u32),
                }));
                elements.push(Element::End);
            }
            starts.push(rule);
        }
        Ok(Self {
            elements,
            starts,
            root,
        })
    }
}

/// A rule that can derive a sequence starting with itself with more after it (following it would grow the stacks
/// without end), if any. A rule that comes back to itself only as the last symbol of its alternatives (`( [x]* )*`:
/// `R ::= G R |` with `G` able to match nothing) is no such rule: the stacks come back the same, and llama.cpp
/// takes it too.
fn left_recursive(rules: &[&Vec<Vec<Symbol>>]) -> Option<usize> {
    // which rules can match nothing, to a fixed point
    let mut nullable = vec![false; rules.len()];
    let mut changed = true;
    while changed {
        changed = false;
        for (id, alts) in rules.iter().enumerate() {
            let empty = |s: &Symbol| matches!(s, Symbol::Rule(r) if nullable[*r]);
            if !nullable[id] && alts.iter().any(|alt| alt.iter().all(empty)) {
                nullable[id] = true;
                changed = true;
            }
        }
    }
    // rule -> the rules that can come first in it (after symbols that can match nothing), and whether last
    let mut first: Vec<Vec<(usize, bool)>> = vec![Vec::new(); rules.len()];
    for (id, alts) in rules.iter().enumerate() {
        for alt in alts.iter() {
            for (i, s) in alt.iter().enumerate() {
                let Symbol::Rule(r) = *s else { break };
                first[id].push((r, i + 1 == alt.len()));
                if !nullable[r] {
                    break;
                }
            }
        }
    }
    // an edge that leaves something to match after it, on a cycle: inside one strongly connected component
    let component = components(&first);
    (0..rules.len()).find(|&r| {
        first[r]
            .iter()
            .any(|&(s, last)| !last && component[s] == component[r])
    })
}

/// The strongly connected component of each node of `edges` (Tarjan's, without recursion: a grammar's rules can
/// be many), in linear time.
fn components(edges: &[Vec<(usize, bool)>]) -> Vec<usize> {
    const UNSEEN: usize = usize::MAX;
    let n = edges.len();
    let (mut index, mut low, mut component) = (vec![UNSEEN; n], vec![0; n], vec![UNSEEN; n]);
    let (mut next_index, mut next_component) = (0, 0);
    let mut stack = Vec::new();
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        // (node, next edge to look at)
        let mut path = vec![(root, 0usize)];
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        while let Some(&mut (v, ref mut e)) = path.last_mut() {
            if let Some(&(w, _)) = edges[v].get(*e) {
                *e += 1;
                if index[w] == UNSEEN {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    path.push((w, 0));
                } else if component[w] == UNSEEN {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            path.pop();
            if let Some(&(parent, _)) = path.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                while let Some(w) = stack.pop() {
                    component[w] = next_component;
                    if w == v {
                        break;
                    }
                }
                next_component += 1;
            }
        }
    }
    component
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_sets_meet_ranges() {
        let digits = CharSet::new(false, vec![('0' as u32, '9' as u32)]);
        assert!(digits.meets(0x30, 0x30) && digits.meets(0, 0x7f) && !digits.meets(0x80, 0x7ff));
        let not_quote = CharSet::new(true, vec![(34, 34), (92, 92)]);
        assert!(not_quote.contains(97) && !not_quote.contains(34));
        assert!(!not_quote.meets(34, 34) && not_quote.meets(34, 35));
        assert!(CharSet::any().meets(0x10000, 0x10ffff));
        assert!(!CharSet::new(true, vec![(0, u32::MAX)]).meets(5, 9));
    }

    #[test]
    fn bad_grammars_are_errors_naming_the_problem() {
        for (text, needle) in [
            (
                "root ::= \"a",
                "line 1, column 12: the text ends inside a literal or class",
            ),
            ("root ::= foo", "the rule \"foo\" is used but not defined"),
            ("rot ::= \"a\"", "the grammar has no rule named root"),
            (
                "root ::= \"a\"\nroot ::= \"b\"",
                "line 2, column 10: the rule \"root\" is defined twice",
            ),
            ("root ::= \"\\q\"", "unknown escape"),
            ("root ::= * \"a\"", "`*` repeats nothing"),
            ("root ::= \"a\"{3,2}", "the upper bound is below the lower"),
            ("root ::= \"a\"{5000}", "5000 repetitions; at most 2000"),
            ("root ::= ( \"a\"", "expected ) to close the group"),
            ("root ::= <think>", "token references"),
            (
                "root ::= \"a\" | root \"a\"",
                "the rule \"root\" is left-recursive",
            ),
            (
                "root ::= x\nx ::= e x \"a\" | \"b\"\ne ::= \"c\" |",
                "the rule \"x\" is left-recursive",
            ),
        ] {
            let e = Grammar::parse(text).map(drop).unwrap_err();
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
        // a repetition that would write out 1.2 million symbols; nested ones share their rules and stay small
        let long = format!("root ::= \"{}\"{{2000}}", "a".repeat(600));
        let e = Grammar::parse(&long).map(drop).unwrap_err();
        assert!(e.message.contains("write out more than"), "{e}");
        assert!(Grammar::parse("root ::= ((\"a\"{2000}){2000}){2000}").is_ok());
        // 100,000 rules each starting with the next, the last able to match nothing: checked in linear time
        let chain: String = (0..100_000)
            .map(|i| format!("a{i} ::= a{} \"x\"\n", i + 1))
            .collect();
        let started = std::time::Instant::now();
        let fine = Grammar::parse(&format!("{chain}a100000 ::= | \"y\"\nroot ::= a0\n"));
        assert!(
            fine.is_ok() && started.elapsed().as_secs() < 5,
            "{:?}",
            started.elapsed()
        );
        let looped = Grammar::parse(&format!("{chain}a100000 ::= | a5\nroot ::= a0\n"));
        let e = looped.map(drop).unwrap_err();
        assert!(e.message.contains("left-recursive"), "{e}");
    }
}
