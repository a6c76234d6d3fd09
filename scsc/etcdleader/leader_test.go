package etcdleader

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/dmsc-mesh/dmsc/scsc"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startEtcd runs a one-member etcd on loopback in a temporary directory.
func startEtcd(t *testing.T) string {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	cfg.LogLevel = "fatal" // its shutdown logs errors for the listeners it closes
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.Name + "=" + peer.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(20 * time.Second):
		t.Fatal("etcd not ready within 20 s")
	}
	return client.Host
}

func TestElectionHandsOver(t *testing.T) {
	endpoint := startEtcd(t)
	cfg := &scsc.ElectionConfig{Endpoints: []string{endpoint}, Prefix: "/dmsc/scsc/leader", TTL: time.Second}
	type replica struct {
		l      *Leader
		leads  chan bool
		cancel context.CancelFunc
		done   chan error
	}
	run := func(id string) *replica {
		l, err := New(cfg, id, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		ctx, cancel := context.WithCancel(context.Background())
		r := &replica{l: l, leads: make(chan bool, 4), cancel: cancel, done: make(chan error, 1)}
		go func() { r.done <- l.Lead(ctx, r.leads) }()
		t.Cleanup(func() { cancel(); <-r.done })
		return r
	}
	a := run("scsc1")
	select {
	case v := <-a.leads:
		if !v {
			t.Fatal("scsc1 reported false first")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("scsc1 not elected within 5 s")
	}
	b := run("scsc2")
	select {
	case v := <-b.leads:
		t.Fatalf("scsc2 reported %v while scsc1 leads", v)
	case <-time.After(1500 * time.Millisecond):
	}
	// scsc1 stops: it resigns, and scsc2 takes over well before the TTL.
	a.cancel()
	if err := <-a.done; err != context.Canceled {
		t.Errorf("Lead returned %v, want context.Canceled", err)
	}
	a.done <- nil // for the cleanup
	start := time.Now()
	select {
	case v := <-b.leads:
		if !v {
			t.Fatal("scsc2 reported false")
		}
		t.Logf("scsc2 elected %v after scsc1 resigned", time.Since(start).Round(time.Millisecond))
	case <-time.After(3 * time.Second):
		t.Fatal("scsc2 not elected within 3 s of scsc1's end")
	}
}
