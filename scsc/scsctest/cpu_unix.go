//go:build unix

package scsctest

import (
	"syscall"
	"time"
)

// cpuTime is the process's CPU time, user and system, all threads (the
// garbage collector's and the fake agents' included).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
