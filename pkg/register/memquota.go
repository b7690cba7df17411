package register

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// memoryQuota is the memory the backend may use: the host's MemTotal, or
// less when the process's cgroup v2 (or an ancestor of it) sets a numeric
// memory.max. pid 0 skips the cgroup. ok is false when neither is readable.
func (p procFS) memoryQuota(pid int) (quota uint64, ok bool) {
	quota, ok = p.memTotal()
	if pid <= 0 {
		return quota, ok
	}
	if limit, found := p.cgroupMemoryMax(pid); found && (!ok || limit < quota) {
		return limit, true
	}
	return quota, ok
}

func (p procFS) memTotal() (uint64, bool) {
	f, err := os.Open(filepath.Join(p.proc, "meminfo"))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, found := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !found {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0, false
		}
		kb, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil || kb == 0 {
			return 0, false
		}
		return kb * 1024, true
	}
	return 0, false
}

// cgroupMemoryMax is the smallest numeric memory.max on the path from the
// process's cgroup v2 up to the root: a parent's limit binds its children.
func (p procFS) cgroupMemoryMax(pid int) (uint64, bool) {
	b, err := os.ReadFile(filepath.Join(p.proc, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return 0, false
	}
	var rel string
	found := false
	for line := range bytes.Lines(b) {
		// cgroup v2 is the single hierarchy "0::/path".
		if s, ok := strings.CutPrefix(strings.TrimSpace(string(line)), "0::"); ok {
			rel, found = s, true
			break
		}
	}
	if !found {
		return 0, false
	}
	root := filepath.Clean(p.cgroup)
	dir := filepath.Join(root, filepath.Clean("/"+rel))
	var limit uint64
	have := false
	for {
		if v, err := os.ReadFile(filepath.Join(dir, "memory.max")); err == nil {
			if n, err := strconv.ParseUint(strings.TrimSpace(string(v)), 10, 64); err == nil && (!have || n < limit) {
				limit, have = n, true
			}
		}
		if dir == root || len(dir) <= len(root) {
			return limit, have
		}
		dir = filepath.Dir(dir)
	}
}
