//go:build race

package qos

// raceEnabled: the race detector slows the fabric's hundreds of goroutines
// several times over: tests of timing skip under it.
const raceEnabled = true
