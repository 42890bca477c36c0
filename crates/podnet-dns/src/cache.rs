//! Encoded answers, reused: the UDP loop keeps the wire form of every answer it has given for the
//! current zone, keyed by the question (name in lower case, type, class) and whether the query
//! had EDNS. A repeated question is answered by copying that answer and putting the query's ID,
//! its RD and CD bits and its question bytes (the client's own letter case, RFC 4343) back in.
//! Everything else (opcodes, several questions, other sections, EDNS versions, truncation,
//! forwarding) takes the full path through hickory-proto and is never cached.
//!
//! The cache belongs to one zone: it is emptied when the zone changes, so a new zone is answered
//! from its first query on.
//!
//! It is bounded in bytes ([`MAX_BYTES`], counting keys, answers and the map's own entry), as
//! Unbound's message cache is (`msg-cache-size`, 4 MB by default): answers go into a current
//! generation; when it is full it becomes the previous one and the one before is dropped. An
//! answer found in the previous generation moves to the current one, so what is asked again
//! stays, and what has not been asked for a generation goes (an approximation of least recently
//! used that costs nothing per hit).

use std::collections::HashMap;
use std::sync::Arc;

use crate::Zone;

/// The most the cache holds, in bytes, both generations together.
pub(crate) const MAX_BYTES: usize = 4 << 20;

/// What one entry costs beyond its key and answer: the two boxes' pointers and lengths and the
/// map's control byte, rounded up for the allocator's headers.
const ENTRY_OVERHEAD: usize = 64;

/// A query in the one shape the cache serves.
pub(crate) struct Question {
    /// End of the question section.
    end: usize,
    /// The client's UDP limit (512 without EDNS).
    limit: usize,
}

/// Reads the shape of a plain query: header with QR=0, opcode QUERY, 1 question, no answer or
/// authority records, and either nothing more or exactly one EDNS version 0 OPT record; the
/// message must end there. `key` receives the cache key.
pub(crate) fn question(raw: &[u8], key: &mut Vec<u8>) -> Option<Question> {
    if raw.len() < 12 || raw[2] & 0xf8 != 0 {
        return None; // a response, or not opcode QUERY (or too short)
    }
    let count = |i: usize| u16::from_be_bytes([raw[i], raw[i + 1]]);
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return None;
    }
    key.clear();
    let mut i = 12;
    loop {
        let len = usize::from(*raw.get(i)?);
        if len & 0xc0 != 0 {
            return None;
        }
        key.push(len as u8);
        i += 1;
        if len == 0 {
            break;
        }
        key.extend(raw.get(i..i + len)?.iter().map(u8::to_ascii_lowercase));
        i += len;
        if i - 12 > 255 {
            return None;
        }
    }
    key.extend_from_slice(raw.get(i..i + 4)?); // type, class
    let end = i + 4;
    let limit = if ar == 0 {
        if end != raw.len() {
            return None;
        }
        key.push(0);
        512
    } else {
        // OPT: root name, type 41, class = UDP size, TTL = ext-rcode, version, flags; rdata.
        let opt = raw.get(end..end + 11)?;
        if opt[0] != 0 || opt[1..3] != [0, 41] || opt[6] != 0 {
            return None;
        }
        let rdlen = usize::from(u16::from_be_bytes([opt[9], opt[10]]));
        if end + 11 + rdlen != raw.len() {
            return None;
        }
        key.push(1);
        usize::from(u16::from_be_bytes([opt[3], opt[4]]))
            .clamp(512, usize::from(crate::MAX_UDP_PAYLOAD))
    };
    Some(Question { end, limit })
}

#[derive(Default)]
pub(crate) struct AnswerCache {
    zone: Option<Arc<Zone>>,
    current: Generation,
    previous: Generation,
}

#[derive(Default)]
struct Generation {
    answers: HashMap<Box<[u8]>, Box<[u8]>>,
    bytes: usize,
}

fn cost(key: &[u8], answer: &[u8]) -> usize {
    key.len() + answer.len() + ENTRY_OVERHEAD
}

impl Generation {
    fn insert(&mut self, key: Box<[u8]>, answer: Box<[u8]>) {
        let key_len = key.len();
        self.bytes += cost(&key, &answer);
        if let Some(old) = self.answers.insert(key, answer) {
            self.bytes -= key_len + old.len() + ENTRY_OVERHEAD;
        }
    }
}

