// Package examples carries the example topologies, so that the demo and
// the tests have the draft's Figure 2 without a path to this directory.
package examples

import _ "embed"

// Fig2 is fig2.yaml: the draft's Figure 2.
//
//go:embed fig2.yaml
var Fig2 []byte
