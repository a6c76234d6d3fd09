// Package mininet carries dmsc_mininet.py, the driver that builds a DMSC
// fabric on a mininet topology (Debian's mininet, through /usr/bin/python3):
// a switch per node (the Go software switch over AF_PACKET, or BMv2's
// simple_switch_grpc in a namespace of its own), the agents, SPA and SCSC on
// the host, and pods in mininet hosts. `dmsc topo mininet` embeds the script
// from here, so the binary runs it without the source tree; the scenario
// test beside it runs that verb. README.md says what it builds, asserts and
// cleans up.
package mininet

import _ "embed"

// Script is dmsc_mininet.py.
//
//go:embed dmsc_mininet.py
var Script []byte

// ScriptName is the file name the script is written under.
const ScriptName = "dmsc_mininet.py"
