package main

import "syscall"

// childProcAttr puts a child in a process group of its own, so that the
// terminal's Ctrl-C reaches only the playground, which stops its children in
// order, and has the kernel kill the child if the playground dies without
// stopping it (kill -9, a crash).
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
