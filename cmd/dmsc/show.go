package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dmsc-mesh/dmsc/ca"
	"github.com/dmsc-mesh/dmsc/gnmi"
)

type showFlags struct {
	agent             string
	caFile, cert, key string
	insecure          bool
	timeout           time.Duration
}

// showTable is one `dmsc show` table: the gNMI path it reads, and how its
// leaves become rows.
type showTable struct {
	use, short string
	path       string
	// list is the list element the rows are, and key its key.
	list, key string
	columns   []showColumn
}

type showColumn struct {
	title string
	leaf  string // path of the leaf below the list entry ("state/delay-ns")
	// format turns the value into the cell; nil prints it plainly.
	format func(any) string
}

func ns(v any) string {
	n, ok := v.(uint64)
	if !ok {
		return fmt.Sprint(v)
	}
	return time.Duration(n).Round(time.Microsecond).String()
}

func pct(v any) string {
	f, ok := v.(float64)
	if !ok {
		return fmt.Sprint(v)
	}
	return fmt.Sprintf("%.1f%%", 100*f)
}

func bps(v any) string {
	n, ok := v.(uint64)
	if !ok {
		return fmt.Sprint(v)
	}
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f Gb/s", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f Mb/s", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kb/s", float64(n)/1e3)
	}
	return fmt.Sprintf("%d b/s", n)
}

func unixNS(v any) string {
	n, ok := v.(int64)
	if !ok {
		return fmt.Sprint(v)
	}
	return time.Until(time.Unix(0, n)).Round(100 * time.Millisecond).String()
}

func jsonCell(v any) string {
	j, ok := v.(gnmi.JSON)
	if !ok {
		return fmt.Sprint(v)
	}
	var x any
	if json.Unmarshal(j, &x) != nil {
		return string(j)
	}
	if arr, ok := x.([]any); ok {
		var parts []string
		for _, e := range arr {
			m, ok := e.(map[string]any)
			if !ok {
				parts = append(parts, fmt.Sprint(e))
				continue
			}
			var kv []string
			for _, k := range slices.Sorted(maps.Keys(m)) {
				kv = append(kv, fmt.Sprintf("%s=%v", k, m[k]))
			}
			parts = append(parts, strings.Join(kv, ","))
		}
		return strings.Join(parts, " ")
	}
	return string(j)
}

var showTables = []showTable{
	{use: "neighbors", short: "Adjacencies on fabric ports, with link delay, jitter, loss and utilisation",
		path: "/dmsc/neighbors", list: "neighbor", key: "port", columns: []showColumn{
			{"NEIGHBOR", "state/neighbor", nil}, {"STATE", "state/state", nil}, {"METRIC", "state/metric", nil},
			{"CAPACITY", "state/capacity-bps", bps}, {"USED", "state/utilization-bps", bps},
			{"DELAY", "state/delay-ns", ns}, {"JITTER", "state/jitter-ns", ns}, {"LOSS", "state/loss", pct}}},
	{use: "lsdb", short: "The link-state database: every LSP fragment",
		path: "/dmsc/lsdb/lsp", list: "lsp", key: "origin,fragment", columns: []showColumn{
			{"SEQ", "state/seq", nil}, {"LIFETIME", "state/remaining-lifetime", nil},
			{"ADJACENCIES", "state/adjacencies", jsonCell}, {"PREFIXES", "state/prefixes", jsonCell}}},
	{use: "fib", short: "The FIB the agent programmed: prefix, kind, next hops, metric",
		path: "/dmsc/fib", list: "route", key: "prefix", columns: []showColumn{
			{"KIND", "state/kind", nil}, {"METRIC", "state/metric", nil}, {"NEXT HOPS", "state/next-hops", jsonCell}}},
	{use: "probes", short: "An SG's probe results per target service and instance",
		path: "/dmsc/probes", list: "probe", key: "target,instance", columns: []showColumn{
			{"DELAY", "state/delay-ns", ns}, {"JITTER", "state/jitter-ns", ns}, {"LOSS", "state/loss", pct},
			{"SENT", "state/sent", nil}, {"RECEIVED", "state/received", nil}, {"BANDWIDTH", "state/bandwidth-bps", bps}}},
	{use: "policies", short: "The SCSC policies in force on the agent",
		path: "/dmsc/policies", list: "policy", key: "id", columns: []showColumn{
			{"APPLIED", "state/applied", nil}, {"EXPIRES IN", "state/expires", unixNS}, {"POLICY", "config", jsonCell}}},
}

