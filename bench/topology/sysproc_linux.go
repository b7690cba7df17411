package main

import "syscall"

// childProcAttr makes the kernel kill a child (etcd, the backend process)
// if this process dies without stopping it, e.g. on SIGKILL.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
