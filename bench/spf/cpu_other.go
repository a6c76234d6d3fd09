//go:build !unix

package spfbench

import "time"

// cpuTime is not measured here; the benchmarks then report 0 cpu-ns/op.
func cpuTime() time.Duration { return 0 }
