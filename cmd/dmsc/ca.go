package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/wire"
)

// defaultCADir is where the CA lives unless --dir says otherwise.
const defaultCADir = "./ca"

func newCACommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Run the domain certificate authority: make the CA, issue pod and node certificates",
		Long: `ca manages the DMSC domain certificate authority (DESIGN §7). The CA is a
directory holding ca.crt (give it to every SPA, agent and pod) and ca.key
(0600; it signs every certificate of the domain: keep it offline).

Certificates name DMSC identities in URI SANs, in the manner of SPIFFE IDs:
  pod    dmsc://<domain>/shop/cart                the service prefix it may announce
  node   dmsc://<domain>/_node/<id> and           an SG, SR, SPA or SCSC
         dmsc://<domain>/_role/<sg|sr|spa|scsc>

Keys are Ed25519. No command replaces an existing file unless given --force.`,
		Example: `  dmsc ca init --domain example.org
  dmsc ca issue node --id spa1 --role spa --host spa.example.org
  dmsc ca issue node --id sg1 --role sg
  dmsc ca issue pod --prefix /shop/cart --out-cert cart.crt --out-key cart.key
  dmsc ca show ca/pod.shop.cart.crt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	issue := &cobra.Command{
		Use:   "issue",
		Short: "Issue a pod or node certificate signed by the CA",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	issue.AddCommand(newCAIssuePodCommand(g), newCAIssueNodeCommand(g))
	cmd.AddCommand(newCAInitCommand(g), issue, newCAShowCommand())
	return cmd
}

type caInitFlags struct {
	domain   string
	dir      string
	validity time.Duration
	force    bool
}

func newCAInitCommand(g *globalFlags) *cobra.Command {
	f := &caInitFlags{}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Make a new domain CA (ca.crt and ca.key in --dir)",
		Long: `init makes a new CA for --domain: an Ed25519 key in DIR/ca.key (0600) and a
