// Package yamlconf holds what DMSC's YAML configuration parsers (node.yaml,
// spa.yaml and its policy, scsc.yaml) share: reading a file with a size
// bound, and naming a YAML node in an error message the same way in each,
// so that "want a list, got a mapping" reads alike whichever file is wrong.
package yamlconf

import (
	"fmt"
	"io"
	"os"
	"strconv"

	"gopkg.in/yaml.v3"
)

// TooLargeError says a configuration file is larger than its parser reads.
type TooLargeError struct {
	Path  string
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s: larger than the limit of %d bytes", e.Path, e.Limit)
}

// ReadFile reads path and refuses, with a *TooLargeError, a file larger than
// limit bytes: a configuration is small, and a huge file is a mistake (the
// wrong path), not something to load into memory.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, &TooLargeError{Path: path, Limit: limit}
	}
	return b, nil
}

// KindName names a node's kind: "a mapping", "a list", "a scalar".
func KindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.DocumentNode:
		return "a document"
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		return "a scalar"
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

// Describe says what a node holds, for "got ..." in an error: a scalar's
// quoted value, "nothing" for null, else its kind.
func Describe(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		if n.Tag == "!!null" {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return KindName(n)
}

// PathOr is a field path for a message, "(top level)" for the root.
func PathOr(p string) string {
	if p == "" {
		return "(top level)"
	}
	return p
}
