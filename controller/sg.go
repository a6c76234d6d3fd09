package controller

import (
	"time"

	"github.com/dmsc-mesh/dmsc/wire"
)

// SGConfig configures the SG duties of an agent in role sg.
type SGConfig struct{}

type sgState struct{}

func (a *Agent) checkSG() error                              { return nil }
func (a *Agent) newSGState() *sgState                        { return &sgState{} }
func (a *Agent) sgStep(time.Duration)                        {}
func (a *Agent) sgNextDeadline() (time.Duration, bool)       { return 0, false }
func (a *Agent) podSignal(uint16, *wire.Frame, wire.Control) { a.drop("pod_signal_unhandled") }
func (a *Agent) sgNodeFrame(uint16, *wire.Frame) bool        { return false }
