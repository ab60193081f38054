//! JSON Schemas (OpenAI's `response_format: {"type": "json_schema"}`) compiled into the nodes that
//! [`super::shaped::Shaped`] follows as text is generated. The subset is what structured outputs are written in
//! (OpenAI's strict schemas, pydantic's models): types, properties and required, items with their counts, string
//! lengths, patterns and formats, integer bounds, enum and const, anyOf/oneOf, one-schema allOf, and `$ref` into
//! `$defs` (recursion included). Keywords that would constrain the text in ways not checked here (multiples, bounds
//! on other numbers, uniqueness, ...) are refused by name, never ignored; the rest (titles, descriptions, unknown
//! formats and words) annotate and are skipped, as JSON Schema says.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use regex_automata::dfa::{dense, dense::DFA, Automaton, StartKind};
use regex_automata::util::{primitives::StateID, start};
use regex_automata::Anchored;
use serde_json::{Map, Value};

use super::formats;

/// A string.
pub(super) const STRING: u8 = 1;
/// A number, integer or not.
pub(super) const NUMBER: u8 = 2;
/// A number without fraction or exponent.
pub(super) const INTEGER: u8 = 4;
/// `true` or `false`.
pub(super) const BOOLEAN: u8 = 8;
/// `null`.
pub(super) const NULL: u8 = 16;
/// Any object.
pub(super) const OBJECT: u8 = 32;
/// Any array.
pub(super) const ARRAY: u8 = 64;
/// Any value.
const ANY: u8 = STRING | NUMBER | BOOLEAN | NULL | OBJECT | ARRAY;

/// Most properties of one object, and most values of one `enum`: while a key or value is written, the ones it
/// can still be are the bits of a u64.
pub const MOST_CHOICES: usize = 64;
/// Most nodes of one schema (their indices are u16 in the generation state).
const MOST_NODES: usize = 4096;
/// Deepest nesting of schemas while compiling.
const MOST_DEPTH: usize = 128;

/// Validation keywords this subset does not check: a schema using one is refused, as output ignoring it
/// would break the schema.
const UNCHECKED: &[&str] = &[
    "multipleOf",
    "patternProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "prefixItems",
    "additionalItems",
    "contains",
    "minContains",
    "maxContains",
    "uniqueItems",
    "unevaluatedItems",
    "unevaluatedProperties",
    "not",
    "if",
    "then",
    "else",
    "$dynamicRef",
    "$recursiveRef",
];

/// A schema this subset cannot hold text to, with where in it (a JSON pointer) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schema at {at}: {message}")]
pub struct SchemaError {
    /// JSON pointer to the schema object at fault (`#` is the root).
    pub at: String,
    /// What is wrong or unsupported there.
    pub message: String,
}

/// A compiled schema: node 0 is the root.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub(super) nodes: Vec<Node>,
    /// For each node and each byte of [`STARTS`], the nodes a value starting with it may follow: a range of
    /// `choices`. Settled once: through `$ref`s alternatives form a graph whose paths a search per byte could
    /// multiply.
    starts: Vec<Starts>,
    choices: Vec<u16>,
    /// The JSON Schema compiled.
    source: Value,
}

/// The bytes a JSON value can start with.
const STARTS: &[u8; 17] = b"\"-0123456789tfn{[";
/// A node's lists of [`Schema::choices`], a range of them for each byte of [`STARTS`].
type Starts = [(u32, u32); STARTS.len()];
/// Most nodes a value starting with one byte may follow (a union's alternatives, through nested unions).
pub const MOST_ALTERNATIVES: usize = 64;

/// What a value may be: any value of the kinds in `types` (strings of `length` characters, integers in `range`),
/// one of `literals`, an object of `object`'s shape or an array of `array`'s, or else what any of `alts` allows.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Node {
    pub types: u8,
    /// Fewest and most characters of a string (`minLength`, `maxLength`).
    pub length: Option<(u32, u32)>,
    /// What a string must match (`pattern`).
    pub pattern: Option<Pattern>,
    /// Least and greatest integer (`minimum`, `maximum` and their exclusive forms).
    pub range: Option<(i64, i64)>,
    /// Exact JSON texts (`enum`, `const`), as serde_json writes them.
    pub literals: Vec<Vec<u8>>,
    pub object: Option<Vec<Property>>,
    pub array: Option<Items>,
    pub alts: Vec<usize>,
}

