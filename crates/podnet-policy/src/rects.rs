//! Boxes of (address range, protocol range, port range), made disjoint: nftables interval sets
//! refuse overlapping elements, and rules of several policies overlap freely.

use std::collections::BTreeMap;

/// An inclusive range.
pub type Span<T> = (T, T);

/// Disjoint address × port boxes.
type Boxes = Vec<(Span<u32>, Span<u16>)>;

/// One element of an interval set: addresses, protocols and ports, all inclusive.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Rect {
    pub addr: Span<u32>,
    pub proto: Span<u8>,
    pub port: Span<u16>,
}

impl Rect {
    /// One address, one protocol, one port: an element of a group's hash set.
    pub fn is_point(&self) -> bool {
        self.addr.0 == self.addr.1 && self.proto.0 == self.proto.1 && self.port.0 == self.port.1
    }
}

/// A group's elements: the points as they are (a hash set takes them, overlaps and all; a
/// pod joining or leaving adds or deletes just its own), the rest as [`normalize`] makes them
/// (disjoint, for the interval set). The union is `rects`'.
pub fn group_elements(rects: &[Rect]) -> std::collections::BTreeSet<Rect> {
    let (points, ranges): (Vec<Rect>, Vec<Rect>) = rects.iter().partition(|r| r.is_point());
    let mut out: std::collections::BTreeSet<Rect> = points.into_iter().collect();
    out.extend(normalize(&ranges));
    out
}

/// The union of `rects` as disjoint boxes, in a canonical order: the same union always gives
/// the same boxes, so that two plans compare element by element.
pub fn normalize(rects: &[Rect]) -> Vec<Rect> {
    // Split the protocol axis at every boundary, then the address axis within each piece.
    let mut cuts: Vec<u16> = rects
        .iter()
        .flat_map(|r| [u16::from(r.proto.0), u16::from(r.proto.1) + 1])
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    // Protocol pieces with the same boxes, side by side, become one.
    let mut pieces: Vec<(Span<u16>, Boxes)> = Vec::new();
    for w in cuts.windows(2) {
        let (lo, hi) = (w[0], w[1] - 1);
        let inside: Vec<(Span<u32>, Span<u16>)> = rects
            .iter()
            .filter(|r| u16::from(r.proto.0) <= lo && hi <= u16::from(r.proto.1))
            .map(|r| (r.addr, r.port))
            .collect();
        let boxes = normalize_2d(&inside);
        match pieces.last_mut() {
            Some((span, last)) if span.1 + 1 == lo && *last == boxes => span.1 = hi,
            _ => pieces.push(((lo, hi), boxes)),
        }
    }
    let mut out: Vec<Rect> = pieces
        .into_iter()
        .flat_map(|((lo, hi), boxes)| {
            boxes.into_iter().map(move |(addr, port)| Rect {
                addr,
                proto: (lo as u8, hi as u8),
                port,
            })
        })
        .collect();
    out.sort();
    out
}

/// The union of address × port boxes as disjoint boxes: a sweep over the address axis keeping
/// the port ranges in force, merging neighbours with the same ports.
fn normalize_2d(boxes: &[(Span<u32>, Span<u16>)]) -> Boxes {
    // Events: at an address, port ranges start (+1) or end (-1).
    let mut events: BTreeMap<u64, Vec<(Span<u16>, i32)>> = BTreeMap::new();
    for &((a, b), port) in boxes {
        events.entry(u64::from(a)).or_default().push((port, 1));
        events.entry(u64::from(b) + 1).or_default().push((port, -1));
    }
    let mut active: BTreeMap<Span<u16>, i32> = BTreeMap::new();
    // (start, ports) of the segment being built.
    let mut open: Option<(u64, Vec<Span<u16>>)> = None;
    let mut out = Vec::new();
    for (at, changes) in events {
        for (port, d) in changes {
            let c = active.entry(port).or_insert(0);
            *c += d;
            if *c == 0 {
                active.remove(&port);
            }
        }
        let ports = union(active.keys().copied());
        match &open {
            Some((_, current)) if *current == ports => continue,
            _ => {}
        }
        if let Some((start, current)) = open.take() {
            for p in current {
                out.push(((start as u32, (at - 1) as u32), p));
            }
        }
        if !ports.is_empty() {
            open = Some((at, ports));
        }
    }
    out
}

/// The union of port ranges, sorted and disjoint (touching ranges merged).
fn union(ranges: impl Iterator<Item = Span<u16>>) -> Vec<Span<u16>> {
    let mut v: Vec<Span<u16>> = ranges.collect();
    v.sort_unstable();
    let mut out: Vec<Span<u16>> = Vec::new();
    for (lo, hi) in v {
        match out.last_mut() {
            Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn covers(rects: &[Rect], a: u32, p: u8, port: u16) -> bool {
        rects.iter().any(|r| {
            (r.addr.0..=r.addr.1).contains(&a)
                && (r.proto.0..=r.proto.1).contains(&p)
                && (r.port.0..=r.port.1).contains(&port)
        })
    }

    fn rect() -> impl Strategy<Value = Rect> {
        (
            0u32..64,
            0u32..16,
            prop_oneof![Just((6u8, 6u8)), Just((17, 17)), Just((0, 255))],
            0u16..40,
            0u16..20,
        )
            .prop_map(|(a, w, proto, p, pw)| Rect {
                addr: (a, a + w),
                proto,
                port: (p, p + pw),
            })
    }

    proptest! {
        /// Normalizing keeps exactly the same points and leaves no two boxes overlapping.
        #[test]
        fn same_points_no_overlap(rects in proptest::collection::vec(rect(), 0..12)) {
            let n = normalize(&rects);
            for a in 0..90u32 {
                for p in [0u8, 6, 17, 132] {
                    for port in 0..70u16 {
                        let inside = n.iter().filter(|r| {
                            (r.addr.0..=r.addr.1).contains(&a)
                                && (r.proto.0..=r.proto.1).contains(&p)
                                && (r.port.0..=r.port.1).contains(&port)
                        }).count();
                        prop_assert!(inside <= 1, "overlap at {a} {p} {port}: {n:?}");
                        prop_assert_eq!(inside == 1, covers(&rects, a, p, port));
                    }
                }
            }
        }
    }

    #[test]
    fn the_whole_space_is_one_box() {
        let all = Rect {
            addr: (0, u32::MAX),
            proto: (0, 255),
            port: (0, u16::MAX),
        };
        let inner = Rect {
            addr: (5, 5),
            proto: (6, 6),
            port: (80, 80),
        };
        assert_eq!(normalize(&[all, inner]), [all]);
        assert_eq!(normalize(&[inner, inner]), [inner]);
    }
}
