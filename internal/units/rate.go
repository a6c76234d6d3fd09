// Package units reads the quantities the project's configuration files and
// flags share, so that every file spells them the same way.
package units

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// rateUnits are tc's: "bit" multiples are bits per second, "bps" multiples
// bytes per second (so "100mbit" is 100 Mbit/s and "100mbps" 800 Mbit/s).
var rateUnits = []struct {
	suffix string
	mult   float64
}{
	{"tbit", 1e12}, {"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1},
	{"tbps", 8e12}, {"gbps", 8e9}, {"mbps", 8e6}, {"kbps", 8e3}, {"bps", 8},
}

// MaxRate bounds a rate (1 Pbit/s): far beyond any link, and far inside
// uint64.
const MaxRate = 1e15

// ParseRate reads a rate in bits per second: "100mbit", "10gbit",
// "1.5gbit", "500kbit", "64bit", a bare number ("1e9"), or tc's byte units
// ("100mbps" is 800 Mbit/s). Case does not matter. Zero is a rate; callers
// that need a positive one say so.
func ParseRate(s string) (uint64, error) {
	num, mult := strings.ToLower(strings.TrimSpace(s)), 1.0
	for _, u := range rateUnits {
		if t, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(t), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v*mult > MaxRate {
		return 0, fmt.Errorf("%q is not a rate such as 10gbit, 100mbit or 500kbit (bits per second; kbps, mbps, gbps are bytes per second)", s)
	}
	return uint64(v * mult), nil
}

// ParsePositiveRate is ParseRate for rates that must not be zero.
func ParsePositiveRate(s string) (uint64, error) {
	r, err := ParseRate(s)
	if err == nil && r == 0 {
		return 0, fmt.Errorf("%q: a rate must be more than 0 bit/s", s)
	}
	return r, err
}
