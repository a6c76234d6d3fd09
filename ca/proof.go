package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// The pod's proof of possession (signaling types 1 and 3): the SG sends the
// pod a challenge, the pod signs the proof message with its certificate key,
// and SPA verifies it for the SG that asks. The message binds the signature
// to the challenge, the SG, the SG port and the prefix, so it cannot be
// replayed at another SG, another port or for another prefix (api/spa/spa.proto
// has the same definition).
const (
	// ProofContext starts every proof message: a signature made for DMSC
	// announcements can never be mistaken for one made for anything else.
	ProofContext = "DMSC-SPA-PROOF-v1"
	// ChallengeLen is the size of an SG challenge: an 8-byte issue time
	// (Unix nanoseconds, big-endian) and 24 random bytes.
	ChallengeLen = 32
)

// NewChallenge makes a challenge issued at now, with 24 bytes from
// crypto/rand. The time lets SPA refuse stale challenges and so keep a
// bounded replay memory.
func NewChallenge(now time.Time) ([]byte, error) {
	return newChallenge(now, rand.Reader)
}

func newChallenge(now time.Time, r io.Reader) ([]byte, error) {
	ch := make([]byte, ChallengeLen)
	binary.BigEndian.PutUint64(ch, uint64(now.UnixNano()))
	if _, err := io.ReadFull(r, ch[8:]); err != nil {
		return nil, err
	}
	return ch, nil
}

// ChallengeTime is the issue time written into a challenge.
func ChallengeTime(ch []byte) (time.Time, error) {
	if len(ch) != ChallengeLen {
		return time.Time{}, fmt.Errorf("challenge is %d bytes (want %d)", len(ch), ChallengeLen)
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(ch))), nil
}

// ProofMessage builds the message a pod signs:
//
//	"DMSC-SPA-PROOF-v1" 0x00 | challenge (32) | len(sgNodeID) (1) | sgNodeID |
//	sgPort (4, big-endian) | len(prefix) (1) | prefix
//
// The length bytes make the encoding injective. sgNodeID and prefix are
// length-checked but not otherwise validated here (the callers do).
func ProofMessage(challenge []byte, sgNodeID string, sgPort uint32, prefix string) ([]byte, error) {
	if len(challenge) != ChallengeLen {
		return nil, fmt.Errorf("challenge is %d bytes (want %d)", len(challenge), ChallengeLen)
	}
	if sgNodeID == "" || len(sgNodeID) > 255 {
		return nil, fmt.Errorf("SG node id of %d bytes (want 1 to 255)", len(sgNodeID))
	}
	if prefix == "" || len(prefix) > 255 {
		return nil, fmt.Errorf("prefix of %d bytes (want 1 to 255)", len(prefix))
	}
	m := make([]byte, 0, len(ProofContext)+1+ChallengeLen+1+len(sgNodeID)+4+1+len(prefix))
	m = append(m, ProofContext...)
	m = append(m, 0)
	m = append(m, challenge...)
	m = append(m, byte(len(sgNodeID)))
	m = append(m, sgNodeID...)
	m = binary.BigEndian.AppendUint32(m, sgPort)
	m = append(m, byte(len(prefix)))
	m = append(m, prefix...)
	return m, nil
}

// SignProof signs the proof message with a pod key (Ed25519: the message;
// ECDSA: its SHA-256 digest, ASN.1 signature).
func SignProof(key crypto.Signer, challenge []byte, sgNodeID string, sgPort uint32, prefix string) ([]byte, error) {
	m, err := ProofMessage(challenge, sgNodeID, sgPort, prefix)
	if err != nil {
		return nil, fmt.Errorf("sign proof: %w", err)
	}
	switch key.Public().(type) {
	case ed25519.PublicKey:
		return key.Sign(rand.Reader, m, crypto.Hash(0))
	case *ecdsa.PublicKey:
		d := sha256.Sum256(m)
		return key.Sign(rand.Reader, d[:], crypto.SHA256)
	}
	return nil, fmt.Errorf("sign proof: key type %T is not supported (Ed25519 or ECDSA P-256)", key.Public())
}

// ErrBadProof is wrapped by every signature failure of VerifyProof.
var ErrBadProof = errors.New("proof of possession does not verify")

// VerifyProof checks a proof signature with the pod certificate's public key.
func VerifyProof(pub crypto.PublicKey, challenge []byte, sgNodeID string, sgPort uint32, prefix string, sig []byte) error {
	m, err := ProofMessage(challenge, sgNodeID, sgPort, prefix)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadProof, err)
	}
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(k, m, sig) {
			return ErrBadProof
		}
		return nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("%w: ECDSA curve %s is not supported (P-256)", ErrBadProof, k.Curve.Params().Name)
		}
		d := sha256.Sum256(m)
		if !ecdsa.VerifyASN1(k, d[:], sig) {
			return ErrBadProof
		}
		return nil
	}
	return fmt.Errorf("%w: key type %T is not supported (Ed25519 or ECDSA P-256)", ErrBadProof, pub)
}
