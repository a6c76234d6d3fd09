package softswitch

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// PortSpec describes a port on the command line:
//
//	1=udp:127.0.0.1:7001,127.0.0.1:7002   UDP tunnel, local address then peer
//	2=iface:veth0                         Linux interface (AF_PACKET)
//	3=mem                                 in-memory link (tests, embedding)
type PortSpec struct {
	Num   uint16
	Kind  string // "udp", "iface" or "mem"
	Local string // udp: local address
	Peer  string // udp: peer address
	Iface string // iface: interface name
}

func (p PortSpec) String() string {
	switch p.Kind {
	case "udp":
		return fmt.Sprintf("%d=udp:%s,%s", p.Num, p.Local, p.Peer)
	case "iface":
		return fmt.Sprintf("%d=iface:%s", p.Num, p.Iface)
	}
	return fmt.Sprintf("%d=%s", p.Num, p.Kind)
}

// ParsePortSpec reads a port spec; its errors name the part that is wrong.
func ParsePortSpec(s string) (PortSpec, error) {
	var ps PortSpec
	numStr, rest, ok := strings.Cut(strings.TrimSpace(s), "=")
	if !ok {
		return ps, fmt.Errorf("port spec %q: want NUMBER=udp:LOCAL,PEER, NUMBER=iface:NAME or NUMBER=mem", s)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(numStr), 10, 16)
	if err != nil {
		return ps, fmt.Errorf("port spec %q: port number %q is not a number", s, numStr)
	}
	if err := checkPortNum(uint16(n)); err != nil || n > 0xffff {
		return ps, fmt.Errorf("port spec %q: port number %s: %v", s, numStr, err)
	}
	ps.Num = uint16(n)
	kind, arg, _ := strings.Cut(rest, ":")
	ps.Kind = strings.ToLower(strings.TrimSpace(kind))
	switch ps.Kind {
	case "udp":
		local, peer, ok := strings.Cut(arg, ",")
		if !ok {
			return ps, fmt.Errorf("port spec %q: udp needs LOCAL,PEER addresses (host:port,host:port)", s)
		}
		ps.Local, ps.Peer = strings.TrimSpace(local), strings.TrimSpace(peer)
		for _, a := range []struct{ what, v string }{{"local", ps.Local}, {"peer", ps.Peer}} {
			host, port, err := net.SplitHostPort(a.v)
			if err != nil {
				return ps, fmt.Errorf("port spec %q: udp %s address %q: %v", s, a.what, a.v, err)
			}
			if _, err := strconv.ParseUint(port, 10, 16); err != nil {
				return ps, fmt.Errorf("port spec %q: udp %s address %q: port %q is not a number", s, a.what, a.v, port)
			}
			if a.what == "peer" && (host == "" || port == "0") {
				return ps, fmt.Errorf("port spec %q: udp peer address %q needs a host and a port", s, a.v)
			}
		}
	case "iface":
		ps.Iface = strings.TrimSpace(arg)
		if ps.Iface == "" {
			return ps, fmt.Errorf("port spec %q: iface needs an interface name (iface:veth0)", s)
		}
		if len(ps.Iface) > 15 || strings.ContainsAny(ps.Iface, " /") {
			return ps, fmt.Errorf("port spec %q: %q is not a Linux interface name", s, ps.Iface)
		}
	case "mem":
		if arg != "" {
			return ps, fmt.Errorf("port spec %q: mem takes no argument", s)
		}
	default:
		return ps, fmt.Errorf("port spec %q: unknown port kind %q (want udp, iface or mem)", s, kind)
	}
	return ps, nil
}

// Open creates the port. For "mem" it returns the switch's end of a new
// in-memory link; the other end is its Peer().
func (p PortSpec) Open() (Port, error) {
	switch p.Kind {
	case "udp":
		return NewUDPPort(p.Local, p.Peer)
	case "iface":
		return NewPacketPort(p.Iface)
	case "mem":
		a, _ := NewMemPair()
		return a, nil
	}
	return nil, fmt.Errorf("port %d: unknown port kind %q", p.Num, p.Kind)
}
