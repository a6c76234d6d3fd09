// Package forward benchmarks one hop through the software switch over UDP
// tunnel ports on loopback, beside a do-nothing UDP relay with the same
// batching (recvmmsg → sendmmsg) as the ceiling of what the kernel's loopback
// and the socket calls allow:
//
//	go test -run '^$' -bench . ./bench/forward
//
// Each benchmark reports pps, the frames per second that actually reached
// the receiver, and loss%, the share of frames sent that never arrived.
package forward
