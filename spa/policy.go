package spa

import (
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/dmsc-mesh/dmsc/internal/yamlconf"
	"github.com/dmsc-mesh/dmsc/wire"
)

// A policy says which pod identities may announce which prefixes, and on
// which SGs. A pod's identity is the prefix its certificate names (the
// domain is SPA's own). The file is YAML:
//
//	version: 1
//	rules:
//	  - deny: /shop/admin/**        # deny rules win over any allow rule
//	  - allow: self                 # every pod may announce its certificate's prefix
//	  - allow: [/shop/**]           # /shop and everything below it ...
//	    identity: /shop             # ... for the pod whose certificate names /shop
//	    sgs: [sg1, sg2]             # ... attached to sg1 or sg2 only
//	    note: the shop's front pods
//
// A rule has exactly one of allow or deny (a pattern or a list), and
// optionally identity (pattern or list; default "*"), sgs (SG node ids;
// default any) and note. Prefix patterns: /a/b (exactly), /a/** (/a and all
// below it), /** (anything), self (the certificate's prefix), self/** (it
// and all below). Identity patterns: /a/b, /a/**, * (any pod).
//
// Deny rules take precedence; otherwise the first matching allow rule
// allows; otherwise the announcement is not allowed (default deny). On top of
// any policy, a pod never announces outside its certificate's prefix: the
// certificate is the ceiling, the policy can only narrow it (and say whether
// a certificate for /shop may announce below it, e.g. /shop/cart).
type Policy struct {
	source string
	rules  []policyRule
}

type policyRule struct {
	where      string // "policy.yaml:12 rules[3]"
	allow      bool
	prefixes   []namePattern
	identities []namePattern
	sgs        []string
}

// namePattern matches names: exactly, a subtree, anything, or the identity's
// own prefix (self) or subtree.
type namePattern struct {
	any     bool
	self    bool
	subtree bool
	name    wire.Name
}

func (p namePattern) match(n, self wire.Name) bool {
	switch {
	case p.any:
		return true
	case p.self && p.subtree:
		return n.HasPrefix(self)
	case p.self:
		return n == self
	case p.subtree:
		return n.HasPrefix(p.name)
	}
	return n == p.name
}

// PolicyResult is the policy's answer for one announcement.
type PolicyResult struct {
	Allowed bool
	// Denied is true when a deny rule matched (as opposed to no allow rule).
	Denied bool
	// Rule locates the deciding rule ("policy.yaml:7 rules[2]"), empty when
	// no rule matched.
	Rule string
}

