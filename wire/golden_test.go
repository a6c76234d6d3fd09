package wire

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.txt from the Go definitions")

const goldenPath = "testdata/vectors.txt"

const goldenHeader = `# DMSC wire-format golden vectors (see docs/wire.md). Another implementation
# can check itself against every line. One vector per line, fields separated
# by one space; lines starting with '#' are comments.
#
#   key NAME KEY          KEY (four hex segments) is the key of service NAME
#   instance NAME ID KEY  KEY is instance ID (decimal) of NAME
#   frame NAME REASON HEX HEX is a whole Ethernet frame without FCS; REASON is
#                         the first well-formedness check it fails ("none" if
#                         it is well-formed, else a drop reason name)
#   fields NAME K=V ...   the decoded fields of the well-formed frame NAME:
#                         type hop qos flow (hex) plen next dst src payload
#                         (hex, "-" if empty), and for probes seq ttx trx treply
#   control NAME SIGNAL TYPE BODY HEX   HEX is the envelope of BODY (hex)
#   podmsg NAME TYPE HEX  HEX is the body of a pod signalling message (signal 1)
#                         of message TYPE (decimal), the values of pod_test.go
`

var goldenNames = []string{"/shop", "/shop/cart", "/shop/cart/v2", "/catalog", "/a", "/_node/sg1"}

type goldenFrame struct {
	name   string
	reason DropReason
	frame  []byte
}

// goldenFrames defines the frame vectors. The malformed ones are derived from
// good ones, one fault each.
func goldenFrames() []goldenFrame {
	data := frameOf(testHdr, nil, []byte("hello, cart"))
	probeHdr := withType(testHdr, TypeProbe)
	probeHdr.FlowLabel = 0
	probe := frameOf(probeHdr, &ProbeHeader{Seq: 1, TTx: 1_000_000_007}, nil)
	reply := withType(testHdr, TypeProbeReply)
	reply.Dst, reply.Src = testHdr.Src, testHdr.Dst.WithInstance(7)
	replyFrame := frameOf(reply, &ProbeHeader{Seq: 1, TTx: 1_000_000_007, TRx: 55, TReply: 56}, nil)
	ctlBody, _ := AppendControl(nil, SignalLinkState, LSHello, []byte{0xca, 0xfe})
	ctl := withType(testHdr, TypeControl)
	ctl.NextProto = ProtoControl
	ctl.HopLimit = 1
	control := frameOf(ctl, nil, ctlBody)
	return []goldenFrame{
		{"data", DropNone, data},
		{"data-padded", DropNone, frameOf(testHdr, nil, nil)},
		{"probe", DropNone, probe},
		{"probe-reply", DropNone, replyFrame},
		{"control-hello", DropNone, control},
		{"short-13", DropMalformed, data[:13]},
		{"ipv4", DropNotDMSC, malformed(data, func(b []byte) []byte { b[12], b[13] = 0x08, 0x00; return b })},
		{"header-cut", DropMalformed, data[:50]},
		{"version-2", DropBadVersion, malformed(data, func(b []byte) []byte { b[14] = 0x20; return b })},
		{"probe-cut", DropMalformed, probe[:70]},
		{"type-5", DropBadType, malformed(data, func(b []byte) []byte { b[14] = 0x15; return b })},
		{"payload-len-long", DropBadLength, malformed(data, func(b []byte) []byte { b[23] += 2; return b })},
		{"trailing-bytes", DropBadLength, append(append([]byte(nil), data...), 0, 0)},
	}
}

func fieldsOf(f *Frame) string {
	payload := "-"
	if len(f.Payload) > 0 {
		payload = hex.EncodeToString(f.Payload)
	}
	s := fmt.Sprintf("type=%d hop=%d qos=%d flow=%08x plen=%d next=%d dst=%s src=%s payload=%s",
		f.Hdr.Type, f.Hdr.HopLimit, f.Hdr.QoSClass, f.Hdr.FlowLabel, f.Hdr.PayloadLen, f.Hdr.NextProto, f.Hdr.Dst, f.Hdr.Src, payload)
	if f.HasProbe {
		s += fmt.Sprintf(" seq=%d ttx=%d trx=%d treply=%d", f.Probe.Seq, f.Probe.TTx, f.Probe.TRx, f.Probe.TReply)
	}
	return s
}

// keyOfString computes the key of a name string, including the reserved
// /_node names that ParseName refuses.
func keyOfString(s string) Key {
	if id, ok := strings.CutPrefix(s, "/"+NodeNamespace+"/"); ok {
		n, err := NodeName(id)
		if err != nil {
			panic(err)
		}
		return KeyOf(n)
	}
	return KeyOf(MustParseName(s))
}

