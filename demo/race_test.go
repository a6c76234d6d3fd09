//go:build race

package demo

// raceEnabled: the race detector slows the fabric's hundreds of goroutines
// several times over; the demo's timing claims are checked without it
// (scripts/test.sh runs TestDemo a second time, without -race).
const raceEnabled = true