self-signed certificate in DIR/ca.crt naming dmsc://<domain>. The certificate is
name-constrained to the domain, so nothing it signs can name another domain.
DIR is created (0700) if missing. Replacing a CA (--force) makes every
certificate the old one issued untrusted.`,
		Example: `  dmsc ca init --domain example.org --dir /etc/dmsc/ca`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCAInit(cmd, g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.domain, "domain", "", "the DMSC domain, a lowercase DNS name such as example.org (required)")
	fl.StringVar(&f.dir, "dir", defaultCADir, "directory to write ca.crt and ca.key to")
	fl.DurationVar(&f.validity, "validity", ca.DefaultCAValidity, "how long the CA certificate is valid; leaves cannot outlive it")
	fl.BoolVar(&f.force, "force", false, "replace an existing CA in --dir (invalidates everything it issued)")
	_ = cmd.MarkFlagRequired("domain")
	return cmd
}

func runCAInit(cmd *cobra.Command, g *globalFlags, f *caInitFlags) error {
	log, err := g.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	// Checked here as well as in ca.Init so that the message names the flag.
	if err := ca.CheckDomain(f.domain); err != nil {
		return fmt.Errorf("--domain %q: %w", f.domain, err)
	}
	if err := checkValidity(f.validity); err != nil {
		return err
	}
	opts := []ca.Option{ca.WithValidity(f.validity)}
	if f.force {
		opts = append(opts, ca.WithForce())
	}
	c, err := ca.Init(f.dir, f.domain, opts...)
	if err != nil {
		return forceHint(err)
	}
	certPath, keyPath := caPaths(f.dir)
	id, err := ca.IdentityOf(c.Cert)
	if err != nil {
		return fmt.Errorf("ca init: the new certificate %s: %w", certPath, err)
	}
	// A CA's creation is worth a log record (collectors keep it) besides the
	// summary for the operator on standard output.
	log.Info("ca initialised", "identity", id.String(), "serial", ca.SerialString(c.Cert.SerialNumber),
		"not_after", c.Cert.NotAfter, "cert", certPath, "key", keyPath)
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "initialised CA %s\n", id)
	printWritten(w, c.Cert, certPath, keyPath, "keep it offline; it signs every certificate of the domain")
	return nil
}

type caIssueFlags struct {
	dir      string
	certOut  string
	keyOut   string
	validity time.Duration
	force    bool

	prefix string // pod

	id    string   // node
	role  string   // node
	hosts []string // node
}

// addCommon adds the flags pod and node issuing share.
func (f *caIssueFlags) addCommon(cmd *cobra.Command, validity time.Duration, defaultName string) {
	fl := cmd.Flags()
	fl.StringVar(&f.dir, "dir", defaultCADir, "the CA directory (made by dmsc ca init)")
	fl.StringVar(&f.certOut, "out-cert", "", "where to write the certificate (default: DIR/"+defaultName+".crt); give --out-key with it")
	fl.StringVar(&f.keyOut, "out-key", "", "where to write the private key, 0600 (default: DIR/"+defaultName+".key); give --out-cert with it")
	fl.DurationVar(&f.validity, "validity", validity, "how long the certificate is valid (at most until the CA expires)")
	fl.BoolVar(&f.force, "force", false, "replace existing certificate and key files")
	// One of the two alone would leave the other next to the CA key, which
	// is rarely what the operator meant.
	cmd.MarkFlagsRequiredTogether("out-cert", "out-key")
}

func (f *caIssueFlags) options() []ca.Option {
	opts := []ca.Option{ca.WithValidity(f.validity)}
	if f.certOut != "" {
		opts = append(opts, ca.WithOutput(f.certOut, f.keyOut))
	}
	if f.force {
		opts = append(opts, ca.WithForce())
	}
	return opts
}

// checkOutputs refuses --out-cert or --out-key naming the CA's own files:
// with --force, a leaf would replace the CA.
func (f *caIssueFlags) checkOutputs() error {
	caCert, caKey := caPaths(f.dir)
	for _, out := range []struct{ flag, path string }{{"--out-cert", f.certOut}, {"--out-key", f.keyOut}} {
		if out.path == "" {
			continue
		}
		for _, own := range []string{caCert, caKey} {
			if samePath(out.path, own) {
				return fmt.Errorf("%s %s: that is the CA's own %s; refusing to overwrite it", out.flag, out.path, filepath.Base(own))
			}
		}
	}
	return nil
}

// samePath reports whether a and b name one file: the same clean absolute
// path, or (when both exist) the same file through links.
func samePath(a, b string) bool {
	aa, errA := filepath.Abs(a)
	ab, errB := filepath.Abs(b)
	if errA == nil && errB == nil && aa == ab {
		return true
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

func newCAIssuePodCommand(g *globalFlags) *cobra.Command {
	f := &caIssueFlags{}
	cmd := &cobra.Command{
		Use:   "pod",
		Short: "Issue a pod certificate for a service prefix",
		Long: `pod issues a certificate naming dmsc://<domain><prefix>: the pod may announce
--prefix (and, where SPA's policy allows self/**, names below it). It is valid
for TLS client and server auth, as pods speak QUIC to each other.

The prefix is 1 to 3 components of [a-z0-9-] ("/shop", "/shop/cart",
"/shop/cart/v2"); /_node/... is reserved for switches.`,
		Example: `  dmsc ca issue pod --prefix /shop/cart
  dmsc ca issue pod --prefix /shop/cart --out-cert cart.crt --out-key cart.key --validity 720h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCAIssue(cmd, g, f, ca.KindPod)
		},
	}
	cmd.Flags().StringVar(&f.prefix, "prefix", "", "the service prefix the pod owns, such as /shop/cart (required)")
	_ = cmd.MarkFlagRequired("prefix")
	f.addCommon(cmd, ca.DefaultPodValidity, "pod.<components joined by '.'>")
	return cmd
}

