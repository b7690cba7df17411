package config

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// debounce merges the burst of events one save produces (write, chmod,
// rename, symlink swap) into one reload.
const debounce = 100 * time.Millisecond

// fileWatcher calls back when the config file may have changed: on any
// event in its directory (editors replace files by rename; Kubernetes swaps
// a symlink in the directory), and when its content differs at a poll, which
// catches what events miss (network filesystems, a watch that failed).
type fileWatcher struct {
	lg       *zap.Logger
	path     string
	poll     time.Duration
	noEvents bool // tests: poll only
}

func newFileWatcher(lg *zap.Logger, path string, poll time.Duration) *fileWatcher {
	return &fileWatcher{lg: lg, path: path, poll: poll}
}

// run watches until ctx ends. last is the content already known (the
// running config), so a change made before the watch was set up is still
// seen at the first poll.
func (w *fileWatcher) run(ctx context.Context, last []byte, changed func()) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	fw, err := fsnotify.NewWatcher()
	if err == nil && w.noEvents {
		fw.Close()
		err = errors.New("events disabled")
	}
	if err == nil {
		if err = fw.Add(filepath.Dir(w.path)); err != nil {
			fw.Close()
		}
	}
	if err != nil {
		w.lg.Warn("cannot watch the config directory; polling only", zap.Error(err))
	} else {
		defer fw.Close()
		events, errs = fw.Events, fw.Errors
	}
	ticker := time.NewTicker(w.poll)
	defer ticker.Stop()
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			// Any event in the directory may be the file or its symlink target.
			_ = ev
			if fire == nil {
				fire = time.After(debounce)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			w.lg.Warn("config watch error; polling continues", zap.Error(err))
		case <-fire:
			fire = nil
			last, _ = os.ReadFile(w.path)
			changed()
		case <-ticker.C:
			cur, err := os.ReadFile(w.path)
			if err != nil || bytes.Equal(cur, last) {
				continue
			}
			last = cur
			changed()
		}
	}
}
