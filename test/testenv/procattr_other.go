//go:build !linux

package testenv

import "syscall"

// childProcAttr has no parent-death signal outside Linux; Teardown and t.Cleanup still stop
// every child of a test binary that exits normally.
func childProcAttr() *syscall.SysProcAttr { return nil }

// ownGroupProcAttr has no process-group option that builds on every platform here; callers
// outside Linux stop their children themselves.
func ownGroupProcAttr() *syscall.SysProcAttr { return nil }
