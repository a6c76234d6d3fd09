package spa

import (
	"bufio"
	"bytes"
	"fmt"
	"math/big"
	"strings"

	"github.com/dmsc-mesh/dmsc/ca"
)

// Revocations is a set of revoked certificate serials. The file has one
// serial a line in hex, as `openssl x509 -noout -serial` prints it or as
// DMSC logs it: upper or lower case, with or without a 0x prefix or ':'
// separators. '#' starts a comment; blank lines are ignored.
//
//	# revoked 2026-11-20: laptop lost
//	3A:F2:19:04:...
//	0x1f2e3d...
type Revocations struct {
	serials map[string]struct{}
}

const maxRevocationSize = 64 << 20

// ParseRevocations parses a revocation list; name is used in errors
// ("name:line: ...").
func ParseRevocations(name string, data []byte) (*Revocations, error) {
	if len(data) > maxRevocationSize {
		return nil, fmt.Errorf("%s: revocation list of %d bytes exceeds %d", name, len(data), maxRevocationSize)
	}
	r := &Revocations{serials: map[string]struct{}{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text, _, _ := strings.Cut(sc.Text(), "#")
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		s, err := parseSerial(text)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", name, line, err)
		}
		r.serials[ca.SerialString(s)] = struct{}{}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %v", name, line+1, err)
	}
	return r, nil
}

func parseSerial(text string) (*big.Int, error) {
	h := strings.ReplaceAll(text, ":", "")
	h = strings.TrimPrefix(strings.TrimPrefix(h, "0x"), "0X")
	if h == "" || len(h) > 64 {
		return nil, fmt.Errorf("serial %q: want 1 to 64 hex digits", text)
	}
	s, ok := new(big.Int).SetString(h, 16)
	if !ok || s.Sign() < 0 || strings.ContainsAny(h, "+-_") {
		return nil, fmt.Errorf("serial %q: not hexadecimal (one serial a line, as openssl x509 -serial prints it)", text)
	}
	return s, nil
}

// Revoked reports whether serial is on the list.
func (r *Revocations) Revoked(serial *big.Int) bool {
	if r == nil || serial == nil {
		return false
	}
	_, ok := r.serials[ca.SerialString(serial)]
	return ok
}

// RevokedString is Revoked for a serial in ca.SerialString form.
func (r *Revocations) RevokedString(serial string) bool {
	if r == nil {
		return false
	}
	_, ok := r.serials[serial]
	return ok
}

// Len is the number of serials.
func (r *Revocations) Len() int {
	if r == nil {
		return 0
	}
	return len(r.serials)
}
