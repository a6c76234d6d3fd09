package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newSoftswitchCommand is replaced by the software switch's own verb.
func newSoftswitchCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "softswitch",
		Short: "Run the Go software switch behind a P4Runtime server",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return errors.New("not yet built")
		},
	}
}
