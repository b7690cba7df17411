package config

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	libconfig "github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/lib/notify"
	"go.uber.org/zap"
)

// Reload sources, as shown by the status.
const (
	SourceFile   = "file"
	SourceSIGHUP = "sighup"
	SourceAPI    = "api"
)

// Results of a reload attempt.
const (
	ResultOK    = "ok"
	ResultError = "error"
)

// ErrNoFile is returned by Reload when the config did not come from a file.
var ErrNoFile = errors.New("the config was not loaded from a file")

// ApplyFunc makes the running components match next. It must not block on
// the network. An error means next was applied only in part (a route port
// could not be opened, say); next still becomes the running config.
type ApplyFunc func(prev, next *libconfig.Config) error

// ReloadObserver is told about every reload attempt (metrics).
type ReloadObserver func(ok bool, at time.Time)

// Status describes the running config and the last reload attempt.
type Status struct {
	Checksum     string
	Path         string
	LastReload   time.Time
	LastResult   string
	LastSource   string
	LastError    string
	LastSuccess  time.Time
	NeedsRestart []string
	Reloads      int
	Failures     int
}

// running is one applied config with its source text.
type running struct {
	cfg      *libconfig.Config
	raw      []byte
	checksum string
	// eff is the config in force: cfg's live settings, the start-up
	// config's for the rest (they need a restart).
	eff *libconfig.Config
}

// Manager owns the running config.
type Manager struct {
	lg       *zap.Logger
	path     string
	apply    ApplyFunc
	observer ReloadObserver

	mu    sync.Mutex        // serializes reloads
	start *libconfig.Config // what the process started with
	// fileFailed is set while the last attempt to load the file (by the
	// watcher or SIGHUP) failed; failedRaw is the content rejected, and
	// failedErr why. Guarded by mu.
	fileFailed bool
	failedRaw  []byte
	failedErr  error
	cur        atomic.Pointer[running]
	status     atomic.Pointer[Status]

	subs notify.Fanout

	pollInterval time.Duration
}

