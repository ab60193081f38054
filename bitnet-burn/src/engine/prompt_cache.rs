//! Prompts kept after their slot moves on (llama-server's `--cache-ram`): a request that continues one (a chat
//! its user comes back to after other conversations have used every slot) gets its keys and values copied into
//! a slot instead of running its prompt again.

use std::collections::VecDeque;

use bitnet_kernels_cubecl::TernaryBackend;

use crate::nn::KvCache;
use crate::text::shared_prefix;

/// A kept prompt: its tokens and a cache holding just their positions.
struct Kept<B: TernaryBackend> {
    tokens: Vec<u32>,
    cache: KvCache<B>,
}

/// Kept prompts within a byte budget, the least recently used first (and first to go).
pub(super) struct PromptCache<B: TernaryBackend> {
    kept: VecDeque<Kept<B>>,
    limit: Option<usize>,
}

impl<B: TernaryBackend> PromptCache<B> {
    /// A cache of at most `limit` bytes (`None`: no limit; `Some(0)`: keeps nothing).
    pub fn new(limit: Option<usize>) -> Self {
        Self {
            kept: VecDeque::new(),
            limit,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.kept
            .iter()
            .map(|k| k.tokens.len() * k.cache.position_bytes())
            .sum()
    }

    /// Prompts held.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// Keeps the first `tokens.len()` positions of `cache` as `tokens`, unless a kept prompt already starts with
    /// them or they alone exceed the budget. Kept prompts that `tokens` starts with go (this one holds them), then
    /// the least recently used until it fits.
    pub fn keep(&mut self, tokens: &[u32], cache: &KvCache<B>) {
        let bytes = tokens.len() * cache.position_bytes();
        let held = |k: &Kept<B>| shared_prefix(&k.tokens, tokens) == tokens.len();
        if tokens.is_empty() || self.limit.is_some_and(|l| bytes > l) || self.kept.iter().any(held)
        {
            return;
        }
        self.kept
            .retain(|k| shared_prefix(&k.tokens, tokens) < k.tokens.len());
        while self.limit.is_some_and(|l| self.bytes() + bytes > l) {
            self.kept.pop_front();
        }
        self.kept.push_back(Kept {
            tokens: tokens.to_vec(),
            cache: cache.snapshot(tokens.len()),
        });
    }

    /// The kept prompt sharing the longest prefix with `prompt` (its index and that length), if any shares one.
    pub fn longest(&self, prompt: &[u32]) -> Option<(usize, usize)> {
        self.kept
            .iter()
            .map(|k| shared_prefix(&k.tokens, prompt))
            .enumerate()
            .filter(|&(_, n)| n > 0)
            .max_by_key(|&(i, n)| (n, i))
    }

    /// Copies the first `len` positions of kept prompt `index` into `cache`. A prompt continued (at least half
    /// of it used) leaves the cache, since `cache` will hold it and more; one only partly shared (a system
    /// prompt) stays, as the most recently used.
    pub fn restore(&mut self, index: usize, len: usize, cache: &mut KvCache<B>) {
        let Some(kept) = self.kept.remove(index) else {
            return;
        };
        cache.copy_from(&kept.cache, len);
        if 2 * len < kept.tokens.len() {
            self.kept.push_back(kept);
        }
    }
}
