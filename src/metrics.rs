//! Metric names, as documented constants (the README lists them), and the
//! label values causeway uses. Recording goes through the `metrics` facade;
//! `crate::admin` installs the Prometheus exporter and sets the gauges
//! (from the topology snapshot, every second and on every scrape); the
//! counters and the histograms are recorded where things happen
//! (`frontend`, `backend::pool`, `balance`, `topology`, `reload`, `cache`,
//! `rules`).

/// Counter: statements forwarded, labels `route` (see [`route`]) and
/// `backend`.
pub const STATEMENTS: &str = "causeway_statements_total";
/// Histogram (seconds): statement latency through the proxy, label `tier`
/// (primary, replica).
pub const STATEMENT_SECONDS: &str = "causeway_statement_duration_seconds";
/// Counter: causal reads by `outcome` (replica, waited, fallback, error).
pub const CAUSAL_READS: &str = "causeway_causal_reads_total";
/// Gauge: replica lag in milliseconds as measured by the monitor, label
/// `backend` (absent while unknown).
pub const REPLICA_LAG_MS: &str = "causeway_replica_lag_ms";
/// Gauge: 1 when the backend is eligible for routing, label `backend`.
pub const BACKEND_ELIGIBLE: &str = "causeway_backend_eligible";
/// Gauge: 1 when the backend answered its last health check, label `backend`.
pub const BACKEND_UP: &str = "causeway_backend_up";
/// Gauge: 1 when `read_only` or `super_read_only` is on, label `backend`
/// (absent until the monitor read it). 0 on a replica is a split-brain risk.
pub const BACKEND_READ_ONLY: &str = "causeway_backend_read_only";
/// Gauge: 1 when a replica's replication source is not the configured
/// primary (source UUID ≠ the primary's `server_uuid`), label `backend`
/// (replicas only; absent while unknown).
pub const BACKEND_SOURCE_MISMATCH: &str = "causeway_backend_source_mismatch";
/// Counter: config reloads by `result` (ok, error).
pub const RELOADS: &str = "causeway_reloads_total";
/// Gauge: connected clients (`Proxy::clients`).
pub const CLIENT_CONNECTIONS: &str = "causeway_client_connections";
/// Gauge: open backend connections, idle or in use
/// (`Pool::open_connections`), label `backend`.
pub const BACKEND_CONNECTIONS: &str = "causeway_backend_connections";
/// Gauge: backend connections handed out to sessions now, label `backend`.
pub const BACKEND_CONNECTIONS_IN_USE: &str = "causeway_backend_connections_in_use";
/// Gauge: idle pooled backend connections, label `backend`.
pub const BACKEND_CONNECTIONS_IDLE: &str = "causeway_backend_connections_idle";
/// Histogram (seconds): time a statement (or login) waited for a backend
/// connection from its pool, label `backend`.
pub const POOL_WAIT_SECONDS: &str = "causeway_pool_wait_seconds";
/// Histogram: commands in flight on a pipelined backend connection each
/// time it writes (`[server] pipeline_depth`), label `backend`.
pub const PIPELINE_DEPTH: &str = "causeway_pipeline_depth";
/// Counter: sessions pinned to one backend connection (state causeway
/// cannot replay on another), label `reason`.
pub const SESSION_PINS: &str = "causeway_session_pins_total";
/// Counter: client logins refused.
pub const LOGIN_FAILURES: &str = "causeway_login_failures_total";
/// Counter: backend failures a statement met: cannot connect (2003) or
/// connection lost before or during the reply (2013). Counted once per
/// failure, whether the read is then retried elsewhere or the error reaches
/// the client; a full pool (1040) is not a backend failure and not counted.
/// No labels (recorded in `frontend::session::fail_or_park`).
pub const BACKEND_ERRORS: &str = "causeway_backend_errors_total";

/// Counter: statements a query rule applied to, label `rule`.
pub const RULE_MATCHES: &str = "causeway_rule_matches_total";