func newCAIssueNodeCommand(g *globalFlags) *cobra.Command {
	f := &caIssueFlags{}
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Issue a node certificate for an SG, SR, SPA or SCSC",
		Long: `node issues a certificate naming dmsc://<domain>/_node/<id> and
dmsc://<domain>/_role/<role>, for mutual TLS as client and server. DMSC peers
check each other by identity, not host name; --host adds DNS names or IP
addresses for clients that check those too (repeatable, or comma-separated).

Roles: sg (service gateway agent), sr (service router agent), spa (the SPA
server), scsc (the scheduling center).`,
		Example: `  dmsc ca issue node --id sg1 --role sg
  dmsc ca issue node --id spa1 --role spa --host 127.0.0.1 --host spa.example.org`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCAIssue(cmd, g, f, ca.KindNode)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.id, "id", "", "the node's router id, as in /_node/<id>: one component of [a-z0-9-] (required)")
	fl.StringVar(&f.role, "role", "", "the node's role: "+roleList()+" (required)")
	fl.StringSliceVar(&f.hosts, "host", nil, "a DNS name or IP address to add to the certificate (repeatable)")
	_ = cmd.MarkFlagRequired("id")
	_ = cmd.MarkFlagRequired("role")
	f.addCommon(cmd, ca.DefaultNodeValidity, "node.<id>")
	return cmd
}

func runCAIssue(cmd *cobra.Command, g *globalFlags, f *caIssueFlags, kind ca.Kind) error {
	log, err := g.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	if err := checkValidity(f.validity); err != nil {
		return err
	}
	var role ca.Role
	if kind == ca.KindNode {
		// Checked with the ca package's own parser before anything else, so
		// that the message names the flag and lists the choices.
		if role, err = ca.ParseRole(f.role); err != nil {
			return fmt.Errorf("--role %q: want one of %s", f.role, roleList())
		}
		for _, h := range f.hosts {
			if err := checkHost(h); err != nil {
				return err
			}
		}
	}
	authority, err := ca.Load(f.dir)
	if err != nil {
		return caDirError(f.dir, err)
	}
	if err := f.checkOutputs(); err != nil {
		return err
	}
	opts := f.options()
	var is *ca.Issued
	if kind == ca.KindPod {
		is, err = ca.IssuePod(f.dir, f.prefix, opts...)
		// ca says what is wrong with a name (including the reserved /_node
		// namespace); the flag is named here.
		if _, nerr := wire.ParseName(f.prefix); err != nil && nerr != nil {
			return fmt.Errorf("--prefix: %w", err)
		}
	} else {
		is, err = ca.IssueNode(f.dir, f.id, role, append(opts, ca.WithHosts(f.hosts...))...)
		if _, nerr := wire.NodeName(f.id); err != nil && nerr != nil {
			return fmt.Errorf("--id: %w", err)
		}
	}
	if err != nil {
		if !errors.Is(err, ca.ErrExists) && time.Now().Add(f.validity).After(authority.Cert.NotAfter) {
			return fmt.Errorf("--validity %v: %w", f.validity, err)
		}
		return forceHint(err)
	}
	log.Info("ca issued certificate", "identity", is.Identity.String(), "serial", ca.SerialString(is.Cert.SerialNumber),
		"not_after", is.Cert.NotAfter, "cert", is.CertPath, "key", is.KeyPath)
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "issued %s certificate %s\n", kind, is.Identity)
	keyNote := "give it only to the pod"
	if kind == ca.KindNode {
		keyNote = "give it only to node " + f.id
	}
	printWritten(w, is.Cert, is.CertPath, is.KeyPath, keyNote)
	if hosts := certHosts(is.Cert); hosts != "" {
		fmt.Fprintf(w, "  hosts     %s\n", hosts)
	}
	return nil
}

func newCAShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show FILE.crt",
		Short: "Print the DMSC identity, serial, validity and issuer of a certificate file",
		Long: `show prints every certificate of a PEM file: its DMSC identity, its serial as
SPA logs it and as revoked.txt accepts it, its validity (and whether it is valid
now), its issuer and its host names. It does not verify the signature; SPA and
the agents do that against ca.crt. It exits non-zero when a certificate carries
no valid DMSC identity.`,
		Example: `  dmsc ca show ca/node.sg1.crt`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCAShow(cmd.OutOrStdout(), args[0], time.Now())
		},
	}
}

