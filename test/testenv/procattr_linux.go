package testenv

import "syscall"

// childProcAttr makes the kernel kill a child when the test binary dies, so a test process that
// is itself killed (go test -timeout, Ctrl-C) does not leave mariadbd or the proxy running.
// Pdeathsig is tied to the spawning OS thread; Go only retires threads that a goroutine locked
// and never unlocked, which the testing package does not do, so this holds in practice.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// ownGroupProcAttr is childProcAttr in a new process group (MariaDBOptions.OwnProcessGroup).
func ownGroupProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