/// A `pattern` as a DFA over the string's bytes (its escapes decoded), searched anywhere in the string as JSON
/// Schema says (`^` and `$` anchor it), with the syntax of Rust's `regex` (pydantic's too).
#[derive(Debug, Clone)]
pub(super) struct Pattern {
    source: String,
    pub dfa: Arc<DFA<Vec<u32>>>,
    /// Where a search starts.
    pub start: StateID,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// Largest DFA a pattern may build (bytes), so a request cannot make the server build an exponential one.
const MOST_PATTERN_BYTES: usize = 1 << 20;

impl Pattern {
    fn new(source: &str, at: &str) -> Result<Self, SchemaError> {
        // the regex errors say what is wrong in their sources ("error building NFA": look-around is not supported)
        let bad = |e: &dyn std::error::Error| {
            let mut message = format!("pattern {source:?}: {e}");
            let mut cause = e.source();
            while let Some(c) = cause {
                message = format!("{message}: {c}");
                cause = c.source();
            }
            error(at, message)
        };
        let config = dense::Config::new()
            .start_kind(StartKind::Unanchored)
            .dfa_size_limit(Some(MOST_PATTERN_BYTES))
            .determinize_size_limit(Some(MOST_PATTERN_BYTES));
        let dfa = dense::Builder::new()
            .configure(config)
            .build(source)
            .map_err(|e| bad(&e))?;
        let start = dfa
            .start_state(&start::Config::new().anchored(Anchored::No))
            .map_err(|e| bad(&e))?;
        Ok(Self {
            source: source.into(),
            dfa: Arc::new(dfa),
            start,
        })
    }
}

impl Pattern {
    /// The pattern a known string `format` is held to ([`formats::format`]; built once, then shared); `None` for
    /// a format not checked.
    fn of_format(name: &str, at: &str) -> Result<Option<Self>, SchemaError> {
        static BUILT: LazyLock<Mutex<HashMap<String, Pattern>>> = LazyLock::new(Default::default);
        let Some(regex) = formats::format(name) else {
            return Ok(None);
        };
        let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = built.get(name) {
            return Ok(Some(p.clone()));
        }
        let p = Self::new(&regex, at)?;
        built.insert(name.into(), p.clone());
        Ok(Some(p))
    }
}

/// A property an object may have: its key as a JSON string (quotes included), the node of its value, and
/// whether it must be there. Generated objects hold only these, in this order.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Property {
    pub key: Vec<u8>,
    pub node: usize,
    pub required: bool,
}

/// An array's items: the node each follows and how many there may be.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Items {
    pub node: usize,
    pub min: u32,
    pub max: u32,
}

impl Schema {
    /// Compiles `schema` (a JSON Schema whose root describes an object, as OpenAI requires).
    pub fn compile(schema: &Value) -> Result<Self, SchemaError> {
        let mut c = Compiler {
            root: schema,
            nodes: Vec::new(),
            refs: HashMap::new(),
            depth: 0,
        };
        c.nodes.push(Node::default());
        c.refs.insert("#".into(), 0);
        c.fill(0, schema, "#")?;
        let (starts, choices) = settle(&c.nodes)?;
        let schema = Self {
            nodes: c.nodes,
            starts,
            choices,
            source: schema.clone(),
        };
        if schema.choices(0, b'{').is_empty() {
            return Err(SchemaError {
                at: "#".into(),
                message:
                    "the root must describe an object (OpenAI's structured outputs require one)"
                        .into(),
            });
        }
        Ok(schema)
    }

    /// The JSON Schema this was compiled from.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// The nodes that a value of `node` starting with byte `b` may follow, in the schema's order: `node` itself,
    /// or those of its alternatives (recursively) whose values can start with `b`; none if no value can.
    pub(super) fn choices(&self, node: usize, b: u8) -> &[u16] {
        match STARTS.iter().position(|&s| s == b) {
            Some(i) => {
                let (from, to) = self.starts[node][i];
                &self.choices[from as usize..to as usize]
            }
            None => &[],
        }
    }
}

/// Every node's [`Schema::choices`]: the table and the lists it points into.
fn settle(nodes: &[Node]) -> Result<(Vec<Starts>, Vec<u16>), SchemaError> {
    let mut memo = vec![None; nodes.len()];
    let mut visiting = vec![false; nodes.len()];
    let (mut starts, mut choices) = (Vec::with_capacity(nodes.len()), Vec::new());
    for i in 0..nodes.len() {
        let lists = settle_node(nodes, i, &mut memo, &mut visiting)?;
        starts.push(lists.map(|list| {
            let from = choices.len() as u32;
            choices.extend(&list);
            (from, choices.len() as u32)
        }));
    }
    Ok((starts, choices))
}

