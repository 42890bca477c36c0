//! Boxes of (address range, protocol range, port range), made disjoint: nftables interval sets
//! refuse overlapping elements, and rules of several policies overlap freely. A box is of one
//! family (it goes to that family's table); boxes of two families never meet.

use std::collections::BTreeMap;

use podnet_model::IpFamily;

/// An inclusive range.
pub type Span<T> = (T, T);

/// Disjoint address × port boxes.
type Boxes = Vec<(Span<u128>, Span<u16>)>;

/// One element of an interval set: addresses (of `family`, as numbers), protocols and ports,
/// all inclusive.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Rect {
    #[serde(default)]
    pub family: IpFamily,
    pub addr: Span<u128>,
    pub proto: Span<u8>,
    pub port: Span<u16>,
}

impl Rect {
    /// Whether it holds `ip` (of its family), `proto` and `port`.
    pub fn contains(&self, ip: std::net::IpAddr, proto: u8, port: u16) -> bool {
        IpFamily::of(ip) == self.family
            && (self.addr.0..=self.addr.1).contains(&addr_number(ip))
            && (self.proto.0..=self.proto.1).contains(&proto)
            && (self.port.0..=self.port.1).contains(&port)
    }
}

/// An address as the number boxes hold.
pub fn addr_number(ip: std::net::IpAddr) -> u128 {
    match ip {
        std::net::IpAddr::V4(a) => u128::from(u32::from(a)),
        std::net::IpAddr::V6(a) => u128::from(a),
    }
}

/// The address a box's number is, in `family`.
pub fn number_addr(family: IpFamily, n: u128) -> std::net::IpAddr {
    match family {
        IpFamily::Ipv4 => std::net::IpAddr::V4(std::net::Ipv4Addr::from(n as u32)),
        IpFamily::Ipv6 => std::net::IpAddr::V6(std::net::Ipv6Addr::from(n)),
    }
}

