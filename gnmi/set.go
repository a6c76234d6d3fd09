package gnmi

import (
	"context"
	"errors"
	"fmt"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Set runs one SetRequest as one transaction (gNMI spec 3.4): it checks
// every path and value, refuses paths the Setter does not declare writable,
// then hands all operations, deletes first, then replaces, then updates, to
// Setter.Set in one call. Nothing is applied unless everything is.
func (t *Target) Set(ctx context.Context, req *gpb.SetRequest) (*gpb.SetResponse, error) {
	if err := t.authorize(ctx, RPCSet); err != nil {
		return nil, err
	}
	if len(req.GetUnionReplace()) > 0 {
		return nil, status.Error(codes.Unimplemented, "union_replace is not supported")
	}
	if err := t.checkPrefix(req.GetPrefix()); err != nil {
		return nil, err
	}
	prefix := req.GetPrefix()
	n := len(req.GetDelete()) + len(req.GetReplace()) + len(req.GetUpdate())
	ops := make([]SetOp, 0, n)
	results := make([]*gpb.UpdateResult, 0, n)
	add := func(op gpb.UpdateResult_Operation, p *gpb.Path, u *gpb.Update) error {
		what := fmt.Sprintf("%v %d (%s)", op, len(ops)+1, PathString(JoinPath(prefix, p)))
		full, err := fullPath(prefix, p, what)
		if err != nil {
			return err
		}
		o := SetOp{Op: op, Path: full}
		if op != gpb.UpdateResult_DELETE {
			if HasWildcards(full) {
				return status.Errorf(codes.InvalidArgument, "%s: a %v path cannot hold wildcards", what, op)
			}
			v, err := decodeUpdate(u)
			if _, ascii := u.GetVal().GetValue().(*gpb.TypedValue_AsciiVal); ascii {
				err = fmt.Errorf("%w: ASCII", errUnsupportedEncoding)
			}
			switch {
			case errors.Is(err, errUnsupportedEncoding):
				return status.Errorf(codes.Unimplemented, "%s: %v", what, err)
			case err != nil:
				return status.Errorf(codes.InvalidArgument, "%s: %v", what, err)
			}
			o.Value = v
		}
		ops = append(ops, o)
		results = append(results, &gpb.UpdateResult{Path: p, Op: op})
		return nil
	}
	for _, p := range req.GetDelete() {
		if err := add(gpb.UpdateResult_DELETE, p, nil); err != nil {
			return nil, err
		}
	}
	for _, u := range req.GetReplace() {
		if err := add(gpb.UpdateResult_REPLACE, u.GetPath(), u); err != nil {
			return nil, err
		}
	}
	for _, u := range req.GetUpdate() {
		if err := add(gpb.UpdateResult_UPDATE, u.GetPath(), u); err != nil {
			return nil, err
		}
	}
	resp := &gpb.SetResponse{Prefix: prefix, Response: results}
	if len(ops) == 0 {
		// An empty SetRequest is no error (gNMI spec 3.4).
		resp.Timestamp = t.now().UnixNano()
		return resp, nil
	}
	if t.opts.Setter == nil {
		return nil, status.Error(codes.Unimplemented, "this target accepts no Set")
	}
	for i, o := range ops {
		if !t.opts.Setter.Writable(o.Path) {
			return nil, status.Errorf(codes.PermissionDenied, "%v %d (%s): not writable", o.Op, i+1, PathString(o.Path))
		}
	}
	t.setMu.Lock()
	err := t.opts.Setter.Set(ctx, ops)
	t.setMu.Unlock()
	if err != nil {
		t.log.Info("gnmi: set refused", "peer", peerAddr(ctx), "ops", len(ops), "err", err)
		return nil, setError(err)
	}
	t.log.Info("gnmi: set applied", "peer", peerAddr(ctx), "ops", len(ops))
	resp.Timestamp = t.now().UnixNano()
	return resp, nil
}

// setError maps a Setter's error to the RPC status: a status error keeps
// its code, a context error its own, anything else is ABORTED (gNMI spec
// 3.4.7: the transaction failed and nothing was applied).
func setError(err error) error {
	if st, ok := status.FromError(err); ok {
		return st.Err()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.Errorf(codes.Aborted, "set not applied: %v", err)
}