/// Node `i`'s lists: itself for the bytes its own kinds start with, or its alternatives' nodes in order (each
/// once). Alternatives that lead back to a node being settled (`A: anyOf [A, ...]`) reach no value through
/// there. Chains of alternatives are as deep as compiling let them be ([`MOST_DEPTH`]), so the recursion is
/// bounded.
fn settle_node(
    nodes: &[Node],
    i: usize,
    memo: &mut [Option<[Vec<u16>; STARTS.len()]>],
    visiting: &mut [bool],
) -> Result<[Vec<u16>; STARTS.len()], SchemaError> {
    if let Some(lists) = &memo[i] {
        return Ok(lists.clone());
    }
    let mut lists: [Vec<u16>; STARTS.len()] = Default::default();
    if visiting[i] {
        return Ok(lists);
    }
    visiting[i] = true;
    let n = &nodes[i];
    if n.alts.is_empty() {
        for (list, &b) in lists.iter_mut().zip(STARTS) {
            let starts = n.types & kind(b) != 0
                || n.literals.iter().any(|l| l[0] == b)
                || (b == b'{' && n.object.is_some())
                || (b == b'[' && n.array.is_some());
            if starts {
                list.push(i as u16);
            }
        }
    } else {
        for &a in &n.alts {
            let alt = settle_node(nodes, a, memo, visiting)?;
            for ((list, more), &b) in lists.iter_mut().zip(alt).zip(STARTS) {
                for node in more {
                    if !list.contains(&node) {
                        list.push(node);
                    }
                }
                if list.len() > MOST_ALTERNATIVES {
                    return Err(error(
                        "#",
                        format!(
                            "more than {MOST_ALTERNATIVES} alternatives of one union can start with {:?}",
                            b as char
                        ),
                    ));
                }
            }
        }
    }
    visiting[i] = false;
    memo[i] = Some(lists.clone());
    Ok(lists)
}

/// The kinds of value that can start with byte `b`.
pub(super) fn kind(b: u8) -> u8 {
    match b {
        b'"' => STRING,
        b'-' | b'0'..=b'9' => NUMBER | INTEGER,
        b't' | b'f' => BOOLEAN,
        b'n' => NULL,
        b'{' => OBJECT,
        b'[' => ARRAY,
        _ => 0,
    }
}

struct Compiler<'a> {
    root: &'a Value,
    nodes: Vec<Node>,
    /// Node of each `$ref` target compiled or being compiled (so recursion ends).
    refs: HashMap<String, usize>,
    /// Schemas being compiled, one inside the next (through nesting and `$ref` chains).
    depth: usize,
}

impl<'a> Compiler<'a> {
    /// A new node for `schema` at pointer `at`.
    fn node(&mut self, schema: &'a Value, at: &str) -> Result<usize, SchemaError> {
        let index = self.reserve(at)?;
        self.fill(index, schema, at)?;
        Ok(index)
    }

    fn reserve(&mut self, at: &str) -> Result<usize, SchemaError> {
        if self.nodes.len() == MOST_NODES {
            return Err(error(at, format!("more than {MOST_NODES} schemas")));
        }
        self.nodes.push(Node::default());
        Ok(self.nodes.len() - 1)
    }

    /// The node of a `$ref` (beside which only annotations may stand).
    fn reference(
        &mut self,
        schema: &'a Value,
        target: &Value,
        at: &str,
    ) -> Result<usize, SchemaError> {
        let Some(pointer) = target.as_str() else {
            return Err(error(at, "$ref must be a string"));
        };
        if let Some(constraint) = schema
            .as_object()
            .into_iter()
            .flat_map(Map::keys)
            .find(|k| *k != "$ref" && constrains(k))
        {
            return Err(error(
                at,
                format!("{constraint} beside $ref is not supported"),
            ));
        }
        if let Some(&node) = self.refs.get(pointer) {
            return Ok(node);
        }
        let resolved = pointer
            .strip_prefix('#')
            .and_then(|p| self.root.pointer(p))
            .ok_or_else(|| {
                error(at, format!("$ref {pointer:?} does not point into this schema (only local refs like \"#/$defs/Name\" are)"))
            })?;
        let index = self.reserve(at)?;
        self.refs.insert(pointer.to_string(), index);
        self.fill(index, resolved, pointer)?;
        Ok(index)
    }

