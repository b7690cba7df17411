//go:build !linux

package main

import "syscall"

// childProcAttr sets nothing outside Linux: the child shares the terminal's
// process group and survives a playground that is killed with -9.
func childProcAttr() *syscall.SysProcAttr { return nil }
