//! Property tests: printing and parsing are inverse, union, difference and
//! `contains` obey the set laws, and all agree with a naive model that
//! expands a set into a `BTreeSet<(uuid, tag, gno)>`; parsing under
//! [`Limits`] accepts exactly what fits and never panics.

use std::collections::BTreeSet;

use causeway_gtid::{Gtid, GtidError, GtidSet, Limits, Tag, Tsid, Uuid, MAX_GNO};
use proptest::prelude::*;

const UUIDS: [&str; 3] = [
    "3e11fa47-71ca-11e1-9e33-c80aa9429562",
    "00000000-0000-0000-0000-000000000001",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
];
const TAGS: [&str; 4] = ["", "a", "tag_b", "z9"];
/// Small universe of transaction numbers so subsets happen often.
const MAX_SMALL: u64 = 16;

/// One generated interval: (uuid index, tag index, start, end).
type Item = (usize, usize, u64, u64);
type Model = BTreeSet<(usize, usize, u64)>;

fn tsid(u: usize, t: usize) -> Tsid {
    let tag = if TAGS[t].is_empty() {
        Tag::UNTAGGED
    } else {
        Tag::new(TAGS[t]).unwrap()
    };
    Tsid::new(Uuid::parse(UUIDS[u]).unwrap(), tag)
}

fn items(max: u64, max_len: u64) -> impl Strategy<Value = Vec<Item>> {
    prop::collection::vec(
        (0..UUIDS.len(), 0..TAGS.len(), 1..=max, 0..=max_len)
            .prop_map(move |(u, t, s, l)| (u, t, s, s.saturating_add(l).min(max))),
        0..8,
    )
}

fn small_items() -> impl Strategy<Value = Vec<Item>> {
    items(MAX_SMALL, 4)
}

fn build(items: &[Item]) -> GtidSet {
    let mut set = GtidSet::new();
    for &(u, t, s, e) in items {
        set.add_interval(tsid(u, t), s, e).unwrap();
    }
    set
}

fn model(items: &[Item]) -> Model {
    items
        .iter()
        .flat_map(|&(u, t, s, e)| (s..=e).map(move |n| (u, t, n)))
        .collect()
}