    /// Compiles `schema` into node `index`.
    fn fill(&mut self, index: usize, schema: &'a Value, at: &str) -> Result<(), SchemaError> {
        // a chain of `$ref`s is as deep as it is long: bounded, so a request cannot overflow the stack
        if self.depth == MOST_DEPTH {
            return Err(error(
                at,
                format!("schemas nested (or $ref chains) deeper than {MOST_DEPTH}"),
            ));
        }
        self.depth += 1;
        let filled = self.fill_within(index, schema, at);
        self.depth -= 1;
        filled
    }

    fn fill_within(
        &mut self,
        index: usize,
        schema: &'a Value,
        at: &str,
    ) -> Result<(), SchemaError> {
        let map = match schema {
            Value::Bool(true) => {
                self.nodes[index].types = ANY;
                return Ok(());
            }
            Value::Bool(false) => return Err(error(at, "the schema `false` allows no value")),
            Value::Object(map) => map,
            other => {
                return Err(error(
                    at,
                    format!("a schema must be an object or a boolean, not {other}"),
                ))
            }
        };
        if let Some(keyword) = map.keys().find(|k| UNCHECKED.contains(&k.as_str())) {
            return Err(error(
                at,
                format!("{keyword} is not supported (supported: type, properties, required, additionalProperties, items, minItems, maxItems, minLength, maxLength, pattern, format, minimum and maximum of integers, enum, const, anyOf, oneOf, allOf of one schema, $ref, $defs)"),
            ));
        }
        if map.contains_key("$ref") {
            let target = self.reference(schema, &map["$ref"], at)?;
            self.nodes[index].alts = vec![target];
            return Ok(());
        }
        for word in ["anyOf", "oneOf", "allOf"] {
            if let Some(list) = map.get(word) {
                return self.alternatives(index, map, word, list, at);
            }
        }
        let types = match map.get("type") {
            None => None,
            Some(t) => Some(type_bits(t).ok_or_else(|| {
                error(
                    at,
                    format!("type {t} is not a JSON Schema type or list of them"),
                )
            })?),
        };
        if map.contains_key("enum") || map.contains_key("const") {
            if let Some(bound) = map.keys().find(|k| {
                LENGTHS.contains(&k.as_str()) || RANGE.contains(&k.as_str()) || *k == "pattern"
            }) {
                return Err(error(
                    at,
                    format!("{bound} beside enum or const is not supported"),
                ));
            }
            return self.literals(index, map, types, at);
        }
        let implied = |words: &[&str], bits| match words.iter().any(|w| map.contains_key(*w)) {
            true => bits,
            false => 0,
        };
        // without a type, the kinds the keywords describe (generating one of them is valid), or any value
        let types = types.unwrap_or_else(|| {
            match implied(&["properties", "required", "additionalProperties"], OBJECT)
                | implied(&["items", "minItems", "maxItems"], ARRAY)
            {
                0 => ANY,
                kinds => kinds,
            }
        });
        // a known `format` holds a string as a pattern would (a `pattern` given beside it is the one followed)
        let format = match (types & STRING, map.get("format").and_then(Value::as_str)) {
            (0, _) | (_, None) => None,
            (_, Some(name)) => Pattern::of_format(name, at)?,
        };
        let mut node = Node {
            types: types & !(OBJECT | ARRAY),
            length: match types & STRING {
                0 => None,
                _ => length(map, at)?,
            },
            pattern: match (types & STRING, map.get("pattern"), format) {
                (0, ..) => None,
                (_, Some(Value::String(p)), _) => Some(Pattern::new(p, at)?),
                (_, Some(_), _) => return Err(error(at, "pattern must be a string")),
                (_, None, Some(pattern)) => Some(pattern),
                (_, None, None) => None,
            },
            range: range(map, types, at)?,
            ..Node::default()
        };
        if types & OBJECT != 0 {
            match self.object(map, at)? {
                Some(props) => node.object = Some(props),
                None => node.types |= OBJECT,
            }
        }
        if types & ARRAY != 0 {
            match self.array(map, at)? {
                Some(items) => node.array = Some(items),
                None => node.types |= ARRAY,
            }
        }
        self.nodes[index] = node;
        Ok(())
    }

