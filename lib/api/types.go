package api

import "time"

// Health is GET /api/v1/health.
type Health struct {
	// Status is "healthy" or "unhealthy" (shutting down, or marked by hand).
	Status          string `json:"status"`
	ConfigChecksum  string `json:"config_checksum"`
	UnhealthyReason string `json:"unhealthy_reason,omitempty"`
	// Clusters maps each cluster to its state.
	Clusters map[string]string `json:"clusters"`
	// Warnings are conditions an operator should know about that do not make
	// the proxy unhealthy (a cluster that is stale, a failed reload ...).
	Warnings []string `json:"warnings,omitempty"`
	// CoordinationMode is "etcd" in a fleet, "single-node" otherwise.
	CoordinationMode string `json:"coordination_mode"`
	// Components are the proxy's parts and their dependency connections:
	// config, sql, each cluster's topology source, coordination.
	Components map[string]Component `json:"components"`
}

// Component is the state of one part of the proxy: initializing, healthy,
// abnormal or stopping.
type Component struct {
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// Health statuses.
const (
	StatusHealthy   = "healthy"
	StatusUnhealthy = "unhealthy"
)

// Override is the body of PUT /api/v1/health/override.
type Override struct {
	Reason string `json:"reason"`
}

// Cluster is one element of GET /api/v1/clusters and GET /api/v1/clusters/{name}.
type Cluster struct {
	Name string `json:"name"`
	// State is connecting, ready, stale or draining.
	State string `json:"state"`
	// Source is "etcd" or "static".
	Source          string            `json:"source"`
	EtcdEndpoints   []string          `json:"etcd_endpoints,omitempty"`
	TopologyPrefix  string            `json:"topology_prefix,omitempty"`
	EtcdRevision    int64             `json:"etcd_revision"`
	LastError       string            `json:"last_error,omitempty"`
	BackendsTotal   int               `json:"backends_total"`
	BackendsHealthy int               `json:"backends_healthy"`
	Sessions        int               `json:"sessions"`
	Generation      uint64            `json:"generation"`
	Labels          map[string]string `json:"labels,omitempty"`
	UpdatedAt       time.Time         `json:"updated_at"`
}

// Backend is one element of GET /api/v1/backends and
// GET /api/v1/clusters/{name}/backends.
type Backend struct {
	// ID is "<cluster>/<addr>".
	ID         string `json:"id"`
	Cluster    string `json:"cluster"`
	Addr       string `json:"addr"`
	StatusPort uint   `json:"status_port,omitempty"`
	Version    string `json:"version,omitempty"`
	Healthy    bool   `json:"healthy"`
	// Reason says why the backend is unhealthy, or that it was not probed yet.
	Reason   string            `json:"reason,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Sessions int               `json:"sessions"`
	// CPU and Memory are fractions of the backend's quota; null when unknown.
	CPU       *float64   `json:"cpu"`
	Memory    *float64   `json:"memory"`
	LastProbe *time.Time `json:"last_probe"`
	// Drained is set while an operator drains the backend: it takes no new
	// sessions and its sessions move away until DrainDeadline, when those
	// that could not move are closed.
	Drained       bool       `json:"drained,omitempty"`
	DrainDeadline *time.Time `json:"drain_deadline,omitempty"`
}

// BackendDrain is the answer of POST and DELETE
// /api/v1/backends/{cluster}/{addr}/drain, and an element of the drains in
// GET /api/v1/migrations.
type BackendDrain struct {
	ID       string     `json:"id"`
	Cluster  string     `json:"cluster"`
	Addr     string     `json:"addr"`
	Drained  bool       `json:"drained"`
	Since    *time.Time `json:"since,omitempty"`
	Deadline *time.Time `json:"deadline,omitempty"`
	// Sessions still routed to the backend by this proxy.
	Sessions int `json:"sessions"`
	// WasDrained, in the answer to DELETE, says whether it was drained.
	WasDrained *bool `json:"was_drained,omitempty"`
}

// MigrationsDoc is GET /api/v1/migrations.
type MigrationsDoc struct {
	// Pending counts the moves asked for and not finished (a session moves at
	// its next transaction boundary).
	Pending int `json:"pending"`
	// Totals counts finished migrations by result since start: ok, failed,
	// refused, closed (could not move before a drain's deadline).
	Totals map[string]int64 `json:"totals"`
	// Recent is the last 100 finished migrations, newest first.
	Recent []Migration    `json:"recent"`
	Drains []BackendDrain `json:"drains"`
}

// Migration is one finished migration of a session between two backends of
// its cluster.
type Migration struct {
	Time      time.Time `json:"time"`
	SessionID uint64    `json:"session_id"`
	Cluster   string    `json:"cluster"`
	From      string    `json:"from"`
	To        string    `json:"to,omitempty"`
	// Reason is drain, unhealthy, voted-down, removed, load-sessions,
	// load-cpu, load-memory or failover.
	Reason     string  `json:"reason"`
	Result     string  `json:"result"`
	DurationMS float64 `json:"duration_ms"`
	Error      string  `json:"error,omitempty"`
}

// Session is one element of GET /api/v1/sessions.
type Session struct {
	ID         uint64 `json:"id"`
	ClientAddr string `json:"client_addr"`
	User       string `json:"user"`
	DB         string `json:"db,omitempty"`
	Cluster    string `json:"cluster"`
	// Backend is the backend ID, "<cluster>/<addr>".
	Backend       string    `json:"backend"`
	InTransaction bool      `json:"in_transaction"`
	Since         time.Time `json:"since"`
	// Migratable says whether the session could move to another backend of
	// its cluster now; NotMigratableReason says why not (in a transaction,
	// LOCK TABLES, GET_LOCK, temporary tables, no recoverable credential ...).
	Migratable          bool   `json:"migratable"`
	NotMigratableReason string `json:"not_migratable_reason,omitempty"`
}

// ConfigStatus is GET /api/v1/config/status.
type ConfigStatus struct {
	// Checksum is the SHA-256 of the running config's TOML.
	Checksum string `json:"checksum"`
	// Path is the config file, if the config came from one.
	Path string `json:"path,omitempty"`
	// LastReload is when the last reload attempt finished; zero before any.
	LastReload time.Time `json:"last_reload"`
	// LastResult is "ok" or "error" for the last attempt, "" before any.
	LastResult string `json:"last_result,omitempty"`
	// LastSource says what triggered it: file, sighup or api.
	LastSource string `json:"last_source,omitempty"`
	// LastError is the last attempt's error, with TOML line numbers.
	LastError string `json:"last_error,omitempty"`
	// LastSuccess is when a config was last applied.
	LastSuccess time.Time `json:"last_success"`
	// NeedsRestart lists settings that differ from the running ones but only
	// take effect after a restart.
	NeedsRestart []string `json:"needs_restart,omitempty"`
	// Reloads and Failures count attempts since start.
	Reloads  int `json:"reloads"`
	Failures int `json:"failures"`
}

// Error is the body of every 4xx and 5xx answer.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ConfigErrors is the body of a 400 from PUT /api/v1/config.
type ConfigErrors struct {
	Error
	// Errors holds one problem per element, with its TOML line.
	Errors []string `json:"errors"`
}