impl AnswerCache {
    /// Empties the cache when `zone` is not the zone its answers came from.
    pub(crate) fn for_zone(&mut self, zone: &Arc<Zone>) {
        if !self.zone.as_ref().is_some_and(|z| Arc::ptr_eq(z, zone)) {
            self.current = Generation::default();
            self.previous = Generation::default();
            self.zone = Some(zone.clone());
        }
    }

    /// The bytes held, both generations.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.current.bytes + self.previous.bytes
    }

    /// The cached answer to `raw`, made the query's own, into `out`.
    pub(crate) fn answer(
        &mut self,
        raw: &[u8],
        key: &[u8],
        q: &Question,
        out: &mut Vec<u8>,
    ) -> bool {
        let a = match self.current.answers.get(key) {
            Some(a) => a,
            None => {
                let Some((k, a)) = self.previous.answers.remove_entry(key) else {
                    return false;
                };
                self.previous.bytes -= cost(&k, &a);
                self.keep(k, a);
                &self.current.answers[key]
            }
        };
        if a.len() > q.limit || a.len() < q.end {
            return false;
        }
        out.clear();
        out.extend_from_slice(a);
        out[..2].copy_from_slice(&raw[..2]);
        out[2] = (out[2] & !0x01) | (raw[2] & 0x01); // RD
        out[3] = (out[3] & !0x10) | (raw[3] & 0x10); // CD
        out[12..q.end].copy_from_slice(&raw[12..q.end]);
        true
    }

    /// Puts an answer in the current generation, which becomes the previous one first when it
    /// has no room left.
    fn keep(&mut self, key: Box<[u8]>, answer: Box<[u8]>) {
        if cost(&key, &answer) > MAX_BYTES / 2 {
            return;
        }
        if self.current.bytes + cost(&key, &answer) > MAX_BYTES / 2 {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, answer);
    }

    /// Keeps `answer` to `raw` (a query of the cached shape) unless it was truncated or does not
    /// carry the query's question (an error answered with the header alone, say).
    pub(crate) fn insert(&mut self, raw: &[u8], key: &[u8], q: &Question, answer: &[u8]) {
        let echoes = answer.len() >= q.end
            && answer[4..6] == [0, 1]
            && answer[12..q.end].eq_ignore_ascii_case(&raw[12..q.end]);
        if !echoes || answer[2] & 0x02 != 0 {
            return;
        }
        if let Some(old) = self.previous.answers.remove(key) {
            self.previous.bytes -= cost(key, &old);
        }
        self.keep(key.into(), answer.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&[0, 1, 0, 1]);
        q
    }

    /// An answer to `q`: the query with QR set and `extra` bytes of answer section.
    fn answer_to(q: &[u8], extra: usize) -> Vec<u8> {
        let mut a = q.to_vec();
        a[2] |= 0x80;
        a.extend(std::iter::repeat_n(0u8, extra));
        a
    }

    #[test]
    fn the_cache_stays_within_its_bytes_and_keeps_what_is_asked_again() {
        let mut cache = AnswerCache::default();
        let (mut key, mut out) = (Vec::new(), Vec::new());
        let hot = query("hot.default.svc.cluster.local");
        let hq = question(&hot, &mut key).expect("a plain query");
        cache.insert(&hot, &key, &hq, &answer_to(&hot, 100));
        let mut most = 0;
        for i in 0..100_000 {
            let q = query(&format!("name-{i}.default.svc.cluster.local"));
            let shape = question(&q, &mut key).expect("a plain query");
            cache.insert(&q, &key, &shape, &answer_to(&q, 200));
            most = most.max(cache.bytes());
            // The hot name is asked every hundred new names: it stays.
            if i % 100 == 0 {
                question(&hot, &mut key).expect("a plain query");
                assert!(cache.answer(&hot, &key, &hq, &mut out), "lost at {i}");
            }
        }
        assert!(most <= MAX_BYTES, "{most} bytes held");
        // Names not asked again since went with their generation; the last ones are there.
        let first = query("name-0.default.svc.cluster.local");
        let fq = question(&first, &mut key).expect("a plain query");
        assert!(!cache.answer(&first, &key, &fq, &mut out));
        let last = query("name-99999.default.svc.cluster.local");
        let lq = question(&last, &mut key).expect("a plain query");
        assert!(cache.answer(&last, &key, &lq, &mut out));
        assert_eq!(out[..2], last[..2]);
    }
}