    /// `anyOf`/`oneOf` (taken alike: the text follows any alternative; where several fit, the ones it can still
    /// be are followed side by side until it decides between them) or an `allOf` of one schema.
    fn alternatives(
        &mut self,
        index: usize,
        map: &'a Map<String, Value>,
        word: &str,
        list: &'a Value,
        at: &str,
    ) -> Result<(), SchemaError> {
        if let Some(other) = map.keys().find(|k| *k != word && constrains(k)) {
            return Err(error(at, format!("{other} beside {word} is not supported")));
        }
        let list = match list.as_array() {
            Some(l) if !l.is_empty() && (word != "allOf" || l.len() == 1) => l,
            _ if word == "allOf" => {
                return Err(error(at, "allOf is supported with one schema only"))
            }
            _ => {
                return Err(error(
                    at,
                    format!("{word} must be a non-empty list of schemas"),
                ))
            }
        };
        let mut alts = Vec::with_capacity(list.len());
        for (i, alt) in list.iter().enumerate() {
            alts.push(self.node(alt, &format!("{at}/{word}/{i}"))?);
        }
        self.nodes[index].alts = alts;
        Ok(())
    }

    /// `enum` or `const`: exact values, of the kinds `types` allows if given.
    fn literals(
        &mut self,
        index: usize,
        map: &Map<String, Value>,
        types: Option<u8>,
        at: &str,
    ) -> Result<(), SchemaError> {
        let values = match (map.get("const"), map.get("enum")) {
            (Some(one), _) => std::slice::from_ref(one),
            (None, Some(Value::Array(list))) => list.as_slice(),
            _ => return Err(error(at, "enum must be a list")),
        };
        let mut literals = Vec::new();
        for v in values {
            let text = match v {
                Value::Object(_) | Value::Array(_) => {
                    return Err(error(
                        at,
                        "enum and const of objects or arrays are not supported",
                    ))
                }
                v => serde_json::to_vec(v).unwrap_or_default(),
            };
            let integer = v.as_f64().is_some_and(|x| x.fract() == 0.0);
            let fits = types.is_none_or(|t| match v {
                Value::Number(_) => t & NUMBER != 0 || (t & INTEGER != 0 && integer),
                _ => t & kind(text[0]) != 0,
            });
            if fits && !literals.contains(&text) {
                literals.push(text);
            }
        }
        match literals.len() {
            0 => Err(error(
                at,
                "no value of the enum (or const) has the schema's type",
            )),
            n if n > MOST_CHOICES => Err(error(
                at,
                format!("an enum of {n} values (at most {MOST_CHOICES})"),
            )),
            _ => {
                self.nodes[index].literals = literals;
                Ok(())
            }
        }
    }