// Check decides whether identity (the pod certificate's prefix) may announce
// prefix on SG sg.
func (p *Policy) Check(identity, prefix wire.Name, sg string) PolicyResult {
	matches := func(r *policyRule) bool {
		if len(r.sgs) > 0 && !contains(r.sgs, sg) {
			return false
		}
		ok := false
		for _, ip := range r.identities {
			if ip.match(identity, identity) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
		for _, pp := range r.prefixes {
			if pp.match(prefix, identity) {
				return true
			}
		}
		return false
	}
	for i := range p.rules {
		if r := &p.rules[i]; !r.allow && matches(r) {
			return PolicyResult{Denied: true, Rule: r.where}
		}
	}
	for i := range p.rules {
		if r := &p.rules[i]; r.allow && matches(r) {
			return PolicyResult{Allowed: true, Rule: r.where}
		}
	}
	return PolicyResult{}
}

// Len is the number of rules.
func (p *Policy) Len() int { return len(p.rules) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// maxPolicySize bounds what the parser reads: a policy is hand-written, and
// a bound keeps a mistaken (or hostile) file from costing unbounded memory.
const maxPolicySize = 4 << 20

// LoadPolicy reads and parses a policy file.
func LoadPolicy(path string) (*Policy, error) {
	b, err := yamlconf.ReadFile(path, maxPolicySize)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return ParsePolicy(path, b)
}

// ParsePolicy parses policy YAML. name is used in errors, which have the
// form "name:line: field: problem".
func ParsePolicy(name string, data []byte) (*Policy, error) {
	if len(data) > maxPolicySize {
		return nil, fmt.Errorf("%s: policy of %d bytes exceeds %d", name, len(data), maxPolicySize)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	p := &Policy{source: name}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: policy is empty (want version: 1 and rules:)", name)
	}
	root := doc.Content[0]
	e := func(n *yaml.Node, field, format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s: %s", name, n.Line, field, fmt.Sprintf(format, args...))
	}
	if root.Kind != yaml.MappingNode {
		return nil, e(root, "(top level)", "want a mapping with version and rules, got %s", yamlconf.KindName(root))
	}
	var sawVersion, sawRules bool
	err := eachField(root, e, "", func(key string, k, v *yaml.Node) error {
		switch key {
		case "version":
			sawVersion = true
			if v.Kind != yaml.ScalarNode || v.Value != "1" {
				return e(v, "version", "want 1, got %s", yamlconf.Describe(v))
			}
		case "rules":
			sawRules = true
			if v.Kind != yaml.SequenceNode {
				if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
					return nil // "rules:" with nothing: no rule, deny all
				}
				return e(v, "rules", "want a list of rules, got %s", yamlconf.KindName(v))
			}
			for i, rn := range v.Content {
				r, err := parseRule(rn, fmt.Sprintf("rules[%d]", i), e)
				if err != nil {
					return err
				}
				r.where = fmt.Sprintf("%s:%d rules[%d]", name, rn.Line, i)
				p.rules = append(p.rules, r)
			}
		default:
			return e(k, key, "unknown field (want version, rules)")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !sawVersion {
		return nil, e(root, "version", "missing (want version: 1)")
	}
	if !sawRules {
		return nil, e(root, "rules", "missing")
	}
	return p, nil
}

type errAt func(n *yaml.Node, field, format string, args ...any) error

// eachField walks a mapping's fields, refusing aliases, merge keys,
// non-string keys and duplicates.
func eachField(m *yaml.Node, e errAt, path string, fn func(key string, k, v *yaml.Node) error) error {
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		field := k.Value
		if path != "" {
			field = path + "." + k.Value
		}
		if k.Kind != yaml.ScalarNode || (k.Tag != "!!str" && k.Tag != "") {
			return e(k, yamlconf.PathOr(path), "a key must be a plain string, got %s", yamlconf.Describe(k))
		}
		if seen[k.Value] {
			return e(k, field, "given twice")
		}
		seen[k.Value] = true
		if v.Kind == yaml.AliasNode || k.Kind == yaml.AliasNode {
			return e(v, field, "YAML aliases are not supported here")
		}
		if err := fn(k.Value, k, v); err != nil {
			return err
		}
	}
	return nil
}

func parseRule(n *yaml.Node, path string, e errAt) (policyRule, error) {
	var r policyRule
	if n.Kind != yaml.MappingNode {
		return r, e(n, path, "want a mapping with allow or deny, got %s", yamlconf.KindName(n))
	}
	var sawAction, sawIdentity bool
	err := eachField(n, e, path, func(key string, k, v *yaml.Node) error {
		field := path + "." + key
		switch key {
		case "allow", "deny":
			if sawAction {
				return e(k, field, "a rule has exactly one of allow or deny")
			}
			sawAction = true
			r.allow = key == "allow"
			vals, err := stringList(v, field, e)
			if err != nil {
				return err
			}
			for i, s := range vals {
				pat, err := parsePattern(s, true)
				if err != nil {
					return e(v, itemField(field, v, i), "%v", err)
				}
				r.prefixes = append(r.prefixes, pat)
			}
		case "identity":
			sawIdentity = true
			vals, err := stringList(v, field, e)
			if err != nil {
				return err
			}
			for i, s := range vals {
				pat, err := parsePattern(s, false)
				if err != nil {
					return e(v, itemField(field, v, i), "%v", err)
				}
				r.identities = append(r.identities, pat)
			}
		case "sgs":
			vals, err := stringList(v, field, e)
			if err != nil {
				return err
			}
			for i, s := range vals {
				if _, err := wire.NodeName(s); err != nil {
					return e(v, itemField(field, v, i), "SG node id %q: %v", s, errors.Unwrap(err))
				}
			}
			r.sgs = vals
		case "note":
			if v.Kind != yaml.ScalarNode {
				return e(v, field, "want text, got %s", yamlconf.KindName(v))
			}
		default:
			return e(k, field, "unknown field (want allow, deny, identity, sgs, note)")
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	if !sawAction {
		return r, e(n, path, "a rule needs allow or deny")
	}
	if !sawIdentity {
		r.identities = []namePattern{{any: true}}
	}
	return r, nil
}

func itemField(field string, v *yaml.Node, i int) string {
	if v.Kind == yaml.SequenceNode {
		return fmt.Sprintf("%s[%d]", field, i)
	}
	return field
}

// stringList reads a string or a non-empty list of strings.
func stringList(v *yaml.Node, field string, e errAt) ([]string, error) {
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Tag == "!!null" || v.Value == "" {
			return nil, e(v, field, "is empty")
		}
		return []string{v.Value}, nil
	case yaml.SequenceNode:
		if len(v.Content) == 0 {
			return nil, e(v, field, "is an empty list")
		}
		out := make([]string, 0, len(v.Content))
		for i, c := range v.Content {
			if c.Kind != yaml.ScalarNode || c.Tag == "!!null" || c.Value == "" {
				return nil, e(c, fmt.Sprintf("%s[%d]", field, i), "want a non-empty string, got %s", yamlconf.Describe(c))
			}
			out = append(out, c.Value)
		}
		return out, nil
	}
	return nil, e(v, field, "want a string or a list of strings, got %s", yamlconf.KindName(v))
}

// parsePattern reads a prefix pattern (prefix true) or an identity pattern.
func parsePattern(s string, prefix bool) (namePattern, error) {
	switch {
	case s == "/**":
		if !prefix {
			return namePattern{}, errors.New(`"/**": write "*" for any pod identity`)
		}
		return namePattern{any: true}, nil
	case s == "*":
		if prefix {
			return namePattern{}, errors.New(`"*": write "/**" for any prefix`)
		}
		return namePattern{any: true}, nil
	case s == "self" || s == "self/**":
		if !prefix {
			return namePattern{}, fmt.Errorf("%q is for allow and deny, not identity", s)
		}
		return namePattern{self: true, subtree: s == "self/**"}, nil
	}
	base, sub := strings.CutSuffix(s, "/**")
	if strings.Contains(base, "*") {
		return namePattern{}, fmt.Errorf("%q: '*' only as a whole trailing component \"/**\"", s)
	}
	if strings.HasPrefix(base, "/"+wire.NodeNamespace+"/") || base == "/"+wire.NodeNamespace {
		return namePattern{}, fmt.Errorf("%q: /%s names are reserved for switches and never announced by pods", s, wire.NodeNamespace)
	}
	n, err := wire.ParseName(base)
	if err != nil {
		return namePattern{}, err
	}
	return namePattern{subtree: sub, name: n}, nil
}