// Checksum is the hex SHA-256 of a config's TOML text.
func Checksum(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// New returns a manager for the config at path ("" when the config is not
// from a file). It does no I/O; call Load first.
func New(lg *zap.Logger, path string) *Manager {
	m := &Manager{
		lg:           lg.Named("config"),
		path:         path,
		pollInterval: 2 * time.Second,
	}
	m.status.Store(&Status{Path: path})
	return m
}

// Load reads and validates the file: the config the process starts with. It
// is not applied (the server is built from it).
func (m *Manager) Load() (*libconfig.Config, error) {
	raw, err := os.ReadFile(m.path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := libconfig.ParseNamed(m.path, raw)
	if err != nil {
		return nil, err
	}
	m.Init(cfg, raw)
	return cfg, nil
}

// Init sets the config the process starts with, when it was not loaded by
// Load (tests, embedding).
func (m *Manager) Init(cfg *libconfig.Config, raw []byte) {
	m.start = cfg
	m.setRunning(cfg, raw)
}

func (m *Manager) setRunning(cfg *libconfig.Config, raw []byte) {
	r := &running{cfg: cfg, raw: raw, checksum: Checksum(raw), eff: Effective(m.start, cfg)}
	m.cur.Store(r)
	st := *m.status.Load()
	st.Checksum = r.checksum
	m.status.Store(&st)
}

// SetApply sets the function that applies new configs and the reload
// observer. Call it before the first reload.
func (m *Manager) SetApply(apply ApplyFunc, observer ReloadObserver) {
	m.apply, m.observer = apply, observer
}

// Current returns the running config. Callers must not modify it.
func (m *Manager) Current() *libconfig.Config { return m.cur.Load().cfg }

// Effective returns the config in force: Current's settings where a reload
// applied them, the start-up values for settings that need a restart (those
// Status().NeedsRestart lists). Callers must not modify it.
func (m *Manager) Effective() *libconfig.Config { return m.cur.Load().eff }

// Raw returns the running config's TOML text.
func (m *Manager) Raw() []byte { return m.cur.Load().raw }

// Checksum returns the running config's checksum.
func (m *Manager) Checksum() string { return m.cur.Load().checksum }

// Status returns the reload status.
func (m *Manager) Status() Status {
	st := *m.status.Load()
	st.NeedsRestart = append([]string(nil), st.NeedsRestart...)
	return st
}

// Path is the config file, or "".
func (m *Manager) Path() string { return m.path }

// Reload re-reads the config file. A file equal to the running config is a
// no-op for the file watcher, unless the last reload of the file failed: the
// edit was reverted, which is recorded as a success. For SIGHUP it is always
// a recorded success. The watcher does not retry content it already
// rejected.
func (m *Manager) Reload(source string) error {
	if m.path == "" {
		return ErrNoFile
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	raw, err := os.ReadFile(m.path)
	if err != nil {
		err = fmt.Errorf("read config: %w", err)
		m.fileFailed, m.failedRaw, m.failedErr = true, nil, err
		m.record(source, err, nil)
		return err
	}
	if bytes.Equal(raw, m.cur.Load().raw) {
		if source != SourceFile || m.fileFailed {
			if m.fileFailed {
				m.lg.Info("the config file is back to the running config; the failed reload is cleared",
					zap.String("source", source))
			}
			m.fileFailed, m.failedRaw, m.failedErr = false, nil, nil
			m.record(source, nil, NeedsRestart(m.start, m.cur.Load().cfg))
		}
		return nil
	}
	if source == SourceFile && m.fileFailed && m.failedRaw != nil && bytes.Equal(raw, m.failedRaw) {
		return m.failedErr
	}
	return m.applyLocked(source, raw, false)
}

// Set replaces the config with raw (PUT /api/v1/config). A valid config is
// written to the config file first (atomically, by rename), so that the file
// and the running config agree and a later reload does not undo it. The
// returned error wraps libconfig.ErrInvalid when raw is not a valid config.
func (m *Manager) Set(raw []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.applyLocked(SourceAPI, raw, true)
}

// applyLocked validates and applies raw. The caller holds mu.
func (m *Manager) applyLocked(source string, raw []byte, persist bool) error {
	name := m.path
	if source == SourceAPI || name == "" {
		name = "request body"
	}
	next, err := libconfig.ParseNamed(name, raw)
	if err != nil {
		if source != SourceAPI {
			m.fileFailed, m.failedRaw, m.failedErr = true, raw, err
		}
		m.record(source, err, nil)
		m.lg.Error("config rejected; the running config is unchanged", zap.String("source", source), zap.Error(err))
		return err
	}
	if persist && m.path != "" {
		if err := writeAtomic(m.path, raw); err != nil {
			err = fmt.Errorf("write config file: %w", err)
			m.record(source, err, nil)
			return err
		}
	}
	prev := m.cur.Load().cfg
	var applyErr error
	if m.apply != nil {
		applyErr = m.apply(prev, next)
	}
	m.setRunning(next, raw)
	m.fileFailed, m.failedRaw, m.failedErr = false, nil, nil
	// Compared with what the process started with, so a pending restart is
	// reported until the file goes back to the running value.
	restart := NeedsRestart(m.start, next)
	m.record(source, applyErr, restart)
	m.notify()
	if applyErr != nil {
		m.lg.Warn("config applied with errors", zap.String("source", source), zap.Error(applyErr))
		return applyErr
	}
	m.lg.Info("config applied", zap.String("source", source), zap.String("checksum", m.Checksum()),
		zap.Strings("needs_restart", restart))
	return nil
}

// record stores the outcome of an attempt.
func (m *Manager) record(source string, err error, restart []string) {
	now := time.Now()
	st := *m.status.Load()
	st.Reloads++
	st.LastReload, st.LastSource = now, source
	if err != nil {
		st.Failures++
		st.LastResult, st.LastError = ResultError, err.Error()
	} else {
		st.LastResult, st.LastError, st.LastSuccess = ResultOK, "", now
	}
	if err == nil || restart != nil {
		st.NeedsRestart = restart
	}
	m.status.Store(&st)
	if m.observer != nil {
		m.observer(err == nil, now)
	}
}

// Subscribe returns a channel woken (at most one pending wake-up) after each
// applied config, and a function that ends the subscription.
func (m *Manager) Subscribe() (<-chan struct{}, func()) { return m.subs.Subscribe() }

func (m *Manager) notify() { m.subs.Notify() }

// Run watches the config file until ctx ends. Errors setting up the watch
// are logged; polling still works without it.
func (m *Manager) Run(ctx context.Context) {
	if m.path == "" {
		<-ctx.Done()
		return
	}
	w := newFileWatcher(m.lg, m.path, m.pollInterval)
	w.run(ctx, m.Raw(), func() {
		// The reload's own error is in the status and the log.
		_ = m.Reload(SourceFile)
	})
}

// writeAtomic replaces path with data through a temporary file in the same
// directory, so a reader never sees half a file.
func writeAtomic(path string, data []byte) error {
	mode := os.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
