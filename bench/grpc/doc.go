// Package grpcbench measures unary gRPC calls through the DMSC fabric beside
// the peers a reader would compare them with, all in the same run (issue 5):
//
//   - direct: the Echo server on a TCP listener on 127.0.0.1, the client
//     with insecure credentials (HTTP/2 over plain TCP);
//   - direct-tls: the same with TLS 1.3, since DMSC's QUIC always encrypts;
//   - nginx2: client → nginx → nginx → server, two Debian nginx processes
//     (grpc_pass, one worker each, pooled upstream connections) standing in
//     for the two sidecars of a service mesh, plain HTTP/2 on every hop;
//   - nginx2-mtls: the same chain with mutual TLS 1.3 between the two
//     proxies, as a mesh encrypts sidecar to sidecar;
//   - dmsc: pod to pod by name across SG – SR – SR – SG of an in-process
//     fabric (software switches, an agent each, SPA), gRPC over QUIC; every
//     link is in memory, so no frame crosses the kernel;
//   - dmsc-udp: the same with each pod attached to its SG over a UDP
//     tunnel on loopback, so that each frame between a pod and its SG
//     crosses the kernel as over a veth or NIC (the links between switches
//     stay in memory, standing for a hardware fabric).
//
// Every path serves the same echo.Server and is called with the same 64-byte
// payload. For each it reports the latency of sequential calls (p50, p99,
// mean) and the calls per second of concurrent callers on one ClientConn.
// PodMemory measures what a registered, serving pod costs the process.
//
//	go test -run '^$' -bench . -benchtime 2s ./bench/grpc
//
// Flags: -grpc.payload, -grpc.callers (64), -grpc.pods (50);
// -grpc.cpuprofile PREFIX profiles each measured loop alone (no setup, no
// warm-up), -grpc.heapprofile PREFIX the pods' heap. NGINX names the nginx
// binary (default: PATH, then /usr/sbin/nginx).
//
// The nginx paths skip, saying why, when nginx is not installed or does not
// start; the others still run.
//
// Everything shares the machine: the in-process fabric runs its four
// switches and agents on the same cores as the client and the server, so the
// dmsc figures include the software switches' CPU time on every hop, which a
// hardware fabric would not add.
package grpcbench
