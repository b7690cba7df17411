// Package sqlstats keeps per-digest statement statistics, the proxy's
// answer to ProxySQL's stats_mysql_query_digest: for each cluster, user,
// schema and statement digest it counts executions, errors, latency (total,
// min, max and a histogram for p50/p95/p99), rows sent and affected, first
// and last seen, and keeps one sample text.
//
// Statements are normalised with TiDB's parser (literals become "?", IN
// lists collapse), once per distinct raw text: a bounded clock cache keyed by
// a hash of the text remembers each text's digest, so a repeated statement
// costs a hash, two map lookups under read locks and a few atomic adds, and
// allocates nothing.
//
// Memory is bounded per cluster: a fixed number of digests, kept by the
// space-saving heavy-hitter rule. When a new digest arrives and its shard is
// full, the entry with the smallest weight is folded into the cluster's
// "others" row and the newcomer inherits that weight, so a stream of unique
// statements churns through the low end while frequent digests stay.
//
// A Store has no goroutines; every method is safe for concurrent use.
package sqlstats
