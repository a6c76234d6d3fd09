//go:build !unix

package scsctest

import "time"

// cpuTime is not measured off Unix: Measure reports 0.
func cpuTime() time.Duration { return 0 }
