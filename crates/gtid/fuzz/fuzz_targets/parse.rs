//! Fuzz target: parse arbitrary UTF-8 as a GTID set (and as a single
//! GTID); whatever parses must print to a canonical string that reparses to
//! the same value and prints identically.

#![no_main]

use causeway_gtid::{Gtid, GtidSet, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(set) = GtidSet::parse(text) {
        let printed = set.to_string();
        let again = GtidSet::parse(&printed).expect("canonical output must reparse");
        assert_eq!(again, set);
        assert_eq!(again.to_string(), printed);
        let alternate = format!("{set:#}");
        assert_eq!(GtidSet::parse(&alternate).expect("alternate form"), set);
        assert!(set.contains(&set));
    }
    if let Ok(set) = GtidSet::parse_limited(text, &Limits::TOKEN) {
        assert!(set.num_intervals() <= Limits::TOKEN.max_intervals);
        assert!(set.num_sources() <= Limits::TOKEN.max_sources);
        assert_eq!(GtidSet::parse(text).expect("limited parse is stricter"), set);
    }
    if let Ok(gtid) = Gtid::parse(text) {
        let printed = gtid.to_string();
        assert_eq!(Gtid::parse(&printed).expect("GTID must reparse"), gtid);
        assert!(GtidSet::parse(&printed)
            .expect("GTID is a set")
            .contains_gtid(&gtid));
    }
});
