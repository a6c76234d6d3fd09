package ca

import (
	"crypto/x509"
	"strings"
	"testing"
)

// FuzzParseIdentityURIs: the identity parser never panics, and what it
// accepts survives a round trip through URIs.
func FuzzParseIdentityURIs(f *testing.F) {
	for _, s := range []string{
		"dmsc://example.org/shop/cart",
		"dmsc://example.org/_node/sg1\ndmsc://example.org/_role/sg",
		"dmsc://example.org",
		"dmsc://example.org:1/a",
		"dmsc://a/b%2f\ndmsc://a/_role/sr",
		"dmsc://x/a?b#c",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var uris []string
		if in != "" {
			uris = strings.Split(in, "\n")
		}
		id, err := ParseIdentityURIs(uris)
		if err != nil {
			return
		}
		var back []string
		for _, u := range id.URIs() {
			back = append(back, u.String())
		}
		id2, err := ParseIdentityURIs(back)
		if err != nil || id2 != id {
			t.Fatalf("%q → %+v → %q → %+v, %v", uris, id, back, id2, err)
		}
	})
}

// FuzzIdentityOfDER: any DER that parses as a certificate goes through
// IdentityOf without a panic.
func FuzzIdentityOfDER(f *testing.F) {
	c, _ := newCA(f)
	pod, _ := c.IssuePod("/shop/cart")
	node, _ := c.IssueNode("sg1", RoleSG)
	f.Add(c.Cert.Raw)
	f.Add(pod.Cert.Raw)
	f.Add(node.Cert.Raw)
	f.Fuzz(func(t *testing.T, der []byte) {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		_, _ = IdentityOf(cert)
	})
}
