package scsc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
)

// Policy is one policy SCSC wants in force (docs/telemetry.md, "Policies").
// A path policy steers a service from one ingress SG along Path and is set
// on every node of it; a weights policy sets InstanceWeights at the egress
// SG that hosts the instances and is set there only.
type Policy struct {
	ID      string
	Service string
	// Ingress is the SG whose probes asked for a path policy; Egress is the
	// SG a weights policy is for.
	Ingress, Egress string
	Path            []string
	InstanceWeights map[uint32]uint32
	Reason          string
	// Since is when the decision was first taken (a switch of path keeps it
	// as a new decision: Since is the switch).
	Since time.Time
}

// PathPolicyID is the id of the path policy of (ingress SG, service).
func PathPolicyID(ingress, service string) string { return "path:" + ingress + ":" + service }

// WeightsPolicyID is the id of the instance-weights policy of (egress SG,
// service).
func WeightsPolicyID(egress, service string) string { return "weights:" + egress + ":" + service }

// Nodes lists where the policy is set, in the order SCSC sets it: a path from
// the last node to the first (so that no node steers traffic to a neighbour
// that does not have the policy yet), or the egress SG.
func (p *Policy) Nodes() []string {
	if len(p.Path) == 0 {
		return []string{p.Egress}
	}
	out := slices.Clone(p.Path)
	slices.Reverse(out)
	return out
}

// Same reports whether p and q are the same policy content (what a node
// would apply), reason and times aside.
func (p *Policy) Same(q *Policy) bool {
	return p.ID == q.ID && p.Service == q.Service && slices.Equal(p.Path, q.Path) &&
		maps.Equal(p.InstanceWeights, q.InstanceWeights)
}

// PolicyDoc is the JSON object set at /dmsc/policies/policy[id=I]/config.
type PolicyDoc struct {
	Service         string            `json:"service"`
	Path            []string          `json:"path,omitempty"`
	InstanceWeights map[string]uint32 `json:"instance_weights,omitempty"`
	TTLms           int64             `json:"ttl_ms"`
	Reason          string            `json:"reason,omitempty"`
	Owner           string            `json:"owner,omitempty"`
}

// Doc is the policy as set, with its TTL and owner.
func (p *Policy) Doc(ttl time.Duration, owner string) PolicyDoc {
	d := PolicyDoc{Service: p.Service, Path: p.Path, TTLms: ttl.Milliseconds(), Reason: p.Reason, Owner: owner}
	if len(p.InstanceWeights) > 0 {
		d.InstanceWeights = make(map[string]uint32, len(p.InstanceWeights))
		for id, w := range p.InstanceWeights {
			d.InstanceWeights[strconv.FormatUint(uint64(id), 10)] = w
		}
	}
	return d
}

// ParsePolicyDoc reads a policy's JSON as an agent does: unknown fields are
// refused, and so are a missing service and a ttl out of range. It is what
// the fake agents of the tests use; an agent checks the rest (path, nodes)
// against its own LSDB.
func ParsePolicyDoc(b []byte) (PolicyDoc, error) {
	var d PolicyDoc
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return PolicyDoc{}, fmt.Errorf("policy: %w", err)
	}
	if dec.More() {
		return PolicyDoc{}, fmt.Errorf("policy: data after the JSON object")
	}
	if d.Service == "" {
		return PolicyDoc{}, fmt.Errorf("policy: service: missing")
	}
	if ttl := time.Duration(d.TTLms) * time.Millisecond; ttl < MinPolicyTTL || ttl > MaxPolicyTTL {
		return PolicyDoc{}, fmt.Errorf("policy: ttl_ms: %d is not within %d to %d", d.TTLms, MinPolicyTTL.Milliseconds(), MaxPolicyTTL.Milliseconds())
	}
	for k := range d.InstanceWeights {
		if id, err := strconv.ParseUint(k, 10, 32); err != nil || id == 0 {
			return PolicyDoc{}, fmt.Errorf("policy: instance_weights: %q is not an instance id", k)
		}
	}
	return d, nil
}
