package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
)

// globalFlags are the flags every verb shares.
type globalFlags struct {
	logLevel  string
	logFormat string
}

func newRootCommand() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "dmsc",
		Short: "DMSC: microservices routed by service name over a P4 fabric",
		Long: `dmsc runs the parts of a DMSC fabric (Distributed Micro Service Communication):
pods announce service prefixes such as /shop/cart to a Service Gateway, and the
fabric forwards frames by service key instead of IP address.

Every verb logs with log/slog to standard error; --log-format json suits collectors.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(
		newVersionCommand(),
		newSoftswitchCommand(g),
		newCACommand(g),
		newSPACommand(g),
		newShowCommand(g),
		newDemoCommand(g),
		newSCSCCommand(g),
		newAgentCommand(g),
		newPodCommand(g),
		newTopoCommand(g),
	)
	return root
}

// logger builds the logger the flags ask for, writing to w.
func (g *globalFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(g.logFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", g.logFormat)
	}
}