/// `route` label values of [`STATEMENTS`]. Reads on the primary are
/// `primary_read` plus `fallback`; `primary` is everything else the
/// primary ran (writes, DDL, session statements).
pub mod route {
    /// Statements that must run on the primary.
    pub const PRIMARY: &str = "primary";
    /// Reads a replica could have run, sent to the primary by routing rule
    /// (inside a read-write transaction, pinned session) or by strong
    /// consistency.
    pub const PRIMARY_READ: &str = "primary_read";
    /// Reads sent to the primary because no replica could serve them
    /// (none eligible, or a causal wait timed out with on_timeout =
    /// fallback).
    pub const FALLBACK: &str = "fallback";
    /// Reads served by a replica.
    pub const REPLICA: &str = "replica";
}

/// Counter: writer changes made by `[failover] mode = "follow"` (a new
/// snapshot whose primary is the only reachable writable server).
pub const WRITER_CHANGES: &str = "causeway_writer_changes_total";
/// Gauge: 1 for the backend that takes writes now, 0 for the others, label
/// `backend` (all 0 while there is no writer or a split brain).
pub const WRITER: &str = "causeway_writer";
/// Gauge: 1 while two or more reachable servers are writable (writes are
/// refused), else 0.
pub const SPLIT_BRAIN: &str = "causeway_split_brain";
/// Counter: writes and transactions refused because of the writer status,
/// label `reason` (`split_brain`, `no_writer`, `writer_changed`).
pub const FENCED_WRITES: &str = "causeway_fenced_writes_total";
/// Counter: causal reads refused at once because GTIDs of their token were
/// lost in a failover.
pub const LOST_TOKENS: &str = "causeway_lost_tokens_total";

/// `reason` label values of [`FENCED_WRITES`].
pub mod fence_reason {
    /// Two or more servers are writable.
    pub const SPLIT_BRAIN: &str = "split_brain";
    /// No server became writable within `[failover] write_wait_ms`.
    pub const NO_WRITER: &str = "no_writer";
    /// The session's transaction was open on a writer that was replaced.
    pub const WRITER_CHANGED: &str = "writer_changed";
}

/// Counter: sessions whose replica changed (`read_balance = "session"`),
/// label `reason` (see [`move_reason`]).
pub const SESSION_MOVES: &str = "causeway_session_moves_total";

/// `reason` label values of [`SESSION_MOVES`].
pub mod move_reason {
    /// The session's replica left the eligible set (unhealthy, lagging,
    /// weight 0, removed).
    pub const LEFT: &str = "left";
    /// A replica that had left qualifies again and wins the session back.
    pub const RETURNED: &str = "returned";
    /// A reload changed the weights.
    pub const REWEIGHTED: &str = "reweighted";
    /// A reload added a replica.
    pub const ADDED: &str = "added";
    /// Sessions started or ended and a replica's count left its quota
    /// (exact weights, `crate::balance::ledger`).
    pub const REBALANCED: &str = "rebalanced";
}

/// Counter: reads routed to a replica while `[routing] zone` is set, label
/// `zone` (see [`zone_read`]).
pub const ZONE_READS: &str = "causeway_zone_reads_total";

/// `zone` label values of [`ZONE_READS`].
pub mod zone_read {
    /// The replica is in this instance's zone.
    pub const LOCAL: &str = "local";
    /// The replica is in another zone (or has none).
    pub const CROSS: &str = "cross";
}

/// `outcome` label values of [`CAUSAL_READS`].
pub mod outcome {
    /// Served by a replica that already had the token.
    pub const REPLICA: &str = "replica";
    /// Served by a replica after waiting for it.
    pub const WAITED: &str = "waited";
    /// Served by the primary after the wait timed out.
    pub const FALLBACK: &str = "fallback";
    /// Refused with an error after the wait timed out.
    pub const ERROR: &str = "error";
}