    /// The properties of an object (`None`: any object).
    fn object(
        &mut self,
        map: &'a Map<String, Value>,
        at: &str,
    ) -> Result<Option<Vec<Property>>, SchemaError> {
        let props = match map.get("properties") {
            None => None,
            Some(Value::Object(p)) => Some(p),
            Some(_) => return Err(error(at, "properties must be an object")),
        };
        let required: Vec<&str> = match map.get("required") {
            None => Vec::new(),
            Some(Value::Array(r)) => r
                .iter()
                .map(|k| {
                    k.as_str()
                        .ok_or_else(|| error(at, "required must list strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(error(at, "required must be a list")),
        };
        let closed = map.get("additionalProperties") == Some(&Value::Bool(false));
        if props.is_none() && required.is_empty() && !closed {
            return Ok(None);
        }
        let mut out = Vec::new();
        for (key, schema) in props.into_iter().flatten() {
            let node = self.node(schema, &format!("{at}/properties/{}", escape_pointer(key)))?;
            out.push(Property {
                key: serde_json::to_vec(key).unwrap_or_default(),
                node,
                required: required.contains(&key.as_str()),
            });
        }
        // required without a schema of its own: any value
        for key in required {
            let key = serde_json::to_vec(key).unwrap_or_default();
            if !out.iter().any(|p| p.key == key) {
                let node = self.reserve(at)?;
                self.nodes[node].types = ANY;
                out.push(Property {
                    key,
                    node,
                    required: true,
                });
            }
        }
        if out.len() > MOST_CHOICES {
            return Err(error(
                at,
                format!(
                    "an object of {} properties (at most {MOST_CHOICES})",
                    out.len()
                ),
            ));
        }
        Ok(Some(out))
    }

    /// The items of an array (`None`: any array).
    fn array(
        &mut self,
        map: &'a Map<String, Value>,
        at: &str,
    ) -> Result<Option<Items>, SchemaError> {
        let (min, max) = counts(map, at, ["minItems", "maxItems"])?;
        let node = match map.get("items") {
            None if (min, max) == (0, u32::MAX) => return Ok(None),
            None => {
                let node = self.reserve(at)?;
                self.nodes[node].types = ANY;
                node
            }
            Some(items) => self.node(items, &format!("{at}/items"))?,
        };
        Ok(Some(Items { node, min, max }))
    }
}

/// Keywords bounding a string's length.
const LENGTHS: &[&str] = &["minLength", "maxLength"];
/// Keywords bounding a number.
const RANGE: &[&str] = &["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];

/// `minLength`/`maxLength`, if either is given.
fn length(map: &Map<String, Value>, at: &str) -> Result<Option<(u32, u32)>, SchemaError> {
    match LENGTHS.iter().any(|k| map.contains_key(*k)) {
        true => counts(map, at, ["minLength", "maxLength"]).map(Some),
        false => Ok(None),
    }
}

/// The bounds a pair of count keywords set (`minItems`/`maxItems`, `minLength`/`maxLength`): 0 and `u32::MAX`
/// where not given.
fn counts(
    map: &Map<String, Value>,
    at: &str,
    [least, most]: [&str; 2],
) -> Result<(u32, u32), SchemaError> {
    let count = |word: &str, default: u32| match map.get(word) {
        None => Ok(default),
        Some(v) => v
            .as_u64()
            .map(|n| n.min(u32::MAX.into()) as u32)
            .ok_or_else(|| error(at, format!("{word} must be a non-negative integer"))),
    };
    let (min, max) = (count(least, 0)?, count(most, u32::MAX)?);
    match min <= max {
        true => Ok((min, max)),
        false => Err(error(at, format!("{least} {min} is above {most} {max}"))),
    }
}

/// The integers `minimum`, `maximum`, `exclusiveMinimum` and `exclusiveMaximum` allow, if any is given and the
/// values may be integers; bounds on other numbers are refused (their digits are not checked).
fn range(map: &Map<String, Value>, types: u8, at: &str) -> Result<Option<(i64, i64)>, SchemaError> {
    let Some(first) = RANGE.iter().find(|k| map.contains_key(**k)) else {
        return Ok(None);
    };
    if types & NUMBER != 0 {
        return Err(error(
            at,
            format!("{first} on a number is not supported (on an integer it is)"),
        ));
    }
    if types & INTEGER == 0 {
        return Ok(None);
    }
    let bound = |word: &str| match map.get(word) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| error(at, format!("{word} must be a number"))),
    };
    // `as` saturates: a bound past i64 allows every integer there is on that side
    let mut lo = i64::MIN;
    let mut hi = i64::MAX;
    if let Some(x) = bound("minimum")? {
        lo = lo.max(x.ceil() as i64);
    }
    if let Some(x) = bound("exclusiveMinimum")? {
        lo = lo.max((x.floor() as i64).saturating_add(1));
    }
    if let Some(x) = bound("maximum")? {
        hi = hi.min(x.floor() as i64);
    }
    if let Some(x) = bound("exclusiveMaximum")? {
        hi = hi.min((x.ceil() as i64).saturating_sub(1));
    }
    match lo <= hi {
        true => Ok(Some((lo, hi))),
        false => Err(error(at, "no integer lies within the minimum and maximum")),
    }
}

/// Whether a keyword constrains values (so it cannot stand beside `$ref` or `anyOf` here, where it would have to
/// hold as well); the rest are annotations and container words.
fn constrains(keyword: &str) -> bool {
    const ANNOTATIONS: &[&str] = &[
        "title",
        "description",
        "default",
        "examples",
        "$schema",
        "$id",
        "$comment",
        "$defs",
        "definitions",
        "deprecated",
        "readOnly",
        "writeOnly",
        "format",
        "discriminator",
    ];
    !ANNOTATIONS.contains(&keyword)
}

/// The kinds a `type` names (a name or a list of them).
fn type_bits(t: &Value) -> Option<u8> {
    let one = |name: &str| match name {
        "string" => Some(STRING),
        "number" => Some(NUMBER),
        "integer" => Some(INTEGER),
        "boolean" => Some(BOOLEAN),
        "null" => Some(NULL),
        "object" => Some(OBJECT),
        "array" => Some(ARRAY),
        _ => None,
    };
    match t {
        Value::String(name) => one(name),
        Value::Array(names) if !names.is_empty() => names
            .iter()
            .try_fold(0, |bits, n| Some(bits | one(n.as_str()?)?)),
        _ => None,
    }
}

/// A property name as a JSON pointer segment.
fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn error(at: &str, message: impl Into<String>) -> SchemaError {
    SchemaError {
        at: at.to_string(),
        message: message.into(),
    }
}