func runCAShow(w io.Writer, path string, now time.Time) error {
	certs, err := ca.ReadCertChain(path)
	if err != nil {
		return fmt.Errorf("ca show: %w", err)
	}
	var bad []error
	for i, c := range certs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if len(certs) > 1 {
			fmt.Fprintf(w, "certificate %d of %d in %s\n", i+1, len(certs), path)
		} else {
			fmt.Fprintf(w, "certificate %s\n", path)
		}
		id, err := ca.IdentityOf(c)
		if err != nil {
			// Still print the rest: an operator looking at a bad certificate
			// wants to see what it is.
			fmt.Fprintf(w, "  identity  (none: %v)\n", err)
			bad = append(bad, fmt.Errorf("%s: certificate %d: %w", path, i+1, err))
		} else {
			fmt.Fprintf(w, "  identity  %s\n", id)
			fmt.Fprintf(w, "  kind      %s\n", id.Kind)
		}
		fmt.Fprintf(w, "  serial    %s\n", ca.SerialString(c.SerialNumber))
		fmt.Fprintf(w, "  subject   %s\n", c.Subject)
		fmt.Fprintf(w, "  issuer    %s\n", c.Issuer)
		fmt.Fprintf(w, "  valid     %s to %s (%s)\n", c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), validityState(c, now))
		if hosts := certHosts(c); hosts != "" {
			fmt.Fprintf(w, "  hosts     %s\n", hosts)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("ca show: %w", errors.Join(bad...))
	}
	return nil
}

// validityState says whether c is valid at now, and for how long.
func validityState(c *x509.Certificate, now time.Time) string {
	switch {
	case now.Before(c.NotBefore):
		return "not yet valid: starts in " + roundDuration(c.NotBefore.Sub(now))
	case now.After(c.NotAfter):
		return "EXPIRED " + roundDuration(now.Sub(c.NotAfter)) + " ago"
	}
	return "valid now; expires in " + roundDuration(c.NotAfter.Sub(now))
}

// roundDuration prints whole days for long spans and minutes for hours,
// where the finer digits are noise.
func roundDuration(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d >= 2*day:
		return fmt.Sprintf("%dd", d/day)
	case d >= time.Hour:
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Second).String()
}

func certHosts(c *x509.Certificate) string {
	var hosts []string
	hosts = append(hosts, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	return strings.Join(hosts, ", ")
}

func printWritten(w io.Writer, c *x509.Certificate, certPath, keyPath, keyNote string) {
	fmt.Fprintf(w, "  cert      %s\n", certPath)
	fmt.Fprintf(w, "  key       %s (0600; %s)\n", keyPath, keyNote)
	fmt.Fprintf(w, "  serial    %s\n", ca.SerialString(c.SerialNumber))
	fmt.Fprintf(w, "  valid     %s to %s\n", c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
}

func caPaths(dir string) (certPath, keyPath string) {
	return filepath.Join(dir, ca.CertFile), filepath.Join(dir, ca.KeyFile)
}

// checkHost accepts an IP address or a DNS name (optionally a "*." wildcard),
// which ca puts into the certificate as given.
func checkHost(h string) error {
	if net.ParseIP(h) != nil {
		return nil
	}
	if err := ca.CheckDomain(strings.ToLower(strings.TrimPrefix(h, "*."))); err != nil {
		return fmt.Errorf("--host %q: want a DNS name or an IP address: %w", h, err)
	}
	return nil
}

func checkValidity(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("--validity %v: must be positive", d)
	}
	return nil
}

// caDirError explains a CA that cannot be loaded from --dir.
func caDirError(dir string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(dir); serr != nil {
			return fmt.Errorf("--dir %s: no such CA directory (make one with dmsc ca init --domain DOMAIN --dir %s)", dir, dir)
		}
		return fmt.Errorf("--dir %s: not a CA directory: %w (make one with dmsc ca init --domain DOMAIN --dir %s)", dir, err, dir)
	}
	return fmt.Errorf("--dir %s: %w", dir, err)
}

// forceHint says that a refusal to replace a file left everything as it was
// (ca's message already points at force).
func forceHint(err error) error {
	if errors.Is(err, ca.ErrExists) {
		return fmt.Errorf("%w; nothing was written", err)
	}
	return err
}

func roleList() string {
	var s []string
	for _, r := range ca.Roles() {
		s = append(s, string(r))
	}
	return strings.Join(s, ", ")
}
