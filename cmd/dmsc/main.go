// Command dmsc runs every part of a DMSC fabric: the software switch, the
// per-switch agent, SPA, SCSC, the certificate authority, pods and the demo.
// Each verb lives in a file of its own.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dmsc:", err)
		os.Exit(1)
	}
}
