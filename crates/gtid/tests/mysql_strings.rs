//! Parsing and printing real `@@gtid_executed` / `SESSION_TRACK_GTIDS`
//! strings, and the errors malformed inputs produce.

use causeway_gtid::{Gtid, GtidError, GtidSet, Tag, Tsid, Uuid, MAX_GNO};

const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const U2: &str = "8a94f357-aab4-11df-86ab-c80aa9429563";

fn set(s: &str) -> GtidSet {
    GtidSet::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn canon(s: &str) -> String {
    set(s).to_string()
}

fn err(s: &str) -> GtidError {
    match GtidSet::parse(s) {
        Ok(v) => panic!("{s:?} parsed as {v}"),
        Err(e) => e,
    }
}

#[test]
fn empty_and_whitespace() {
    for s in ["", " ", "\n", " \t\r\n ", ",", " , ,\n,"] {
        assert!(set(s).is_empty(), "{s:?}");
        assert_eq!(canon(s), "");
    }
}

#[test]
fn simple_untagged() {
    assert_eq!(canon(&format!("{U1}:1-5")), format!("{U1}:1-5"));
    assert_eq!(canon(&format!("{U1}:1")), format!("{U1}:1"));
    assert_eq!(canon(&format!("{U1}:1-1")), format!("{U1}:1"));
    assert_eq!(
        canon(&format!("{U1}:1-5:7-9:11")),
        format!("{U1}:1-5:7-9:11")
    );
    assert_eq!(set(&format!("{U1}:1-5:7-9:11")).count(), 9);
}

#[test]
fn real_multi_uuid_output_with_newlines() {
    // As `SELECT @@gtid_executed` prints it.
    let raw = "2174b383-5441-11e8-b90a-c80aa9429562:1-3,\n\
               24da167-0c0c-11e8-8442-00059a3c7b00:1-19"
        .replace("24da167-", "224da167-");
    let s = set(&raw);
    assert_eq!(s.num_sources(), 2);
    assert_eq!(s.to_string(), raw.replace('\n', ""));
    assert_eq!(format!("{s:#}"), raw);
}

#[test]
fn real_tagged_output() {
    let raw = format!("{U1}:1-5:tag1:1-3:tag2:7,\n{U2}:aa:1-2:bb:3");
    let s = set(&raw);
    assert_eq!(s.num_sources(), 5);
    assert_eq!(s.to_string(), raw.replace('\n', ""));
    let tag1 = Tsid::new(Uuid::parse(U1).unwrap(), Tag::new("tag1").unwrap());
    assert_eq!(s.intervals(&tag1).len(), 1);
    assert!(s.contains_gtid(&Gtid::parse(&format!("{U1}:tag2:7")).unwrap()));
    assert!(!s.contains_gtid(&Gtid::parse(&format!("{U1}:tag2:6")).unwrap()));
    assert!(!s.contains_gtid(&Gtid::parse(&format!("{U1}:7")).unwrap()));
    // Only tags under a UUID.
    assert_eq!(canon(&format!("{U1}:x:1-3")), format!("{U1}:x:1-3"));
}

#[test]
fn normalisation() {
    // Uppercase UUID and tag, unsorted, overlapping, adjacent, repeated UUIDs.
    let input = format!(
        " {u2} : 5 , {u1}:TAG_B:3:Tag_A:1-2 ,\n {u1}:4-6:1-3 ,{u2}:1-4:zz:9 , {u1}:tag_a:3 ",
        u1 = U1.to_uppercase(),
        u2 = U2
    );
    assert_eq!(
        canon(&input),
        format!("{U1}:1-6:tag_a:1-3:tag_b:3,{U2}:1-5:zz:9")
    );
}

#[test]
fn tag_after_intervals_and_switching_tags() {
    // A tag applies to the intervals after it, until the next tag.
    let s = set(&format!("{U1}:a:1:b:2:a:3"));
    assert_eq!(s.to_string(), format!("{U1}:a:1:3:b:2"));
}

#[test]
fn bare_uuid_and_bare_tag_are_empty() {
    assert!(set(U1).is_empty());
    assert!(set(&format!("{U1}:tag")).is_empty());
    assert_eq!(canon(&format!("{U1}:tag,{U2}:1")), format!("{U2}:1"));
}

#[test]
fn whitespace_inside_entries() {
    assert_eq!(
        canon(&format!("{U1} : 1 - 5 : tag : 7\n,\n\t{U2}:3")),
        format!("{U1}:1-5:tag:7,{U2}:3")
    );
}

#[test]
fn extremes() {
    let max = format!("{U1}:1-{MAX_GNO}");
    assert_eq!(canon(&max), max);
    assert_eq!(canon(&format!("{U1}:0001-007")), format!("{U1}:1-7"));
    let e = err(&format!("{U1}:1-{}", MAX_GNO + 1));
    assert!(matches!(e, GtidError::GnoOutOfRange { .. }), "{e}");
    assert_eq!(e.offending(), (MAX_GNO + 1).to_string());
    let e = err(&format!("{U1}:99999999999999999999999"));
    assert!(e.to_string().contains("99999999999999999999999"), "{e}");
}

#[test]
fn error_interval_end_missing() {
    let e = err(&format!("{U1}:1-"));
    assert_eq!(
        e.to_string(),
        format!("invalid GTID set near '{U1}:1-': interval end missing")
    );
    let e = err(&format!("{U1}:1-,{U2}:1"));
    assert_eq!(e.offending(), format!("{U1}:1-"));
}

#[test]
fn error_bad_uuid() {
    let e = err("abc:1-5");
    assert_eq!(e.to_string(), "bad UUID 'abc'");
    assert_eq!(e.offending(), "abc");
    let e = err(&format!("{U1}:1,xyz"));
    assert_eq!(e.to_string(), "bad UUID 'xyz'");
    let e = err(&format!("{U1}:1,{}:2", &U2[..35]));
    assert_eq!(e.offending(), &U2[..35]);
    // No hyphens: MySQL's text output always has them.
    let e = err(&format!("{}:1", U1.replace('-', "")));
    assert!(matches!(e, GtidError::BadUuid { .. }));
}

#[test]
fn error_reversed() {
    let e = err(&format!("{U1}:5-3"));
    assert_eq!(e.to_string(), "interval 5-3 is reversed");
    assert_eq!(e.offending(), "5-3");
}

#[test]
fn error_zero() {
    let e = err(&format!("{U1}:0"));
    assert_eq!(e.to_string(), "0 is not a valid transaction number");
    let e = err(&format!("{U1}:1-00"));
    assert_eq!(e.offending(), "00");
    assert!(matches!(
        err(&format!("{U1}:0-5")),
        GtidError::ZeroGno { .. }
    ));
}

#[test]
fn error_bad_tag() {
    let long = "t".repeat(33);
    let e = err(&format!("{U1}:{long}:1"));
    assert!(matches!(e, GtidError::BadTag { .. }), "{e}");
    assert_eq!(e.offending(), long);
    assert!(e.to_string().contains("longer than 32"), "{e}");
    // A tag may not contain '-'.
    let e = err(&format!("{U1}:my-tag:1"));
    assert!(e.to_string().contains("near '"), "{e}");
    assert!(e.offending().contains("-tag:1"), "{e}");
}

#[test]
fn error_syntax_cases() {
    for (input, piece, reason) in [
        (
            format!("{U1}:"),
            format!("{U1}:"),
            "expected a tag or a transaction number",
        ),
        (
            format!("{U1}::1"),
            format!("{U1}::1"),
            "expected a tag or a transaction number",
        ),
        (format!("{U1}:1 2"), "2".into(), "expected ',' or ':'"),
        (format!("{U1}:1;{U2}:1"), ";".into(), "expected ',' or ':'"),
        (
            format!("{U1}:-5"),
            "-5".into(),
            "expected a tag or a transaction number",
        ),
        (format!("{U1}:1-x"), "1-x".into(), "interval end missing"),
        (
            format!("{U1}:é"),
            "é".into(),
            "expected a tag or a transaction number",
        ),
        (
            format!("{U1}:+1"),
            "+1".into(),
            "expected a tag or a transaction number",
        ),
    ] {
        let e = err(&input);
        let msg = e.to_string();
        assert!(msg.starts_with("invalid GTID set near '"), "{msg}");
        assert!(msg.contains(reason), "{input}: {msg}");
        assert!(e.offending().contains(piece.as_str()), "{input}: {msg}");
    }
}

#[test]
fn error_context_is_clipped_for_long_entries() {
    let many: Vec<String> = (1..2000).map(|k| (k * 3).to_string()).collect();
    let input = format!("{U1}:{}:7-", many.join(":"));
    let e = err(&input);
    assert!(e.offending().starts_with("..."), "{e}");
    assert!(e.offending().ends_with(":7-"), "{e}");
    assert!(e.offending().len() < 60, "{e}");
    let e = err(&format!("{}:1", "z".repeat(1000)));
    assert!(e.offending().len() < 60, "{e}");
}

#[test]
fn session_track_gtids_value() {
    // The OK packet's SESSION_TRACK_GTIDS payload is a set string too.
    let s = set(&format!("{U1}:1-42"));
    let g = Gtid::parse(&format!("{U1}:42")).unwrap();
    assert!(s.contains_gtid(&g));
    let single = GtidSet::from_iter([g]);
    assert!(s.contains(&single));
    assert_eq!(single.to_string(), format!("{U1}:42"));
    assert_eq!(
        Gtid::parse(&format!("{U1}:x:1")).unwrap().to_string(),
        format!("{U1}:x:1")
    );
    let e = Gtid::parse(&format!("{U1}:1-2")).unwrap_err();
    assert!(e.to_string().starts_with("invalid GTID near"), "{e}");
}

#[test]
fn contains_and_union_examples() {
    let a = set(&format!("{U1}:1-10:20-30,{U2}:1-5:t:1"));
    assert!(a.contains(&set(&format!("{U1}:3-7:25"))));
    assert!(a.contains(&set(&format!("{U2}:t:1"))));
    assert!(!a.contains(&set(&format!("{U2}:u:1"))));
    assert!(!a.contains(&set(&format!("{U1}:10-20"))));
    assert!(a.contains(&GtidSet::new()));
    assert!(!GtidSet::new().contains(&a));
    let mut b = set(&format!("{U1}:11-19,{U2}:t:2"));
    b.union(&a);
    assert_eq!(b.to_string(), format!("{U1}:1-30,{U2}:1-5:t:1-2"));
    let mut c = GtidSet::new();
    c.add(Uuid::parse(U2).unwrap(), Tag::UNTAGGED, 7).unwrap();
    c.add(Uuid::parse(U1).unwrap(), Tag::new("Q").unwrap(), 1)
        .unwrap();
    assert!(c.add(Uuid::parse(U1).unwrap(), Tag::UNTAGGED, 0).is_err());
    let tsid = Tsid::new(Uuid::parse(U1).unwrap(), Tag::UNTAGGED);
    assert!(c.add_interval(tsid, 5, 3).is_err());
    c.add_interval(tsid, 3, 5).unwrap();
    assert_eq!(c.to_string(), format!("{U1}:3-5:q:1,{U2}:7"));
    assert_eq!(a.unioned(&c), c.unioned(&a));
}

#[test]
fn large_sets_are_fast() {
    // 10,000 intervals: parse, contains and union must stay near-linear.
    let text = |off: u64| {
        let ivs: Vec<String> = (0..10_000u64)
            .map(|k| format!("{}-{}", k * 10 + off, k * 10 + off + 2))
            .collect();
        format!("{U1}:{}", ivs.join(":"))
    };
    let start = std::time::Instant::now();
    let a = set(&text(1));
    let b = set(&text(5));
    assert!(a.contains(&a.clone()));
    assert!(!a.contains(&b));
    let mut u = a.clone();
    u.union(&b);
    assert!(u.contains(&a) && u.contains(&b));
    assert_eq!(u.count(), 60_000);
    assert_eq!(set(&u.to_string()), u);
    assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
}
