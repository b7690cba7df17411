package testenv

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// mariadb-install-db takes most of a server's start-up (~0.7 s of ~1 s on two cores), and its
// output is the same every time. Inside Wrap, where Teardown is sure to remove it, the first
// install becomes a template that later servers copy (~0.1 s). Without Wrap every server runs
// the installer, so nothing outlives the test binary.
var (
	wrapActive   atomic.Bool
	dataTemplate struct {
		once sync.Once
		dir  string
		err  error
	}
)

// populateDataDir fills dataDir with freshly installed system tables.
func populateDataDir(installDB, dir, dataDir string, deadline time.Time) error {
	if !wrapActive.Load() {
		return installDataDir(installDB, dir, dataDir, deadline)
	}
	dataTemplate.once.Do(func() {
		tmpl, err := os.MkdirTemp("", "switchyard-mariadb-template-")
		if err != nil {
			dataTemplate.err = err
			return
		}
		onTeardown(func() { _ = os.RemoveAll(tmpl) })
		dataTemplate.dir = filepath.Join(tmpl, "data")
		dataTemplate.err = installDataDir(installDB, tmpl, dataTemplate.dir, deadline)
	})
	if dataTemplate.err != nil {
		return dataTemplate.err
	}
	if err := copyTree(dataTemplate.dir, dataDir); err != nil {
		return fmt.Errorf("copy data directory template: %w", err)
	}
	return nil
}

// copyTree copies directories and regular files, keeping their permission bits.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm())
		case info.Mode().IsRegular():
			return copyFile(path, target, info.Mode().Perm())
		default:
			return nil
		}
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
