package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dmsc-mesh/dmsc/p4"
	"github.com/dmsc-mesh/dmsc/p4rt"
)

func run(ctx context.Context, args ...string) (string, error) {
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	return out.String(), err
}

func TestVersion(t *testing.T) {
	out, err := run(context.Background(), "version")
	if err != nil || !strings.HasPrefix(out, "dmsc ") {
		t.Fatalf("version: %q, %v", out, err)
	}
}

func TestSoftswitchBadInput(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"softswitch"}, "no --port given"},
		{[]string{"softswitch", "--port", "1=udp:127.0.0.1:0"}, "udp needs LOCAL,PEER"},
		{[]string{"softswitch", "--port", "x=mem"}, `port number "x"`},
		{[]string{"softswitch", "--port", "1=tcp:a"}, `unknown port kind "tcp"`},
		{[]string{"softswitch", "--port", "1=mem", "--impair", "1:delay=fast"}, "--impair"},
		{[]string{"softswitch", "--port", "1=mem", "--impair", "delay=1ms"}, "want PORT:"},
		{[]string{"softswitch", "--port", "1=mem", "--p4rt", "256.0.0.1:1"}, "--p4rt"},
		{[]string{"--log-level", "loud", "softswitch", "--port", "1=mem"}, "--log-level"},
	}
	for _, tt := range tests {
		_, err := run(context.Background(), tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("dmsc %s: %v, want an error containing %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
}

// TestSoftswitchServes starts the verb, programs it with the P4Runtime
// client and stops it by cancelling its context.
func TestSoftswitchServes(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := run(ctx, "--log-level", "warn", "softswitch", "--p4rt", addr, "--device-id", "7",
			"--port", "1=udp:127.0.0.1:0,127.0.0.1:9", "--impair", "1:delay=1ms")
		done <- err
	}()

	tctx, tcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer tcancel()
	c, err := p4rt.Dial(tctx, addr, p4rt.Options{DeviceID: 7, ElectionID: p4rt.ElectionID{Low: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitPrimary(tctx); err != nil {
		t.Fatal(err)
	}
	s, err := p4.Schema()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetPipeline(tctx, s.P4Info(), nil, 1); err != nil {
		t.Fatal(err)
	}
	e, err := p4rt.NewTableEntry(s, p4.TablePortRole).ExactUint(p4.FieldPort, 1).
		Action(p4.ActionSetPortRole, p4rt.Param(p4.ParamRole, p4.RoleFabric)).Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(tctx, p4rt.Insert(e)); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("softswitch exited with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("softswitch did not stop")
	}
}
