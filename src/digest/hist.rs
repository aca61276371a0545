//! A small streaming latency sketch: 64 `u32` buckets on a log scale, two
//! per power of two of microseconds (1 µs to about 71 minutes), so a
//! quantile is known to within 50 % (and clamped to the observed min/max).

/// Number of buckets.
pub(crate) const BUCKETS: usize = 64;

/// Latency histogram (256 bytes).
#[derive(Clone, Debug)]
pub(crate) struct Hist {
    counts: [u32; BUCKETS],
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            counts: [0; BUCKETS],
        }
    }
}

/// The bucket of `us`: `2 * floor(log2 us)`, plus one in the upper half of
/// that power of two.
pub(crate) fn bucket(us: u64) -> usize {
    if us < 2 {
        return 0;
    }
    let lz = 63 - us.leading_zeros() as usize;
    let half = ((us >> (lz - 1)) & 1) as usize;
    (2 * lz + half).min(BUCKETS - 1)
}

/// The largest value bucket `i` holds.
pub(crate) fn upper(i: usize) -> u64 {
    let lz = (i / 2) as u32;
    if lz == 0 {
        return 1;
    }
    let base = 1u64 << lz;
    if i % 2 == 0 {
        base + (base >> 1) - 1
    } else {
        (base << 1) - 1
    }
}

impl Hist {
    pub(crate) fn record(&mut self, us: u64) {
        if let Some(c) = self.counts.get_mut(bucket(us)) {
            *c = c.saturating_add(1);
        }
    }

    /// The bucket counts.
    pub(crate) fn counts(&self) -> &[u32; BUCKETS] {
        &self.counts
    }

    /// The `q` quantile (0..=1) as a bucket's upper bound; 0 when empty.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        let total: u64 = self.counts.iter().map(|&c| u64::from(c)).sum();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return upper(i);
            }
        }
        upper(BUCKETS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_bounded() {
        for us in [0u64, 1, 2, 3, 4, 5, 6, 7, 8, 100, 1000, 123_456, u64::MAX] {
            let b = bucket(us);
            assert!(us <= upper(b) || b == BUCKETS - 1, "{us} in {b}");
            if b > 0 {
                assert!(us > upper(b - 1), "{us} in {b}");
            }
        }
    }

    #[test]
    fn p99() {
        let mut h = Hist::default();
        for _ in 0..99 {
            h.record(100);
        }
        h.record(50_000);
        assert_eq!(h.quantile(0.99), upper(bucket(100)));
        h.record(50_000);
        assert_eq!(h.quantile(0.99), upper(bucket(50_000)));
    }
}
