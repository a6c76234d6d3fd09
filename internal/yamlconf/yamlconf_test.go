package yamlconf

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(p, []byte("a: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(p, 5); err != nil || string(b) != "a: 1\n" {
		t.Errorf("at the limit: %q, %v", b, err)
	}
	var tl *TooLargeError
	if _, err := ReadFile(p, 4); !errors.As(err, &tl) || tl.Limit != 4 || tl.Path != p {
		t.Errorf("over the limit: %v", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "none.yaml"), 5); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestDescribe(t *testing.T) {
	doc := func(s string) *yaml.Node {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(s), &n); err != nil {
			t.Fatal(err)
		}
		return n.Content[0]
	}
	for _, c := range []struct {
		in, want string
	}{
		{"x", `"x"`},
		{`"a \"q\""`, `"a \"q\""`},
		{"~", "nothing"},
		{"null", "nothing"},
		{"[1]", "a list"},
		{"{a: 1}", "a mapping"},
	} {
		if got := Describe(doc(c.in)); got != c.want {
			t.Errorf("Describe(%s) = %s, want %s", c.in, got, c.want)
		}
	}
	if got := KindName(&yaml.Node{}); got != "nothing" {
		t.Errorf("KindName of the zero node = %s", got)
	}
	if got := KindName(&yaml.Node{Kind: yaml.AliasNode}); got != "an alias" {
		t.Errorf("KindName(alias) = %s", got)
	}
	if PathOr("") != "(top level)" || PathOr("a.b") != "a.b" {
		t.Error("PathOr")
	}
}
