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
// rename, symlink swap) into one reload: the file is read once it has been
// quiet this long, or maxSettle after the first event of a burst that never
// goes quiet. A save that truncates and then writes is thus not read half
// way (an empty file would be rejected, and logged, for nothing).
const (
	debounce  = 100 * time.Millisecond
	maxSettle = time.Second
)

// maxLinks bounds how many symlinks are followed from the config path.
const maxLinks = 16

// fileWatcher calls back when the config file may have changed: on an event
// on the file itself or on a link of its symlink chain (editors replace files
// by rename; Kubernetes swaps a ..data symlink beside the file), and when its
// content differs at a poll, which catches what events miss (network
// filesystems, a watch that failed). Events on the file's neighbours are
// ignored: a log file written beside the config must not trigger reloads,
// or each rejected reload's log line would trigger the next one.
type fileWatcher struct {
	lg       *zap.Logger
	path     string
	poll     time.Duration
	noEvents bool          // tests: poll only
	quiet    time.Duration // debounce; tests lengthen it
}

func newFileWatcher(lg *zap.Logger, path string, poll time.Duration) *fileWatcher {
	return &fileWatcher{lg: lg, path: path, poll: poll, quiet: debounce}
}

// watchSet is what to watch for path: the directories holding the path and
// its symlink target, and the names whose events matter there.
type watchSet struct {
	dirs  map[string]bool
	names map[string]bool
}

// resolveWatchSet follows path's symlink chain. Every hop and every
// directory prefix of a hop's target matters (a ConfigMap swaps the ..data
// link that the target goes through), as does the final file.
func resolveWatchSet(path string) watchSet {
	ws := watchSet{dirs: map[string]bool{}, names: map[string]bool{}}
	cur := filepath.Clean(path)
	if abs, err := filepath.Abs(cur); err == nil {
		cur = abs
	}
	ws.names[cur] = true
	ws.dirs[filepath.Dir(cur)] = true
	for range maxLinks {
		fi, err := os.Lstat(cur)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			break
		}
		target, err := os.Readlink(cur)
		if err != nil {
			break
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(cur), target)
		}
		cur = filepath.Clean(target)
		for p := cur; ; p = filepath.Dir(p) {
			ws.names[p] = true
			if parent := filepath.Dir(p); parent == p {
				break
			}
		}
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		if abs, err := filepath.Abs(real); err == nil {
			ws.names[abs] = true
			ws.dirs[filepath.Dir(abs)] = true
		}
	}
	return ws
}

// relevant reports whether an event on name may change the config's content.
func (ws watchSet) relevant(name string) bool {
	if abs, err := filepath.Abs(name); err == nil {
		name = abs
	}
	return ws.names[filepath.Clean(name)]
}

// run watches until ctx ends. last is the content already known (the
// running config), so a change made before the watch was set up is still
// seen at the first poll.
func (w *fileWatcher) run(ctx context.Context, last []byte, changed func()) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	ws := resolveWatchSet(w.path)
	fw, err := fsnotify.NewWatcher()
	if err == nil && w.noEvents {
		fw.Close()
		err = errors.New("events disabled")
	}
	if err == nil {
		// The directory holding the path must be watched; the target's
		// directory is a best effort (polling covers it otherwise).
		if err = fw.Add(filepath.Dir(w.path)); err != nil {
			fw.Close()
		}
	}
	if err != nil {
		w.lg.Warn("cannot watch the config directory; polling only", zap.Error(err))
	} else {
		defer fw.Close()
		events, errs = fw.Events, fw.Errors
		w.watchDirs(fw, ws)
	}
	ticker := time.NewTicker(w.poll)
	defer ticker.Stop()
	// settle arms the read: the timer restarts on every sign of a change,
	// bounded by maxSettle from the first.
	settle := time.NewTimer(w.quiet)
	settle.Stop()
	var fire <-chan time.Time
	var firstSign time.Time
	arm := func() {
		now := time.Now()
		if fire == nil {
			firstSign = now
		}
		wait := min(w.quiet, max(maxSettle, w.quiet)-now.Sub(firstSign))
		settle.Reset(max(wait, 0))
		fire = settle.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if !ws.relevant(ev.Name) {
				continue
			}
			arm()
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			w.lg.Warn("config watch error; polling continues", zap.Error(err))
		case <-fire:
			fire = nil
			// A swapped link may point somewhere new: follow it.
			ws = resolveWatchSet(w.path)
			if fw != nil && events != nil {
				w.watchDirs(fw, ws)
			}
			last, _ = os.ReadFile(w.path)
			changed()
		case <-ticker.C:
			if fire != nil {
				continue // a read is already due
			}
			cur, err := os.ReadFile(w.path)
			if err != nil || bytes.Equal(cur, last) {
				continue
			}
			// Changed since the last read: read it again once it settles,
			// as for an event (the poll may have caught a save half way).
			arm()
		}
	}
}

// watchDirs watches the directories of ws (adding one already watched does
// nothing). Directories no longer in ws stay watched until they go away (a
// ConfigMap deletes old versions); their events are filtered out.
func (w *fileWatcher) watchDirs(fw *fsnotify.Watcher, ws watchSet) {
	for dir := range ws.dirs {
		if err := fw.Add(dir); err != nil {
			w.lg.Debug("cannot watch the config's target directory; polling covers it",
				zap.String("dir", dir), zap.Error(err))
		}
	}
}
