package units

import "testing"

func TestParseRate(t *testing.T) {
	for in, want := range map[string]uint64{
		"100mbit": 100e6, "10gbit": 10e9, "1.5Gbit": 1.5e9, "500kbit": 500e3, "1e9": 1e9,
		"0": 0, "64bit": 64, "42": 42, "1.5kbit": 1500, " 2 mbit ": 2e6, "100mbps": 800e6, "1tbit": 1e12,
	} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "fast", "-1mbit", "NaNmbit", "infgbit", "1e30gbit", "gbit", "ten", "1,5mbit"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) accepted", in)
		}
	}
	if _, err := ParsePositiveRate("0mbit"); err == nil {
		t.Error("ParsePositiveRate(0mbit) accepted")
	}
	if r, err := ParsePositiveRate("1bit"); err != nil || r != 1 {
		t.Errorf("ParsePositiveRate(1bit) = %d, %v", r, err)
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"100mbit", "1e9", "0", "1.5gbps", "-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err == nil && r > MaxRate {
			t.Fatalf("ParseRate(%q) = %d beyond MaxRate", s, r)
		}
	})
}
