//go:build linux

package softswitch

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// socketBuffer is the kernel buffer asked for each socket: a few milliseconds
// of line rate, so bursts between two batches are not lost in the kernel.
const socketBuffer = 4 << 20

// UDPPort is a UDP tunnel: each Ethernet frame is the payload of one UDP
// datagram between a local and a peer address. The socket is connected to
// the peer, so the kernel delivers only the peer's datagrams.
type UDPPort struct {
	conn *net.UDPConn
	*batchIO
	peer *net.UDPAddr
}

// NewUDPPort binds local ("127.0.0.1:7001", port 0 for any) and connects to
// peer. Nothing needs to listen at peer yet: frames sent before the peer is
// up are lost, as on a cable with nothing at the other end.
func NewUDPPort(local, peer string) (*UDPPort, error) {
	laddr, err := net.ResolveUDPAddr("udp", local)
	if err != nil {
		return nil, fmt.Errorf("udp port: local address %q: %w", local, err)
	}
	raddr, err := net.ResolveUDPAddr("udp", peer)
	if err != nil {
		return nil, fmt.Errorf("udp port: peer address %q: %w", peer, err)
	}
	conn, err := net.DialUDP("udp", laddr, raddr)
	if err != nil {
		return nil, fmt.Errorf("udp port %s→%s: %w", local, peer, err)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("udp port %s→%s: %w", local, peer, err)
	}
	setBuffers(rc)
	return &UDPPort{conn: conn, batchIO: newBatchIO(rc), peer: raddr}, nil
}

// setBuffers enlarges the socket buffers, past rmem_max/wmem_max when the
// process may (CAP_NET_ADMIN), else as far as the limits allow.
func setBuffers(rc syscall.RawConn) {
	_ = rc.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], socketBuffer) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], socketBuffer)
			}
		}
	})
}

// LocalAddr is the bound local address (useful after binding port 0).
func (p *UDPPort) LocalAddr() *net.UDPAddr { return p.conn.LocalAddr().(*net.UDPAddr) }

// PeerAddr is the address frames are sent to.
func (p *UDPPort) PeerAddr() *net.UDPAddr { return p.peer }

// SetReadDeadline implements Port.
func (p *UDPPort) SetReadDeadline(t time.Time) error { return p.conn.SetReadDeadline(t) }

// Close implements Port.
func (p *UDPPort) Close() error { return p.conn.Close() }

func (p *UDPPort) String() string { return fmt.Sprintf("udp:%s,%s", p.LocalAddr(), p.peer) }

// Errors returns the frames dropped because they did not fit a receive
// buffer and the frames the kernel refused to send.
func (p *UDPPort) Errors() (rxTruncated, txRefused uint64) {
	return p.rxTrunc.Load(), p.txErrors.Load()
}

// PacketPort is a Linux network interface read and written whole frames at
// a time through an AF_PACKET socket: promiscuous, bound to the interface,
// not seeing its own transmissions.
type PacketPort struct {
	file  *os.File
	iface string
	*batchIO
}

// NewPacketPort opens the interface by name. It needs CAP_NET_RAW.
func NewPacketPort(iface string) (*PacketPort, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("iface port %q: %w", iface, err)
	}
	// Protocol 0: receive nothing until bound to the one interface, so no
	// frame of another interface slips in between socket and bind.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("iface port %q: socket: %w", iface, err)
	}
	fail := func(what string, err error) (*PacketPort, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("iface port %q: %s: %w", iface, what, err)
	}
	mreq := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
		return fail("promiscuous mode", err)
	}
	// Without this the socket would read back every frame it sends
	// (Linux 4.20 and later; older kernels refuse the option).
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fail("PACKET_IGNORE_OUTGOING (needs Linux 4.20)", err)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	file := os.NewFile(uintptr(fd), "packet:"+iface)
	rc, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("iface port %q: %w", iface, err)
	}
	setBuffers(rc)
	return &PacketPort{file: file, iface: iface, batchIO: newBatchIO(rc)}, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// SetReadDeadline implements Port.
func (p *PacketPort) SetReadDeadline(t time.Time) error { return p.file.SetReadDeadline(t) }

// Close implements Port.
func (p *PacketPort) Close() error {
	err := p.file.Close()
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

func (p *PacketPort) String() string { return "iface:" + p.iface }

// Errors returns the frames dropped because they did not fit a receive
// buffer and the frames the kernel refused to send.
func (p *PacketPort) Errors() (rxTruncated, txRefused uint64) {
	return p.rxTrunc.Load(), p.txErrors.Load()
}