/// Renders items as MySQL would accept them but not print them: input
/// order, one entry per item, random case and whitespace.
fn messy_text(items: &[Item], upper: bool, ws: &str) -> String {
    items
        .iter()
        .map(|&(u, t, s, e)| {
            let uuid = if upper {
                UUIDS[u].to_uppercase()
            } else {
                UUIDS[u].to_string()
            };
            let tag = if TAGS[t].is_empty() {
                String::new()
            } else if upper {
                format!("{ws}:{ws}{}", TAGS[t].to_uppercase())
            } else {
                format!(":{}", TAGS[t])
            };
            format!("{ws}{uuid}{tag}{ws}:{ws}{s}{ws}-{ws}{e}{ws}")
        })
        .collect::<Vec<_>>()
        .join(&format!(",{ws}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn print_parse_roundtrip(it in items(MAX_GNO, u64::MAX)) {
        let s = build(&it);
        let text = s.to_string();
        let back = GtidSet::parse(&text).unwrap();
        prop_assert_eq!(&back, &s);
        prop_assert_eq!(back.to_string(), text.clone());
        let alt = format!("{s:#}");
        prop_assert_eq!(GtidSet::parse(&alt).unwrap(), s);
        prop_assert_eq!(alt.replace('\n', ""), text);
    }

    #[test]
    fn messy_text_parses_to_model(
        it in small_items(),
        upper in any::<bool>(),
        ws in prop::sample::select(vec!["", " ", "\n", " \t\r\n"]),
    ) {
        let parsed = GtidSet::parse(&messy_text(&it, upper, ws)).unwrap();
        prop_assert_eq!(&parsed, &build(&it));
        let m = model(&it);
        prop_assert_eq!(parsed.count(), m.len() as u128);
        prop_assert_eq!(parsed.is_empty(), m.is_empty());
        for u in 0..UUIDS.len() {
            for t in 0..TAGS.len() {
                for n in 1..=MAX_SMALL + 1 {
                    let g = Gtid::new(tsid(u, t).uuid, tsid(u, t).tag, n).unwrap();
                    prop_assert_eq!(parsed.contains_gtid(&g), m.contains(&(u, t, n)));
                }
            }
        }
    }

    #[test]
    fn canonical_form_is_unique(it in small_items(), seed in any::<u64>()) {
        // Same elements, inserted one GTID at a time in another order.
        let mut gtids: Vec<_> = model(&it).into_iter().collect();
        let len = gtids.len().max(1);
        gtids.rotate_left((seed as usize) % len);
        if seed % 2 == 1 {
            gtids.reverse();
        }
        let other: GtidSet = gtids
            .iter()
            .map(|&(u, t, n)| Gtid::new(tsid(u, t).uuid, tsid(u, t).tag, n).unwrap())
            .collect();
        let s = build(&it);
        prop_assert_eq!(other.to_string(), s.to_string());
        prop_assert_eq!(other, s);
    }

    #[test]
    fn union_laws(a in small_items(), b in small_items(), c in small_items()) {
        let (sa, sb, sc) = (build(&a), build(&b), build(&c));
        prop_assert_eq!(sa.unioned(&sb), sb.unioned(&sa));
        prop_assert_eq!(sa.unioned(&sb).unioned(&sc), sa.unioned(&sb.unioned(&sc)));
        prop_assert_eq!(sa.unioned(&sa), sa.clone());
        prop_assert_eq!(sa.unioned(&GtidSet::new()), sa.clone());
        let u = sa.unioned(&sb);
        prop_assert!(u.contains(&sa));
        prop_assert!(u.contains(&sb));
        // Union agrees with the model.
        let mut ab = a.clone();
        ab.extend(&b);
        prop_assert_eq!(&u, &build(&ab));
        let mut m = model(&a);
        m.extend(model(&b));
        prop_assert_eq!(u.count(), m.len() as u128);
    }

    #[test]
    fn contains_matches_model(a in small_items(), b in small_items()) {
        let (sa, sb) = (build(&a), build(&b));
        let (ma, mb) = (model(&a), model(&b));
        prop_assert_eq!(sa.contains(&sb), mb.is_subset(&ma));
        prop_assert_eq!(sb.contains(&sa), ma.is_subset(&mb));
        // Subsets of `a` built by dropping items are always contained.
        let half = &a[..a.len() / 2];
        prop_assert!(sa.contains(&build(half)));
    }

    #[test]
    fn contains_order_laws(a in small_items(), b in small_items(), c in small_items()) {
        let (sa, sb, sc) = (build(&a), build(&b), build(&c));
        prop_assert!(sa.contains(&sa));
        prop_assert!(sa.contains(&GtidSet::new()));
        if sa.contains(&sb) && sb.contains(&sc) {
            prop_assert!(sa.contains(&sc));
        }
        if sa.contains(&sb) && sb.contains(&sa) {
            prop_assert_eq!(&sa, &sb);
        }
        // Constructed chain c' ⊆ b' ⊆ a'.
        let bb = sb.unioned(&sc);
        let aa = bb.unioned(&sa);
        prop_assert!(aa.contains(&bb) && bb.contains(&sc) && aa.contains(&sc));
        // Antisymmetry on a pair that is equal by construction.
        let a2 = sc.unioned(&sa).unioned(&sb);
        prop_assert!(aa.contains(&a2) && a2.contains(&aa));
        prop_assert_eq!(aa, a2);
    }

    #[test]
    fn mutated_valid_text_never_panics(
        it in small_items(),
        edits in prop::collection::vec(
            (any::<prop::sample::Index>(), 0..3u8, prop::sample::select(
                vec![':', ',', '-', '0', '1', '9', 'a', 'F', '_', ' ', '\n', 'x', 'é'],
            )),
            1..4,
        ),
    ) {
        let mut chars: Vec<char> = messy_text(&it, false, " ").chars().collect();
        for (at, kind, c) in edits {
            let i = at.index(chars.len() + 1);
            match kind {
                0 => chars.insert(i, c),
                1 if i < chars.len() => chars[i] = c,
                _ if i < chars.len() => { chars.remove(i); }
                _ => chars.push(c),
            }
        }
        let text: String = chars.into_iter().collect();
        if let Ok(set) = GtidSet::parse(&text) {
            let printed = set.to_string();
            let back = GtidSet::parse(&printed).unwrap();
            prop_assert_eq!(back.to_string(), printed);
            prop_assert_eq!(back, set);
        } else {
            let e = GtidSet::parse(&text).unwrap_err();
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn parse_never_panics(s in "[0-9a-fA-F:,\\- \n_tgz]{0,80}") {
        if let Ok(set) = GtidSet::parse(&s) {
            prop_assert_eq!(GtidSet::parse(&set.to_string()).unwrap(), set);
        }
    }

    #[test]
    fn arbitrary_unicode_never_panics(s in "\\PC{0,60}") {
        if let Ok(set) = GtidSet::parse(&s) {
            prop_assert_eq!(GtidSet::parse(&set.to_string()).unwrap(), set);
        }
        let _ = Gtid::parse(&s);
    }

    #[test]
    fn difference_matches_model(a in small_items(), b in small_items()) {
        let (sa, sb) = (build(&a), build(&b));
        let d = sa.difference(&sb);
        let want: Model = model(&a).difference(&model(&b)).copied().collect();
        prop_assert_eq!(d.count(), want.len() as u128);
        for &(u, t, n) in &want {
            let g = Gtid::new(tsid(u, t).uuid, tsid(u, t).tag, n).unwrap();
            prop_assert!(d.contains_gtid(&g));
        }
        // canonical: printing and reparsing gives the same set and text
        let text = d.to_string();
        prop_assert_eq!(GtidSet::parse(&text).unwrap(), d.clone());
        prop_assert_eq!(GtidSet::parse(&text).unwrap().to_string(), text);
    }

    #[test]
    fn difference_laws(a in small_items(), b in small_items()) {
        let (sa, sb) = (build(&a), build(&b));
        let d = sa.difference(&sb);
        prop_assert!(sa.contains(&d));
        prop_assert!(d.unioned(&sb).contains(&sa));
        prop_assert!(d.difference(&sb) == d);
        prop_assert!(sa.difference(&sa).is_empty());
        prop_assert_eq!(sa.difference(&GtidSet::new()), sa.clone());
        prop_assert!(GtidSet::new().difference(&sa).is_empty());
        // nothing missing exactly when `b` already holds `a`
        prop_assert_eq!(d.is_empty(), sb.contains(&sa));
        // what is missing plus the intersection is everything
        let inter = sa.difference(&d);
        prop_assert_eq!(inter.unioned(&d), sa.clone());
    }

    #[test]
    fn difference_of_huge_gnos(it in items(MAX_GNO, u64::MAX), jt in items(MAX_GNO, u64::MAX)) {
        let (sa, sb) = (build(&it), build(&jt));
        let d = sa.difference(&sb);
        prop_assert!(sa.contains(&d));
        prop_assert!(d.unioned(&sb).contains(&sa));
        prop_assert_eq!(d.is_empty(), sb.contains(&sa));
    }

    #[test]
    fn limited_parse_round_trips_under_the_limits(it in items(MAX_GNO, u64::MAX)) {
        let s = build(&it);
        let text = s.to_string();
        prop_assert_eq!(GtidSet::parse_limited(&text, &Limits::TOKEN).unwrap(), s);
    }

    #[test]
    fn limits_hold_exactly(
        n_iv in 0usize..12,
        n_src in 1usize..6,
        max_iv in 0usize..12,
        max_src in 0usize..6,
    ) {
        // n_src entries of one UUID, n_iv disjoint intervals spread over them
        let mut text = String::new();
        for k in 0..n_src {
            text.push_str(UUIDS[0]);
            for i in (0..n_iv).filter(|i| i % n_src == k) {
                text.push_str(&format!(":{}", 2 * i + 1));
            }
            text.push(',');
        }
        let limits = Limits { max_len: 1 << 20, max_sources: max_src, max_intervals: max_iv };
        match GtidSet::parse_limited(&text, &limits) {
            Ok(set) => {
                prop_assert!(n_iv <= max_iv && n_src <= max_src);
                prop_assert_eq!(set.num_intervals(), n_iv);
            }
            Err(GtidError::TooLarge { what, limit, .. }) => {
                prop_assert!(n_iv > max_iv || n_src > max_src);
                prop_assert!((what == "intervals" && limit == max_iv) || (what == "UUIDs/tags" && limit == max_src));
            }
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
        let short = Limits { max_len: text.len().saturating_sub(1), ..Limits::NONE };
        let too_long = GtidSet::parse_limited(&text, &short);
        prop_assert!(matches!(too_long, Err(GtidError::TooLarge { what: "bytes", .. })), "{:?}", too_long);
    }

    #[test]
    fn limited_parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&bytes);
        let tiny = Limits { max_len: 200, max_sources: 3, max_intervals: 5 };
        if let Ok(set) = GtidSet::parse_limited(&text, &tiny) {
            prop_assert!(set.num_intervals() <= 5);
            prop_assert!(set.num_sources() <= 3);
            prop_assert_eq!(GtidSet::parse(&set.to_string()).unwrap(), set);
        }
        let _ = GtidSet::parse_limited(&text, &Limits::TOKEN);
    }
}
