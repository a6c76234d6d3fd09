package spa

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const fullConfig = `listen: 127.0.0.1:7443
tls:
  ca: ca.crt
  cert: /etc/dmsc/spa.crt
  key: spa.key
store: spa.db
policy: policy.yaml
revocation: revoked.txt
audit_log: audit.jsonl
lease: 45s
challenge_window: 2m
clock_skew: 0s
replay_memory: 1000
reload_interval: 500ms
max_instances: 16
rate_limit:
  per_second: 2.5
  burst: 10
`

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spa.yaml")
	if err := os.WriteFile(path, []byte(fullConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Listen: "127.0.0.1:7443", CA: filepath.Join(dir, "ca.crt"), Cert: "/etc/dmsc/spa.crt", Key: filepath.Join(dir, "spa.key"),
		Store: filepath.Join(dir, "spa.db"), Policy: filepath.Join(dir, "policy.yaml"), Revocation: filepath.Join(dir, "revoked.txt"),
		AuditLog: filepath.Join(dir, "audit.jsonl"), Lease: 45 * time.Second, ChallengeWindow: 2 * time.Minute, ClockSkew: 0,
		ReplayMemory: 1000, ReloadInterval: 500 * time.Millisecond, MaxInstances: 16, RatePerSecond: 2.5, RateBurst: 10,
	}
	if *c != want {
		t.Errorf("got  %+v\nwant %+v", *c, want)
	}
	// Defaults fill what is left out.
	c, err = ParseConfig("m.yaml", []byte("tls: {ca: a, cert: b, key: c}\nstore: s\npolicy: p\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultConfig()
	if c.Lease != d.Lease || c.RatePerSecond != d.RatePerSecond || c.Listen != d.Listen || c.CA != "a" {
		t.Errorf("defaults: %+v", c)
	}
	if _, err := LoadConfig(filepath.Join(dir, "none.yaml")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestConfigErrors(t *testing.T) {
	base := "tls: {ca: a, cert: b, key: c}\nstore: s\npolicy: p\n"
	for _, tc := range []struct{ name, yaml, want string }{
		{"empty", "", "c.yaml: empty"},
		{"list", "- a\n", "c.yaml:1: (top level): want a mapping"},
		{"unknown", base + "leese: 3s\n", "c.yaml:4: leese: unknown field"},
		{"bad duration", base + "lease: 3\n", "c.yaml:4: lease: want a duration"},
		{"zero lease", base + "lease: 0s\n", "c.yaml:4: lease: 0s must be positive"},
		{"negative skew", base + "clock_skew: -1s\n", "c.yaml:4: clock_skew: -1s must not be negative"},
		{"bad listen", "listen: 7443\n" + base, "c.yaml:1: listen: \"7443\": want host:port"},
		{"missing store", "tls: {ca: a, cert: b, key: c}\npolicy: p\n", "c.yaml: store: missing"},
		{"missing tls", "store: s\npolicy: p\n", "c.yaml: tls: missing"},
		{"missing tls.key", "tls: {ca: a, cert: b}\nstore: s\npolicy: p\n", "c.yaml:1: tls.key: missing"},
		{"tls unknown", "tls: {ca: a, cert: b, key: c, pem: d}\nstore: s\npolicy: p\n", "c.yaml:1: tls.pem: unknown field"},
		{"tls not mapping", "tls: x\nstore: s\npolicy: p\n", "c.yaml:1: tls: want a mapping"},
		{"bad rate", base + "rate_limit: {per_second: fast}\n", "c.yaml:4: rate_limit.per_second: want a number"},
		{"negative rate", base + "rate_limit: {per_second: -1}\n", "rate_limit.per_second"},
		{"zero burst", base + "rate_limit:\n  burst: 0\n", "c.yaml:4: rate_limit.burst: must be at least 1"},
		{"bad replay memory", base + "replay_memory: lots\n", "c.yaml:4: replay_memory: want a whole number"},
		{"zero replay memory", base + "replay_memory: 0\n", "c.yaml:4: replay_memory: 0 must be at least 1"},
		{"big max_instances", base + "max_instances: 4294967296\n", "c.yaml:4: max_instances"},
		{"empty path", base + "revocation: ''\n", "c.yaml:4: revocation: want a non-empty string"},
		{"duplicate", base + "store: t\n", "c.yaml:4: store: given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("c.yaml", []byte(tc.yaml), "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestRevocationList(t *testing.T) {
	r, err := ParseRevocations("r.txt", []byte("# header\n\n01:AB:cd\n0x1f # trailing comment\n  ff  \n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"1abcd", "1f", "ff"} {
		if !r.RevokedString(s) {
			t.Errorf("%s not revoked", s)
		}
	}
	if r.Len() != 3 || r.RevokedString("2") {
		t.Errorf("len %d", r.Len())
	}
	for _, tc := range []struct{ in, want string }{
		{"xyz\n", "r.txt:1: serial \"xyz\""},
		{"01\n\n-1\n", "r.txt:3:"},
		{"0x\n", "r.txt:1: serial \"0x\": want 1 to 64"},
		{strings.Repeat("a", 65) + "\n", "want 1 to 64"},
		{"1 2\n", "r.txt:1:"},
	} {
		if _, err := ParseRevocations("r.txt", []byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParseRevocations(f *testing.F) {
	f.Add([]byte("# c\n01:AB:cd\n0x1f\n"))
	f.Add([]byte("zz\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRevocations("f", data)
		if err == nil && r.Len() < 0 {
			t.Fatal("negative length")
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(fullConfig))
	f.Add([]byte("tls: {ca: a, cert: b, key: c}\nstore: s\npolicy: p\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig("f.yaml", data, "/base")
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted a config that does not validate: %v", err)
		}
	})
}

func TestReplayMemory(t *testing.T) {
	m := newReplayMemory(10*time.Second, 3)
	t0 := time.Unix(1000, 0)
	n := func(b byte) [32]byte { return [32]byte{b} }
	for i, tc := range []struct {
		nonce byte
		at    time.Duration
		want  replayVerdict
	}{
		{1, 0, replayFresh},
		{1, time.Second, replaySeen},
		{2, 2 * time.Second, replayFresh},
		{3, 3 * time.Second, replayFresh},
		{4, 4 * time.Second, replayFull}, // full: refused, not forgotten
		{1, 9 * time.Second, replaySeen},
		{1, 10 * time.Second, replayFresh}, // 1 expired at 10 s and is new again
		{4, 10 * time.Second, replayFull},
		{4, 12 * time.Second, replayFresh}, // 2 expired
	} {
		if got := m.check(n(tc.nonce), t0.Add(tc.at)); got != tc.want {
			t.Errorf("step %d: nonce %d at %v: %v, want %v", i, tc.nonce, tc.at, got, tc.want)
		}
	}
	m.check(n(9), t0.Add(time.Hour))
	if m.len() != 1 || len(m.queue)-m.head != 1 {
		t.Errorf("after expiry: %d entries, queue %d", m.len(), len(m.queue)-m.head)
	}
}

func TestSGLimiter(t *testing.T) {
	l := newSGLimiter(1, 2)
	now := time.Unix(0, 0)
	for i, want := range []bool{true, true, false} {
		if ok, _ := l.allow("sg1", now); ok != want {
			t.Errorf("call %d: %v", i, ok)
		}
	}
	if ok, wait := l.allow("sg1", now); ok || wait <= 0 || wait > time.Second {
		t.Errorf("wait %v", wait)
	}
	if ok, _ := l.allow("sg2", now); !ok {
		t.Error("sg2 limited by sg1")
	}
	if ok, _ := l.allow("sg1", now.Add(time.Second)); !ok {
		t.Error("no refill")
	}
	if ok, _ := newSGLimiter(0, 0).allow("x", now); !ok {
		t.Error("limit 0 should be off")
	}
}
