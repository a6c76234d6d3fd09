package pod

import (
	"encoding/binary"
	"encoding/hex"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/wire"
)

// Network is what Addr.Network returns.
const Network = "dmsc"

// Addr is a DMSC datagram address: a service or instance key and the flow
// label that tells one conversation with it from another (DMSC has no port
// numbers). Name, when set, is the service name the key was made from; it is
// for people reading logs.
type Addr struct {
	Key  wire.Key
	Flow uint32
	Name string
}

// Network implements net.Addr.
func (a *Addr) Network() string { return Network }

// String is the name (or the key, as wire prints it) and the flow label in
// hex: "/shop/cart#1a2b3c4d", "8d9001d3:1c42ddc0:00000000:00000007#1a2b3c4d".
// quic-go compares addresses by String, so two flows of one peer must differ
// here.
func (a *Addr) String() string {
	if a == nil {
		return "<nil>"
	}
	s := a.Name
	if s == "" {
		s = a.Key.String()
	}
	// By hand rather than fmt: quic-go's server compares the address of
	// every packet this way.
	var f [4]byte
	binary.BigEndian.PutUint32(f[:], a.Flow)
	var b [9]byte
	b[0] = '#'
	hex.Encode(b[1:], f[:])
	return s + string(b[:])
}

// PeerAddr is the remote address of a gRPC stream connection: the peer's
// DMSC address and the identity its verified certificate names. A gRPC
// handler finds it in peer.FromContext(ctx).Addr (PeerIdentity reads it).
type PeerAddr struct {
	Addr
	Identity ca.Identity
}

// String is the address and the peer's identity.
func (a *PeerAddr) String() string {
	if a == nil {
		return "<nil>"
	}
	return a.Addr.String() + " (" + a.Identity.String() + ")"
}