/// `result` label values of [`RELOADS`].
pub mod reload_result {
    /// The new configuration is serving.
    pub const OK: &str = "ok";
    /// The file was refused; the old configuration keeps serving.
    pub const ERROR: &str = "error";
}

/// Counter: cache lookups, labels `rule` and `result` (see
/// [`cache_result`]).
pub const CACHE_REQUESTS: &str = "causeway_cache_requests_total";
/// Counter: cache hits, labels `rule` and `level` (local: this instance's
/// memory; shared: the Redis level).
pub const CACHE_HITS: &str = "causeway_cache_hits_total";
/// Counter: operations on the cache's shared level, labels `op` (get, set)
/// and `result` (found, absent, refused, timeout, error, skipped; ok,
/// error, timeout, dropped).
pub const CACHE_SHARED_REQUESTS: &str = "causeway_cache_shared_requests_total";
/// Gauge: bytes held by the result cache.
pub const CACHE_BYTES: &str = "causeway_cache_bytes";
/// Counter: cache invalidations, label `reason`.
pub const CACHE_INVALIDATIONS: &str = "causeway_cache_invalidations_total";
/// Gauge: how far the cache's binlog reader is behind the primary, seconds.
pub const CACHE_READER_LAG_SECONDS: &str = "causeway_cache_reader_lag_seconds";
/// Histogram: per transaction, from its commit on the primary (its GTID
/// event's immediate commit timestamp) to the binlog reader processing it.
pub const BINLOG_LAG_SECONDS: &str = "causeway_binlog_reader_lag_seconds";
/// Counter: fresh reads, label `tables` (known, unknown).
pub const FRESH_READS: &str = "causeway_fresh_reads_total";

/// `result` label values of [`CACHE_REQUESTS`].
pub mod cache_result {
    /// Served from the cache.
    pub const HIT: &str = "hit";
    /// Ran on a backend; the result was offered to the cache.
    pub const MISS: &str = "miss";
    /// Ran on a backend without the cache (not cacheable now).
    pub const BYPASS: &str = "bypass";
}

/// Counter: statements by routing `reason` (the decision log's reasons:
/// `eventual`, `token_contained`, `waited`, `lag_budget_fallback`,
/// `no_replica`, `in_transaction`, `pinned`, `write`, `strong`,
/// `diagnostics`, `cache_hit`, `rule:<name>`).
pub const ROUTING_REASONS: &str = "causeway_routing_reasons_total";
/// Counter: decision log lines dropped because the writer's buffer was
/// full (a slow or blocked disk).
pub const DECISION_LOG_DROPPED: &str = "causeway_decision_log_dropped_total";
/// Histogram (seconds), rendered from the digest store for the
/// `[digests] export_top` rows with the largest total time and those with
/// the most primary statements only, labels `digest` (hash), `text` (the
/// digest text's first 80 bytes), `user`, `schema`.
pub const DIGEST_LATENCY_SECONDS: &str = "causeway_digest_latency_seconds";
/// Counter, rendered from the digest store for the same rows as
/// [`DIGEST_LATENCY_SECONDS`]: statements per `tier` (cache, replica,
/// primary, fallback), labels `digest`, `text`, `user`, `schema`, `tier`.
pub const DIGEST_STATEMENTS: &str = "causeway_digest_statements_total";
/// Counter (seconds), rendered like [`DIGEST_STATEMENTS`]: total time of
/// the digest's statements.
pub const DIGEST_SECONDS: &str = "causeway_digest_seconds_total";
/// Gauge (seconds), rendered like [`DIGEST_STATEMENTS`]: the digest's p99
/// latency from its sketch (within 50 %).
pub const DIGEST_P99_SECONDS: &str = "causeway_digest_p99_seconds";
/// Gauge: rows in the digest store.
pub const DIGESTS: &str = "causeway_digests";
/// Gauge: digest rows evicted (least recently used) since start.
pub const DIGEST_EVICTIONS: &str = "causeway_digest_evictions";
