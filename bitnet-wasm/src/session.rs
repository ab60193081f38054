//! The model and the KV cache the last generation left behind, whose prefix the next generation reuses (the
//! previous turn of a chat runs only its new tokens).

use std::cell::RefCell;

use bitnet_burn::text::shared_prefix;
use bitnet_burn::{BitNet, KvCache, TernaryBackend};

/// A model on backend `B` and the cache its last finished (or dropped) generation held.
pub(crate) struct Session<B: TernaryBackend> {
    pub(crate) model: BitNet<B>,
    /// The cache and the tokens it holds, in order.
    spare: RefCell<Option<(KvCache<B>, Vec<u32>)>>,
}

impl<B: TernaryBackend> Session<B> {
    pub(crate) fn new(model: BitNet<B>) -> Self {
        Self {
            model,
            spare: RefCell::new(None),
        }
    }

    /// A cache of `ctx` positions for `prompt` and how many of the prompt's first ids it already holds: the
    /// spare one when it is that size (keeping the prefix it shares with `prompt`, less at least the prompt's
    /// last id), else a new one.
    pub(crate) fn cache(&self, prompt: &[u32], ctx: usize) -> (KvCache<B>, usize) {
        // a spare of another size is freed before a new cache is made
        let spare = self.spare.borrow_mut().take();
        match spare.filter(|(cache, _)| cache.max_len() == ctx) {
            Some((mut cache, held)) => {
                let keep = shared_prefix(&held, prompt).min(prompt.len().saturating_sub(1));
                cache.truncate(keep);
                (cache, keep)
            }
            None => (self.model.new_cache(1, ctx), 0),
        }
    }

    /// Keeps `cache` for the next generation; `tokens` are those it was fed (beyond its length, ignored).
    pub(crate) fn keep(&self, cache: KvCache<B>, tokens: &[u32]) {
        let held = tokens[..cache.len().min(tokens.len())].to_vec();
        *self.spare.borrow_mut() = Some((cache, held));
    }
}