func renderGolden() string {
	var b strings.Builder
	b.WriteString(goldenHeader)
	b.WriteString("\n")
	for _, n := range goldenNames {
		fmt.Fprintf(&b, "key %s %s\n", n, keyOfString(n))
	}
	for _, id := range []uint32{1, 7, 0xffffffff} {
		fmt.Fprintf(&b, "instance /shop/cart %d %s\n", id, keyOfString("/shop/cart").WithInstance(id))
	}
	for _, g := range goldenFrames() {
		fmt.Fprintf(&b, "frame %s %s %s\n", g.name, g.reason, hex.EncodeToString(g.frame))
		if g.reason == DropNone {
			var f Frame
			ParseFrame(g.frame, &f)
			fmt.Fprintf(&b, "fields %s %s\n", g.name, fieldsOf(&f))
		}
	}
	body := []byte("proof")
	env, _ := AppendControl(nil, SignalPod, PodProof, body)
	fmt.Fprintf(&b, "control pod-proof %d %d %s %s\n", SignalPod, PodProof, hex.EncodeToString(body), hex.EncodeToString(env))
	for _, m := range podMessages() {
		body, err := m.msg.Append(nil)
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(&b, "podmsg %s %d %s\n", m.name, m.msgType, hex.EncodeToString(body))
	}
	return b.String()
}

// TestGoldenVectors checks both directions: what the Go code encodes equals
// the file, and decoding the file's bytes gives the file's fields and reasons.
func TestGoldenVectors(t *testing.T) {
	want := renderGolden()
	if *update {
		if err := os.WriteFile(goldenPath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (run go test ./wire -update to create it)", err)
	}
	if string(got) != want {
		t.Errorf("%s differs from what the code encodes (go test ./wire -update rewrites it; review the diff)", goldenPath)
	}
	decodeGolden(t, got)
}

func decodeGolden(t *testing.T, file []byte) {
	sc := bufio.NewScanner(bytes.NewReader(file))
	sc.Buffer(nil, 1<<20)
	frames := map[string]*Frame{}
	lineNo := 0
	checked := 0
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, " ")
		where := fmt.Sprintf("%s:%d", filepath.Base(goldenPath), lineNo)
		switch f[0] {
		case "key":
			if got := keyOfString(f[1]).String(); got != f[2] {
				t.Errorf("%s: key of %s = %s, file says %s", where, f[1], got, f[2])
			}
		case "instance":
			id, _ := strconv.ParseUint(f[2], 10, 32)
			k, err := ParseKey(f[3])
			if err != nil || k != keyOfString(f[1]).WithInstance(uint32(id)) || k.Instance() != uint32(id) {
				t.Errorf("%s: instance key mismatch (%v)", where, err)
			}
		case "frame":
			b, err := hex.DecodeString(f[3])
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			var fr Frame
			if got := ParseFrame(b, &fr); got.String() != f[2] {
				t.Errorf("%s: %s parses as %s, file says %s", where, f[1], got, f[2])
			}
			frames[f[1]] = &fr
		case "fields":
			fr, ok := frames[f[1]]
			if !ok {
				t.Fatalf("%s: fields of unknown frame %s", where, f[1])
			}
			if got := fieldsOf(fr); got != strings.Join(f[2:], " ") {
				t.Errorf("%s: %s decodes to\n  %s\nfile says\n  %s", where, f[1], got, strings.Join(f[2:], " "))
			}
		case "control":
			env, _ := hex.DecodeString(f[5])
			c, err := DecodeControl(env)
			if err != nil || strconv.Itoa(int(c.Signal)) != f[2] || strconv.Itoa(int(c.MsgType)) != f[3] || hex.EncodeToString(c.Body) != f[4] {
				t.Errorf("%s: control %s decodes to %+v, %v", where, f[1], c, err)
			}
		case "podmsg":
			body, _ := hex.DecodeString(f[3])
			found := false
			for _, m := range podMessages() {
				if m.name != f[1] {
					continue
				}
				found = true
				v, err := m.decode(body)
				if err != nil || strconv.Itoa(int(m.msgType)) != f[2] || !reflect.DeepEqual(v, m.msg) {
					t.Errorf("%s: pod message %s decodes to %+v, %v", where, f[1], v, err)
				}
			}
			if !found {
				t.Errorf("%s: unknown pod message %s", where, f[1])
			}
		default:
			t.Errorf("%s: unknown vector kind %q", where, f[0])
		}
		checked++
	}
	if checked < 20 {
		t.Errorf("only %d vectors checked", checked)
	}
}