/// Every address of a family.
pub fn all_addresses(family: IpFamily) -> Span<u128> {
    match family {
        IpFamily::Ipv4 => (0, u128::from(u32::MAX)),
        IpFamily::Ipv6 => (0, u128::MAX),
    }
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
/// the same boxes, so that two plans compare element by element. Each family apart.
pub fn normalize(rects: &[Rect]) -> Vec<Rect> {
    let mut out = Vec::new();
    for family in IpFamily::ALL {
        let mine: Vec<Rect> = rects
            .iter()
            .filter(|r| r.family == family)
            .copied()
            .collect();
        if !mine.is_empty() {
            out.extend(normalize_family(family, &mine));
        }
    }
    out.sort();
    out
}

fn normalize_family(family: IpFamily, rects: &[Rect]) -> Vec<Rect> {
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
        let inside: Vec<(Span<u128>, Span<u16>)> = rects
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
                family,
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
fn normalize_2d(boxes: &[(Span<u128>, Span<u16>)]) -> Boxes {
    // Events: at an address, port ranges start (+1) or end (-1). An end after the last
    // address (u128::MAX + 1) is `End`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum At {
        Addr(u128),
        End,
    }
    let mut events: BTreeMap<At, Vec<(Span<u16>, i32)>> = BTreeMap::new();
    for &((a, b), port) in boxes {
        events.entry(At::Addr(a)).or_default().push((port, 1));
        let end = b.checked_add(1).map_or(At::End, At::Addr);
        events.entry(end).or_default().push((port, -1));
    }
    let mut active: BTreeMap<Span<u16>, i32> = BTreeMap::new();
    // (start, ports) of the segment being built.
    let mut open: Option<(u128, Vec<Span<u16>>)> = None;
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
            let last = match at {
                At::Addr(a) => a - 1,
                At::End => u128::MAX,
            };
            for p in current {
                out.push(((start, last), p));
            }
        }
        if let (false, At::Addr(a)) = (ports.is_empty(), at) {
            open = Some((a, ports));
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

/// Address × port boxes with their tags.
type TaggedBoxes = Vec<(Span<u128>, Span<u16>, u16)>;
/// Port ranges with their tags.
type TaggedPorts = Vec<TaggedPort>;
/// A port range with its tag.
type TaggedPort = (Span<u16>, u16);

/// The first-match partition of tagged boxes: disjoint boxes, each with the lowest tag of the
/// boxes that hold it (a tier's rules in order: the first to match decides), in a canonical
/// order. Each family apart.
pub fn first_match(rects: &[(Rect, u16)]) -> Vec<(Rect, u16)> {
    let mut out = Vec::new();
    for family in IpFamily::ALL {
        let mine: Vec<(Rect, u16)> = rects
            .iter()
            .filter(|(r, _)| r.family == family)
            .copied()
            .collect();
        if mine.is_empty() {
            continue;
        }
        let mut cuts: Vec<u16> = mine
            .iter()
            .flat_map(|(r, _)| [u16::from(r.proto.0), u16::from(r.proto.1) + 1])
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut pieces: Vec<(Span<u16>, TaggedBoxes)> = Vec::new();
        for w in cuts.windows(2) {
            let (lo, hi) = (w[0], w[1] - 1);
            let inside: TaggedBoxes = mine
                .iter()
                .filter(|(r, _)| u16::from(r.proto.0) <= lo && hi <= u16::from(r.proto.1))
                .map(|(r, t)| (r.addr, r.port, *t))
                .collect();
            let boxes = first_match_2d(&inside);
            match pieces.last_mut() {
                Some((span, last)) if span.1 + 1 == lo && *last == boxes => span.1 = hi,
                _ => pieces.push(((lo, hi), boxes)),
            }
        }
        for ((lo, hi), boxes) in pieces {
            out.extend(boxes.into_iter().map(|(addr, port, tag)| {
                (
                    Rect {
                        family,
                        addr,
                        proto: (lo as u8, hi as u8),
                        port,
                    },
                    tag,
                )
            }));
        }
    }
    out.sort();
    out
}

/// [`first_match`] on the address and port axes: a sweep over addresses keeping the tagged
/// port ranges in force, each port taking the lowest tag there.
fn first_match_2d(boxes: &[(Span<u128>, Span<u16>, u16)]) -> TaggedBoxes {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum At {
        Addr(u128),
        End,
    }
    let mut events: BTreeMap<At, Vec<(TaggedPort, i32)>> = BTreeMap::new();
    for &((a, b), port, tag) in boxes {
        events
            .entry(At::Addr(a))
            .or_default()
            .push(((port, tag), 1));
        let end = b.checked_add(1).map_or(At::End, At::Addr);
        events.entry(end).or_default().push(((port, tag), -1));
    }
    let mut active: BTreeMap<(Span<u16>, u16), i32> = BTreeMap::new();
    let mut open: Option<(u128, TaggedPorts)> = None;
    let mut out = Vec::new();
    for (at, changes) in events {
        for (k, d) in changes {
            let c = active.entry(k).or_insert(0);
            *c += d;
            if *c == 0 {
                active.remove(&k);
            }
        }
        let ports = lowest_tags(active.keys().copied());
        if matches!(&open, Some((_, current)) if *current == ports) {
            continue;
        }
        if let Some((start, current)) = open.take() {
            let last = match at {
                At::Addr(a) => a - 1,
                At::End => u128::MAX,
            };
            for (p, tag) in current {
                out.push(((start, last), p, tag));
            }
        }
        if let (false, At::Addr(a)) = (ports.is_empty(), at) {
            open = Some((a, ports));
        }
    }
    out
}

/// Port ranges with tags, as disjoint ranges each with the lowest tag of those that hold it
/// (touching ranges of one tag merged).
fn lowest_tags(ranges: impl Iterator<Item = (Span<u16>, u16)>) -> Vec<(Span<u16>, u16)> {
    let v: Vec<(Span<u16>, u16)> = ranges.collect();
    let mut cuts: Vec<u32> = v
        .iter()
        .flat_map(|((lo, hi), _)| [u32::from(*lo), u32::from(*hi) + 1])
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out: Vec<(Span<u16>, u16)> = Vec::new();
    for w in cuts.windows(2) {
        let (lo, hi) = (w[0], w[1] - 1);
        let tag = v
            .iter()
            .filter(|((a, b), _)| u32::from(*a) <= lo && hi <= u32::from(*b))
            .map(|(_, t)| *t)
            .min();
        let Some(tag) = tag else { continue };
        let (lo, hi) = (lo as u16, hi as u16);
        match out.last_mut() {
            Some(((_, last_hi), t)) if *t == tag && u32::from(*last_hi) + 1 == u32::from(lo) => {
                *last_hi = hi
            }
            _ => out.push(((lo, hi), tag)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn covers(rects: &[Rect], a: u128, p: u8, port: u16) -> bool {
        rects.iter().any(|r| {
            (r.addr.0..=r.addr.1).contains(&a)
                && (r.proto.0..=r.proto.1).contains(&p)
                && (r.port.0..=r.port.1).contains(&port)
        })
    }

    fn rect() -> impl Strategy<Value = Rect> {
        (
            0u128..64,
            0u128..16,
            prop_oneof![Just((6u8, 6u8)), Just((17, 17)), Just((0, 255))],
            0u16..40,
            0u16..20,
        )
            .prop_map(|(a, w, proto, p, pw)| Rect {
                family: IpFamily::Ipv4,
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
            for a in 0..90u128 {
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

    proptest! {
        /// The first-match partition gives each point the lowest tag of the boxes holding
        /// it, and no two of its boxes overlap.
        #[test]
        fn first_match_gives_each_point_its_first_box(
            tagged in proptest::collection::vec((rect(), 0u16..4), 0..10),
        ) {
            let n = first_match(&tagged);
            for a in 0..90u128 {
                for p in [0u8, 6, 17, 132] {
                    for port in 0..70u16 {
                        let hit = |r: &Rect| (r.addr.0..=r.addr.1).contains(&a)
                            && (r.proto.0..=r.proto.1).contains(&p)
                            && (r.port.0..=r.port.1).contains(&port);
                        let inside: Vec<u16> = n.iter().filter(|(r, _)| hit(r)).map(|(_, t)| *t).collect();
                        prop_assert!(inside.len() <= 1, "overlap at {a} {p} {port}: {n:?}");
                        let want = tagged.iter().filter(|(r, _)| hit(r)).map(|(_, t)| *t).min();
                        prop_assert_eq!(inside.first().copied(), want, "at {} {} {}", a, p, port);
                    }
                }
            }
        }
    }

    #[test]
    fn the_whole_space_is_one_box() {
        for family in IpFamily::ALL {
            let all = Rect {
                family,
                addr: all_addresses(family),
                proto: (0, 255),
                port: (0, u16::MAX),
            };
            let inner = Rect {
                family,
                addr: (5, 5),
                proto: (6, 6),
                port: (80, 80),
            };
            assert_eq!(normalize(&[all, inner]), [all]);
            assert_eq!(normalize(&[inner, inner]), [inner]);
        }
        // Two families' boxes stay apart, whatever their numbers.
        let four = Rect {
            family: IpFamily::Ipv4,
            addr: (5, 9),
            proto: (6, 6),
            port: (80, 80),
        };
        let six = Rect {
            family: IpFamily::Ipv6,
            ..four
        };
        assert_eq!(normalize(&[six, four]), [four, six]);
    }
}
