//go:build !linux

package softswitch

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"
)

var errNotLinux = errors.New("softswitch: UDP tunnel and interface ports need Linux (recvmmsg, AF_PACKET)")

// UDPPort is a UDP tunnel port; it needs Linux.
type UDPPort struct{}

// NewUDPPort needs Linux.
func NewUDPPort(local, peer string) (*UDPPort, error) { return nil, errNotLinux }

func (*UDPPort) ReadBatch([]Message) (int, error)  { return 0, errNotLinux }
func (*UDPPort) WriteBatch([]Message) (int, error) { return 0, errNotLinux }
func (*UDPPort) SetReadDeadline(time.Time) error   { return errNotLinux }
func (*UDPPort) Close() error                      { return nil }
func (*UDPPort) LocalAddr() *net.UDPAddr           { return nil }

// PacketPort is an AF_PACKET interface port; it needs Linux.
type PacketPort struct{}

// NewPacketPort needs Linux.
func NewPacketPort(iface string) (*PacketPort, error) { return nil, errNotLinux }

func (*PacketPort) ReadBatch([]Message) (int, error)  { return 0, errNotLinux }
func (*PacketPort) WriteBatch([]Message) (int, error) { return 0, errNotLinux }
func (*PacketPort) SetReadDeadline(time.Time) error   { return errNotLinux }
func (*PacketPort) Close() error                      { return nil }

// WatchCarrier needs Linux (netlink).
func WatchCarrier(ctx context.Context, sw PortSetter, ifaces map[string]uint16, log *slog.Logger) error {
	return errNotLinux
}
