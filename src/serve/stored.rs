//! Responses kept in memory for `previous_response_id` and `GET`/`DELETE /v1/responses/{id}`: each with the
//! conversation it ends (input items, earlier turns included, then its output items), so a follow-up sends only
//! what is new. Bounded: the oldest go first past [`MOST_STORED`] responses or [`MOST_STORED_BYTES`] of JSON.
//! Per process: replicas behind a load balancer do not share them (a follow-up that reaches another replica is
//! told its previous response is not found).

use std::collections::{HashMap, VecDeque};

use serde_json::Value;

/// Most responses kept.
pub const MOST_STORED: usize = 1024;
/// Most bytes of JSON kept, all responses together.
pub const MOST_STORED_BYTES: usize = 64 << 20;

/// A kept response.
struct Entry {
    /// The `response` object as it was answered.
    response: Value,
    /// The conversation it ends, as input items.
    items: Vec<Value>,
    bytes: usize,
}

/// The kept responses, oldest first.
#[derive(Default)]
pub struct Stored {
    entries: HashMap<String, Entry>,
    order: VecDeque<String>,
    bytes: usize,
}

impl Stored {
    /// Keeps `response` (its `id` names it) and the conversation `items` it ends; drops the oldest beyond the
    /// bounds (a response bigger than all of them is not kept).
    pub fn insert(&mut self, response: Value, items: Vec<Value>) {
        let Some(id) = response["id"].as_str().map(String::from) else {
            return;
        };
        let bytes =
            response.to_string().len() + items.iter().map(|i| i.to_string().len()).sum::<usize>();
        if bytes > MOST_STORED_BYTES {
            return;
        }
        self.remove(&id);
        while self.order.len() >= MOST_STORED || self.bytes + bytes > MOST_STORED_BYTES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.bytes -= e.bytes;
            }
        }
        self.bytes += bytes;
        self.order.push_back(id.clone());
        self.entries.insert(
            id,
            Entry {
                response,
                items,
                bytes,
            },
        );
    }

    /// The `response` object kept as `id`.
    pub fn response(&self, id: &str) -> Option<&Value> {
        self.entries.get(id).map(|e| &e.response)
    }

    /// The conversation the response `id` ends, as input items.
    pub fn items(&self, id: &str) -> Option<&[Value]> {
        self.entries.get(id).map(|e| e.items.as_slice())
    }

    /// Forgets the response `id`; whether it was kept.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(e) = self.entries.remove(id) else {
            return false;
        };
        self.bytes -= e.bytes;
        self.order.retain(|kept| kept != id);
        true
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_oldest_go_first_past_the_bounds() {
        let mut stored = Stored::default();
        for i in 0..MOST_STORED + 2 {
            stored.insert(
                json!({"id": format!("resp_{i}")}),
                vec![json!({"role": "user", "content": "hi"})],
            );
        }
        assert!(stored.response("resp_0").is_none() && stored.response("resp_1").is_none());
        assert!(
            stored.items("resp_2").is_some()
                && stored
                    .response(&format!("resp_{}", MOST_STORED + 1))
                    .is_some()
        );
        assert!(
            stored.remove("resp_2") && !stored.remove("resp_2") && stored.items("resp_2").is_none()
        );
        // by bytes: two responses of more than half the bound each cannot both stay
        let big = "x".repeat(MOST_STORED_BYTES / 2 + 1);
        stored.insert(json!({"id": "a", "text": big}), vec![]);
        stored.insert(json!({"id": "b", "text": big}), vec![]);
        assert!(stored.response("a").is_none() && stored.response("b").is_some());
        assert!(stored.bytes <= MOST_STORED_BYTES);
        let huge = "x".repeat(MOST_STORED_BYTES + 1);
        stored.insert(json!({"id": "c", "text": huge}), vec![]);
        assert!(stored.response("c").is_none() && stored.response("b").is_some());
    }
}
