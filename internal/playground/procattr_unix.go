//go:build unix && !linux

package playground

import "syscall"

// sysProcAttr puts a child in its own process group. Only Linux can tie a
// child's life to its parent's.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
