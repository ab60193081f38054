//! The KV cache as slots: one cache per sequence, each with its own length, reused by the next request, which
//! keeps the longest prefix it shares with what the slot holds.

use bitnet_kernels_cubecl::TernaryBackend;

use crate::nn::{BitNet, KvCache};
use crate::text::shared_prefix;

/// One sequence's cache and the tokens it holds.
struct Slot<B: TernaryBackend> {
    cache: KvCache<B>,
    tokens: Vec<u32>,
    busy: bool,
}

/// A fixed set of per-sequence KV caches.
pub(super) struct Slots<B: TernaryBackend> {
    slots: Vec<Slot<B>>,
}

impl<B: TernaryBackend> Slots<B> {
    /// `n` slots of `ctx` positions each (memory is committed as positions are written).
    pub fn new(model: &BitNet<B>, n: usize, ctx: usize) -> Self {
        let slots = (0..n)
            .map(|_| Slot {
                cache: model.new_cache(1, ctx),
                tokens: Vec::new(),
                busy: false,
            })
            .collect();
        Self { slots }
    }

    /// Slots in use.
    pub fn busy(&self) -> usize {
        self.slots.iter().filter(|s| s.busy).count()
    }

    /// Takes the free slot whose held tokens share the longest prefix with `prompt`, keeps that prefix (less at
    /// least the prompt's last token, whose logits the request needs; nothing unless `reuse`) and returns the
    /// slot and the prefix length; `None` when every slot is busy.
    pub fn acquire(&mut self, prompt: &[u32], reuse: bool) -> Option<(usize, usize)> {
        let common = |s: &Slot<B>| shared_prefix(&s.tokens, prompt);
        let (index, slot) = self
            .slots
            .iter_mut()
            .enumerate()
            .filter(|(_, s)| !s.busy)
            .max_by_key(|(i, s)| (common(s), std::cmp::Reverse(*i)))?;
        let keep = match reuse {
            true => common(slot).min(prompt.len().saturating_sub(1)),
            false => 0,
        };
        slot.cache.truncate(keep);
        slot.tokens.truncate(keep);
        slot.busy = true;
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
