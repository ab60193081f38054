//! Every ordinary token's bytes in byte order, for checking the whole vocabulary against a byte-level format.

use super::Tokenizer;
use crate::text::shared_prefix;

/// Every ordinary token's bytes (special tokens left out), sorted: a flattened trie, so a walk that checks each
/// token from where it parts from the one before checks a prefix that many tokens share once.
#[derive(Debug)]
pub struct SortedVocab {
    /// Token ids in their bytes' order.
    ids: Vec<u32>,
    /// Where each sorted token's bytes start in `bytes` (one entry more than `ids`).
    starts: Vec<usize>,
    bytes: Vec<u8>,
    /// How many leading bytes each sorted token shares with the one before.
    shared: Vec<usize>,
    /// Position in `ids` by token id (`u32::MAX`: a special token, or one without bytes).
    rank: Vec<u32>,
}

impl SortedVocab {
    /// Sorts `tokenizer`'s vocabulary by [`Tokenizer::token_bytes`].
    pub fn new(tokenizer: &Tokenizer) -> Self {
        let n = tokenizer.vocab_size() as u32;
        let mut tokens: Vec<(Vec<u8>, u32)> = (0..n)
            .filter(|&id| !tokenizer.is_special(id))
            .filter_map(|id| Some((tokenizer.token_bytes(id)?, id)))
            .filter(|(bytes, _)| !bytes.is_empty())
            .collect();
        tokens.sort_unstable();
        let mut vocab = Self {
            ids: Vec::with_capacity(tokens.len()),
            starts: vec![0],
            bytes: Vec::new(),
            shared: Vec::with_capacity(tokens.len()),
            rank: vec![u32::MAX; n as usize],
        };
        let mut before: &[u8] = &[];
        for (bytes, id) in &tokens {
            vocab.rank[*id as usize] = vocab.ids.len() as u32;
            vocab.ids.push(*id);
            vocab.shared.push(shared_prefix(before, bytes));
            vocab.bytes.extend_from_slice(bytes);
            vocab.starts.push(vocab.bytes.len());
            before = bytes;
        }
        vocab
    }

    /// Number of tokens held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The `i`th token in byte order: its id, its bytes, and how many of them it shares with the `i - 1`th.
    pub fn entry(&self, i: usize) -> (u32, &[u8], usize) {
        let bytes = &self.bytes[self.starts[i]..self.starts[i + 1]];
        (self.ids[i], bytes, self.shared[i])
    }

    /// How many bytes the `i`th token in byte order shares with the `i - 1`th: 0 past the last.
    pub fn shared(&self, i: usize) -> usize {
        self.shared.get(i).copied().unwrap_or(0)
    }

    /// The bytes of token `id`, or `None` for a special token (or an id outside the vocabulary).
    pub fn bytes(&self, id: u32) -> Option<&[u8]> {
        let i = *self.rank.get(id as usize)?;
        (i != u32::MAX).then(|| self.entry(i as usize).1)
    }
}
