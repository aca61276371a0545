//! The replication sources of every monitored server, by `server_uuid`,
//! for the follow-mode rule that a replica takes reads only while it
//! replicates from the writer, directly or through replicas that do
//! ([`follows`]). Each task records its server's sources on every health
//! check; the map is shared by the tasks of one monitor.

use std::collections::HashMap;
use std::sync::Mutex;

/// Most hops followed from a replica towards the writer.
const MAX_HOPS: usize = 16;

/// Sources by server UUID (lowercase).
#[derive(Debug, Default)]
pub struct Sources {
    map: Mutex<HashMap<String, Vec<String>>>,
}

impl Sources {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<String>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that server `uuid` replicates from `sources` (empty: from
    /// nothing).
    pub fn record(&self, uuid: &str, sources: &[String]) {
        let sources: Vec<String> = sources.iter().map(|s| s.to_ascii_lowercase()).collect();
        let mut g = self.lock();
        let key = uuid.to_ascii_lowercase();
        if g.get(&key) != Some(&sources) {
            g.insert(key, sources);
        }
    }

    /// [`follows`] over the recorded map.
    pub fn follows(&self, sources: Option<&[String]>, writer: Option<&str>) -> Option<bool> {
        follows(&self.lock(), sources?, writer?)
    }
}

/// Whether a server replicating from `sources` follows `writer`: one of
/// them is the writer, or (up to [`MAX_HOPS`]) a server that follows it.
/// `Some(false)` when every chain ends at known servers without reaching
/// the writer; `None` when `sources` is empty (no receiver ever connected)
/// or a chain reaches a server nobody monitors (not known either way).
pub fn follows(
    map: &HashMap<String, Vec<String>>,
    sources: &[String],
    writer: &str,
) -> Option<bool> {
    if sources.is_empty() || writer.is_empty() {
        return None;
    }
    let writer = writer.to_ascii_lowercase();
    let mut seen: Vec<String> = Vec::new();
    let mut frontier: Vec<String> = sources.iter().map(|s| s.to_ascii_lowercase()).collect();
    let mut unknown = false;
    for _ in 0..MAX_HOPS {
        let mut next = Vec::new();
        for s in frontier {
            if s == writer {
                return Some(true);
            }
            if seen.contains(&s) {
                continue;
            }
            match map.get(&s) {
                Some(up) => next.extend(up.iter().cloned()),
                None => unknown = true,
            }
            seen.push(s);
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    if unknown {
        None
    } else {
        Some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn direct_chained_broken_and_unknown_chains() {
        let mut m = HashMap::new();
        m.insert("w".to_string(), v(&[]));
        m.insert("a".to_string(), v(&["w"]));
        m.insert("b".to_string(), v(&["a"]));
        m.insert("old".to_string(), v(&[]));
        m.insert("loop1".to_string(), v(&["loop2"]));
        m.insert("loop2".to_string(), v(&["loop1"]));
        assert_eq!(follows(&m, &v(&["W"]), "w"), Some(true));
        assert_eq!(follows(&m, &v(&["b"]), "w"), Some(true), "two hops");
        assert_eq!(
            follows(&m, &v(&["old"]), "w"),
            Some(false),
            "the dead old writer"
        );
        assert_eq!(
            follows(&m, &v(&["loop1"]), "w"),
            Some(false),
            "a cycle ends"
        );
        assert_eq!(follows(&m, &v(&["elsewhere"]), "w"), None, "not monitored");
        assert_eq!(follows(&m, &v(&[]), "w"), None);
        assert_eq!(
            follows(&m, &v(&["old", "a"]), "w"),
            Some(true),
            "one channel suffices"
        );
        let s = Sources::default();
        s.record("A", &v(&["W"]));
        assert_eq!(s.follows(Some(&v(&["a"])), Some("w")), Some(true));
        assert_eq!(s.follows(None, Some("w")), None);
        assert_eq!(s.follows(Some(&v(&["a"])), None), None);
    }
}
