//! Deterministic names, the way the controllers shape them.
//!
//! Upstream controllers use random suffixes; podnet derives them from a hash of stable inputs so
//! that the same manifests always give the same plan.

/// The alphabet of `k8s.io/apimachinery/pkg/util/rand`: no vowels, no confusable characters.
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// 64-bit FNV-1a.
pub fn fnv64(parts: &[&[u8]]) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    for p in parts {
        h.write(p);
        // Separate the parts so that ("ab","c") and ("a","bc") differ.
        h.write(&[0xff]);
    }
    h.finish()
}

/// 32-bit FNV-1a, as the ReplicaSet controller hashes pod templates.
pub fn fnv32(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// `rand.SafeEncodeString`: maps each byte to the safe alphabet.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The `pod-template-hash` of a template: FNV-32a of its canonical JSON, safely encoded.
pub fn template_hash(template_json: &str) -> String {
    safe_encode(&fnv32(template_json.as_bytes()).to_string())
}

/// A 5-character suffix, as `generateName` produces, derived from `seed`.
pub fn suffix5(seed: u64) -> String {
    let mut n = seed;
    let mut s = String::with_capacity(5);
    for _ in 0..5 {
        s.push(ALPHANUMS[(n % ALPHANUMS.len() as u64) as usize] as char);
        n /= ALPHANUMS.len() as u64;
    }
    s
}

/// `generateName` truncation: the base is cut to leave room for the suffix (63 - 5 = 58).
pub fn generate_name(base: &str, seed: u64) -> String {
    let max = 58;
    let base = if base.len() > max { &base[..max] } else { base };
    format!("{base}{}", suffix5(seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_safe() {
        assert_eq!(template_hash("{}"), template_hash("{}"));
        assert_ne!(template_hash("{\"a\":1}"), template_hash("{\"a\":2}"));
        let s = suffix5(fnv64(&[b"x"]));
        assert_eq!(s.len(), 5);
        assert!(s.bytes().all(|b| ALPHANUMS.contains(&b)));
        assert_ne!(fnv64(&[b"ab", b"c"]), fnv64(&[b"a", b"bc"]));
        assert_eq!(generate_name(&"x".repeat(70), 1).len(), 63);
    }
}
