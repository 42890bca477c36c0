//! Encoded answers, reused: the UDP loop keeps the wire form of every answer it has given for the
//! current zone, keyed by the question (name in lower case, type, class) and whether the query
//! had EDNS. A repeated question is answered by copying that answer and putting the query's ID,
//! its RD and CD bits and its question bytes (the client's own letter case, RFC 4343) back in.
//! Everything else (opcodes, several questions, other sections, EDNS versions, truncation,
//! forwarding) takes the full path through hickory-proto and is never cached.
//!
//! The cache belongs to one zone: it is emptied when the zone changes, so a new zone is answered
//! from its first query on.

use std::collections::HashMap;
use std::sync::Arc;

use crate::Zone;

/// At most this many answers are kept; then the cache starts over.
const MAX_ENTRIES: usize = 200_000;

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
    answers: HashMap<Box<[u8]>, Box<[u8]>>,
}

impl AnswerCache {
    /// Empties the cache when `zone` is not the zone its answers came from.
    pub(crate) fn for_zone(&mut self, zone: &Arc<Zone>) {
        if !self.zone.as_ref().is_some_and(|z| Arc::ptr_eq(z, zone)) {
            self.answers.clear();
            self.zone = Some(zone.clone());
        }
    }

    /// The cached answer to `raw`, made the query's own, into `out`.
    pub(crate) fn answer(&self, raw: &[u8], key: &[u8], q: &Question, out: &mut Vec<u8>) -> bool {
        let Some(a) = self.answers.get(key) else {
            return false;
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

    /// Keeps `answer` to `raw` (a query of the cached shape) unless it was truncated or does not
    /// carry the query's question (an error answered with the header alone, say).
    pub(crate) fn insert(&mut self, raw: &[u8], key: &[u8], q: &Question, answer: &[u8]) {
        let echoes = answer.len() >= q.end
            && answer[4..6] == [0, 1]
            && answer[12..q.end].eq_ignore_ascii_case(&raw[12..q.end]);
        if !echoes || answer[2] & 0x02 != 0 {
            return;
        }
        if self.answers.len() >= MAX_ENTRIES {
            self.answers.clear();
        }
        self.answers.insert(key.into(), answer.into());
    }
}
