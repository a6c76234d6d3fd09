// Package pod is the pod SDK (DESIGN §7): it attaches a microservice to the
// port of its Service Gateway and gives it connections addressed by service
// name.
//
// The layers, bottom up:
//
//   - Endpoint owns the link (a softswitch.Port: in-memory, UDP tunnel or
//     AF_PACKET) and its one reader goroutine. It parses every frame with
//     wire.ParseFrame, drops and counts malformed ones, hands CONTROL frames
//     to a hook (the announcement protocol, files announce*.go, uses it and
//     SendControl/SendFrame), and demultiplexes DATA frames carrying QUIC to
//     virtual PacketConns.
//   - DialConn and ListenConn are those PacketConns. DMSC has no port
//     numbers, so every dial has its own random flow label; replies echo it.
//     A dial sends to the service key until the first reply, then to the
//     instance key that answered (pinning), while reporting one unchanging
//     peer address to QUIC.
//   - Dial and Listen run QUIC (quic-go) over them with mutual TLS 1.3 on the
//     pods' domain certificates: the client checks that the server's
//     certificate owns the dialed prefix, the server that the client's chains
//     to the domain CA, and that the name the client asked for is its own.
//   - DialGRPC and ListenGRPC carry gRPC over QUIC streams, one stream per
//     gRPC transport, so grpc.NewServer().Serve(lis) works unchanged and
//     PeerIdentity(ctx) names the calling pod.
//
// Before the announcement protocol has registered the pod, the Endpoint has
// no instance key and DATA sends fail with ErrNoLocalKey. Endpoint.Announce
// runs that protocol (announce.go): it returns once the SG accepted, sets the
// instance key SPA allocated, and keeps the registration alive in a
// Registration until Withdraw or Close. Attach builds an Endpoint from a link
// spec and certificate files and announces.
package pod
