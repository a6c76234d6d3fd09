package controller

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func changesString(cs []AdjacencyChange) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("port %d %s→%s (%s)", c.Port, c.From, c.To, c.Neighbor))
	}
	return strings.Join(parts, "; ")
}

func TestAdjacencyTwoWay(t *testing.T) {
	ms := time.Millisecond
	a := NewAdjacencies("sr1", 100*ms)
	a.AddPort(1)
	a.AddPort(2)

	steps := []struct {
		name string
		do   func() []AdjacencyChange
		want string
	}{
		{"one-way hello: init", func() []AdjacencyChange {
			return a.Receive(1, HelloInfo{Router: "sg1", Port: 3}, 0)
		}, "port 1 down→init (sg1)"},
		{"hello listing us on this port: up", func() []AdjacencyChange {
			return a.Receive(1, HelloInfo{Router: "sg1", Port: 3, HeardRouter: "sr1", HeardPort: 1}, 10*ms)
		}, "port 1 init→up (sg1)"},
		{"same hello again: nothing", func() []AdjacencyChange {
			return a.Receive(1, HelloInfo{Router: "sg1", Port: 3, HeardRouter: "sr1", HeardPort: 1}, 20*ms)
		}, ""},
		{"hello listing us on another port: back to init", func() []AdjacencyChange {
			return a.Receive(1, HelloInfo{Router: "sg1", Port: 3, HeardRouter: "sr1", HeardPort: 2}, 30*ms)
		}, "port 1 up→init (sg1)"},
		{"our own hello (looped cable) is ignored", func() []AdjacencyChange {
			return a.Receive(2, HelloInfo{Router: "sr1", Port: 2}, 30*ms)
		}, ""},
		{"untracked port is ignored", func() []AdjacencyChange {
			return a.Receive(9, HelloInfo{Router: "sg2", Port: 1}, 30*ms)
		}, ""},
		{"another node on the link: old one down first", func() []AdjacencyChange {
			return a.Receive(1, HelloInfo{Router: "sg2", Port: 1, HeardRouter: "sr1", HeardPort: 1}, 40*ms)
		}, "port 1 init→down (sg1); port 1 down→up (sg2)"},
		{"not expired within the dead interval", func() []AdjacencyChange { return a.Expire(139 * ms) }, ""},
		{"expired after the dead interval", func() []AdjacencyChange { return a.Expire(140 * ms) }, "port 1 up→down (sg2)"},
	}
	for _, st := range steps {
		if got := changesString(st.do()); got != st.want {
			t.Fatalf("%s: got %q, want %q", st.name, got, st.want)
		}
	}
}

func TestAdjacencyHelloAndUp(t *testing.T) {
	a := NewAdjacencies("sr1", 80*time.Millisecond)
	a.AddPort(4)
	a.AddPort(2)
	if h := a.Hello(4); h.Router != "sr1" || h.Port != 4 || h.HeardRouter != "" {
		t.Fatalf("hello before hearing anyone: %+v", h)
	}
	a.Receive(4, HelloInfo{Router: "sg1", Port: 7, HeardRouter: "sr1", HeardPort: 4, NeighborDMAC: 0xaa}, 0)
	a.Receive(2, HelloInfo{Router: "sr2", Port: 1}, 0)
	if h := a.Hello(4); h.HeardRouter != "sg1" || h.HeardPort != 7 {
		t.Fatalf("hello should list sg1/7: %+v", h)
	}
	up := a.Up(func(port uint16) uint32 { return uint32(port) * 10 })
	if len(up) != 1 || up[0].Neighbor != "sg1" || up[0].LinkID != 4 || up[0].Metric != 40 {
		t.Fatalf("Up() = %+v", up)
	}
	if at, ok := a.NextExpiry(); !ok || at != 80*time.Millisecond {
		t.Fatalf("NextExpiry = %v, %v", at, ok)
	}
	// A neighbour's own hold time wins over our dead interval.
	a.Receive(2, HelloInfo{Router: "sr2", Port: 1, HoldTime: 30 * time.Millisecond}, 10*time.Millisecond)
	if got := changesString(a.Expire(40 * time.Millisecond)); got != "port 2 init→down (sr2)" {
		t.Fatalf("hold time: %q", got)
	}
	if got := changesString(a.RemovePort(4)); got != "port 4 up→down (sg1)" {
		t.Fatalf("RemovePort: %q", got)
	}
	if adj, ok := a.Get(4); ok {
		t.Fatalf("removed port still tracked: %+v", adj)
	}
}

// The switch's carrier report takes an adjacency down at once, and HELLOs
// still in flight from before the cut do not bring it back.
func TestAdjacencyCarrier(t *testing.T) {
	ms := time.Millisecond
	a := NewAdjacencies("sr1", 100*ms)
	a.AddPort(1)
	a.AddPort(2)
	hello := HelloInfo{Router: "sg1", Port: 3, HeardRouter: "sr1", HeardPort: 1}
	steps := []struct {
		name string
		do   func() []AdjacencyChange
		want string
	}{
		{"up", func() []AdjacencyChange { return a.Receive(1, hello, 0) }, "port 1 down→up (sg1)"},
		{"carrier lost: down at once", func() []AdjacencyChange { return a.SetCarrier(1, false) }, "port 1 up→down (sg1)"},
		{"a late HELLO is ignored", func() []AdjacencyChange { return a.Receive(1, hello, 5*ms) }, ""},
		{"lost again: nothing more", func() []AdjacencyChange { return a.SetCarrier(1, false) }, ""},
		{"nothing left to expire", func() []AdjacencyChange { return a.Expire(time.Second) }, ""},
		{"carrier on a port that was down: nothing", func() []AdjacencyChange { return a.SetCarrier(2, false) }, ""},
		{"untracked port: nothing", func() []AdjacencyChange { return a.SetCarrier(9, false) }, ""},
		{"carrier back: still down until a HELLO", func() []AdjacencyChange { return a.SetCarrier(1, true) }, ""},
		{"HELLO after the carrier: up", func() []AdjacencyChange { return a.Receive(1, hello, 2*time.Second) }, "port 1 down→up (sg1)"},
	}
	for _, st := range steps {
		if got := changesString(st.do()); got != st.want {
			t.Fatalf("%s: got %q, want %q", st.name, got, st.want)
		}
	}
	if adj, _ := a.Get(2); !adj.NoCarrier {
		t.Error("port 2 forgot that its carrier is down")
	}
}