func newShowCommand(g *globalFlags) *cobra.Command {
	f := &showFlags{}
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show an agent's state over gNMI: neighbors, lsdb, fib, probes, policies",
		Long: `show reads an agent's state with gNMI Get (the paths of docs/telemetry.md) and
prints it as a table. With TLS (the default), give the domain CA and any node
certificate of the domain (--ca, --cert, --key); --insecure talks to an agent
that serves gNMI without TLS.`,
		Example: `  dmsc show neighbors --agent 127.0.0.1:9339 --insecure
  dmsc show fib --agent sg1:9339 --ca ca/ca.crt --cert ca/node.scsc1.crt --key ca/node.scsc1.key`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.agent, "agent", "127.0.0.1:9339", "the agent's gNMI address")
	pf.StringVar(&f.caFile, "ca", "", "the domain CA certificate (TLS)")
	pf.StringVar(&f.cert, "cert", "", "a node certificate of the domain (TLS client)")
	pf.StringVar(&f.key, "key", "", "its key")
	pf.BoolVar(&f.insecure, "insecure", false, "no TLS (an agent serving gNMI without TLS)")
	pf.DurationVar(&f.timeout, "timeout", 5*time.Second, "how long to wait for the agent")
	for _, t := range showTables {
		t := t
		cmd.AddCommand(&cobra.Command{
			Use:   t.use,
			Short: t.short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return runShow(cmd.Context(), cmd.OutOrStdout(), f, t)
			},
		})
	}
	return cmd
}

func (f *showFlags) tls() (*tls.Config, error) {
	if f.insecure {
		return nil, nil
	}
	if f.caFile == "" || f.cert == "" || f.key == "" {
		return nil, errors.New("show: TLS needs --ca, --cert and --key (or --insecure for an agent without TLS)")
	}
	c, _, err := ca.LoadClientTLS(f.caFile, f.cert, f.key, ca.RoleSG, ca.RoleSR)
	return c, err
}

func runShow(ctx context.Context, out io.Writer, f *showFlags, t showTable) error {
	tc, err := f.tls()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	c, err := gnmi.Dial(ctx, f.agent, tc)
	if err != nil {
		return fmt.Errorf("show: agent %s: %w", f.agent, err)
	}
	defer c.Close()
	rs, err := c.Get(ctx, t.path)
	if err != nil {
		if status.Code(err) == codes.NotFound {
			fmt.Fprintf(out, "no %s on %s\n", t.use, f.agent)
			return nil
		}
		return fmt.Errorf("show %s: %w", t.use, err)
	}
	keys := strings.Split(t.key, ",")
	rows := map[string]map[string]any{}
	for _, r := range rs {
		elems := r.Path.GetElem()
		for i, e := range elems {
			if e.GetName() != t.list {
				continue
			}
			var id []string
			for _, k := range keys {
				id = append(id, e.GetKey()[k])
			}
			row := strings.Join(id, "\t")
			if rows[row] == nil {
				rows[row] = map[string]any{}
			}
			var rest []string
			for _, x := range elems[i+1:] {
				rest = append(rest, x.GetName())
			}
			rows[row][strings.Join(rest, "/")] = r.Value
			break
		}
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	header := strings.ToUpper(strings.ReplaceAll(t.key, ",", "\t"))
	for _, c := range t.columns {
		header += "\t" + c.title
	}
	fmt.Fprintln(tw, header)
	ids := slices.SortedFunc(maps.Keys(rows), naturalCompare)
	for _, id := range ids {
		line := id
		for _, c := range t.columns {
			v, ok := rows[id][c.leaf]
			cell := "-"
			if ok {
				if c.format != nil {
					cell = c.format(v)
				} else {
					cell = fmt.Sprint(v)
				}
			}
			line += "\t" + cell
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// naturalCompare orders "2" before "10" in key columns.
func naturalCompare(a, b string) int {
	if len(a) != len(b) && strings.IndexFunc(a+b, func(r rune) bool { return r < '0' || r > '9' }) < 0 {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}
