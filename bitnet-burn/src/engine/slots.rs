//! The KV cache as slots: one cache per sequence, each with its own length, reused by the next request, which
//! starts from the longest prefix of its prompt held anywhere: in the slot it takes, in another slot (copied), or
//! in the [prompt cache](super::prompt_cache) (copied back).

use bitnet_kernels_cubecl::TernaryBackend;

use super::prompt_cache::PromptCache;
use crate::nn::{BitNet, KvCache};
use crate::text::shared_prefix;

/// One sequence's cache and the tokens it holds.
struct Slot<B: TernaryBackend> {
    cache: KvCache<B>,
    tokens: Vec<u32>,
    busy: bool,
    /// When the slot was last taken ([`Slots::acquire`]'s count).
    used: u64,
}

/// A fixed set of per-sequence KV caches, and the prompts kept after their slot moved on.
pub(super) struct Slots<B: TernaryBackend> {
    slots: Vec<Slot<B>>,
    kept: PromptCache<B>,
    acquired: u64,
}

impl<B: TernaryBackend> Slots<B> {
    /// `n` slots of `ctx` positions each (memory is committed as positions are written), keeping prompts they
    /// move on from within `kept` bytes (`None`: no limit, `Some(0)`: none).
    pub fn new(model: &BitNet<B>, n: usize, ctx: usize, kept: Option<usize>) -> Self {
        let slots = (0..n)
            .map(|_| Slot {
                cache: model.new_cache(1, ctx),
                tokens: Vec::new(),
                busy: false,
                used: 0,
            })
            .collect();
        Self {
            slots,
            kept: PromptCache::new(kept),
            acquired: 0,
        }
    }

    /// Bytes and prompts in the prompt cache.
    pub fn kept(&self) -> (usize, usize) {
        (self.kept.bytes(), self.kept.len())
    }

    /// Slots in use.
    pub fn busy(&self) -> usize {
        self.slots.iter().filter(|s| s.busy).count()
    }

    /// The most tokens `prompt` starts with that a slot (busy or not) or the prompt cache holds.
    pub fn longest_held(&self, prompt: &[u32]) -> usize {
        let slots = self.slots.iter().map(|s| shared_prefix(&s.tokens, prompt));
        let kept = self.kept.longest(prompt).map(|(_, n)| n);
        slots.chain(kept).max().unwrap_or(0)
    }

    /// Takes a free slot for `prompt` and returns it with the prompt tokens it starts with, none unless `reuse`
    /// (then at most all but the last, whose logits the request needs); `None` when every slot is busy.
    ///
    /// The slot is the free one the prompt continues (sharing at least half of what it holds), else the least
    /// recently used. Its start comes from wherever the longest prefix is held: the slot itself, another slot
    /// (busy or not), or the prompt cache. What the slot held goes to the prompt cache first when the prompt
    /// shares less than half of it (as llama-server decides).
    pub fn acquire(&mut self, prompt: &[u32], reuse: bool) -> Option<(usize, usize)> {
        let most = if reuse {
            prompt.len().saturating_sub(1)
        } else {
            0
        };
        let shared = |s: &Slot<B>| shared_prefix(&s.tokens, prompt).min(most);
        let continued = |s: &Slot<B>| shared(s) > 0 && 2 * shared(s) >= s.tokens.len();
        let free = || self.slots.iter().enumerate().filter(|(_, s)| !s.busy);
        let index = free()
            .filter(|(_, s)| continued(s))
            .max_by_key(|(_, s)| shared(s))
            .or_else(|| free().min_by_key(|(_, s)| (!s.tokens.is_empty(), s.used)))?
            .0;
        let own = shared(&self.slots[index]);
        let slot = &self.slots[index];
        if 2 * own < slot.tokens.len() {
            self.kept.keep(&slot.tokens, &slot.cache);
        }
        let other = self
            .slots
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != index)
            .map(|(i, s)| (shared(s), i))
            .max();
        let kept = self.kept.longest(prompt).map(|(i, n)| (n.min(most), i));
        let keep = match (other, kept) {
            (Some((n, from)), _) if n > own && kept.is_none_or(|(k, _)| n >= k) => {
                // a handle on the other slot's buffers (not a copy), dropped before that slot writes again
                let src = self.slots[from].cache.clone();
                self.slots[index].cache.copy_from(&src, n);
                n
            }
            (_, Some((n, from))) if n > own => {
                self.kept.restore(from, n, &mut self.slots[index].cache);
                n
            }
            _ => {
                self.slots[index].cache.truncate(own);
                own
            }
        };
        self.acquired += 1;
        let slot = &mut self.slots[index];
        slot.tokens.clear();
        slot.tokens.extend_from_slice(&prompt[..keep]);
        slot.busy = true;
        slot.used = self.acquired;
        Some((index, keep))
    }

    /// Frees a slot (its cache stays for prefix reuse).
    pub fn release(&mut self, index: usize) {
        self.slots[index].busy = false;
    }

    /// Positions free in a slot's cache.
    pub fn room(&self, index: usize) -> usize {
        let cache = &self.slots[index].cache;
        cache.max_len() - cache.len()
    }

    /// The caches of the slots that have tokens in `feed` (indexed by slot), with those tokens, in slot order;
    /// the tokens are recorded as held (the caller runs them through the model).
    pub fn step<'a>(
        &'a mut self,
        feed: &'a [Option<Vec<u32>>],
    ) -> Vec<(&'a mut KvCache<B>, &'a [u32])> {
        self.slots
            .iter_mut()
            .zip(feed)
            .filter_map(|(slot, tokens)| {
                let tokens = tokens.as_deref()?;
                slot.tokens.extend_from_slice(tokens);
                Some((&mut slot.cache, tokens))
            })
            .collect()
    }

    /// Forgets what a slot holds (after a failed step, whose cache contents are unknown).
    pub fn clear(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        slot.cache.reset();
        slot.tokens.clear();
    }
}
