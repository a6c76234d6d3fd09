package gnmi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
)

// JSON marks a value as a JSON document (an object, typically: a policy's
// config). It travels as json_ietf_val (json_val when a client asks for the
// JSON encoding) and must be valid JSON.
type JSON []byte

// Leaf is one published value: a path without wildcards and its value. The
// value is one of int64, uint64, float64 (finite), string (UTF-8), bool,
// []byte or JSON; Target.Update also takes the narrower Go integer and float
// types and widens them.
type Leaf struct {
	Path  *gpb.Path
	Value any
}

// Reading is a value received from a target: the path, the decoded value
// (as for Leaf; nil when Deleted) and the time the target collected it.
type Reading struct {
	Path    *gpb.Path
	Value   any
	Time    time.Time
	Deleted bool
}

// normalize widens v to the value types of Leaf and checks it; byte slices
// are copied so that the caller may reuse its buffer.
func normalize(v any) (any, error) {
	switch x := v.(type) {
	case int64, uint64, bool:
		return x, nil
	case int:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case uint:
		return uint64(x), nil
	case uint8:
		return uint64(x), nil
	case uint16:
		return uint64(x), nil
	case uint32:
		return uint64(x), nil
	case float32:
		return normalize(float64(x))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("value %v is not a finite number (JSON cannot carry it)", x)
		}
		return x, nil
	case string:
		if !utf8.ValidString(x) {
			return nil, fmt.Errorf("string value %q is not valid UTF-8", x)
		}
		return x, nil
	case []byte:
		return bytes.Clone(x), nil
	case JSON:
		// Compacting gives one spelling per document, so that re-publishing
		// the same document with other spacing is no change.
		var b bytes.Buffer
		if err := json.Compact(&b, x); err != nil {
			return nil, fmt.Errorf("JSON value is not valid JSON: %v", err)
		}
		return JSON(b.Bytes()), nil
	case nil:
		return nil, errors.New("value is nil")
	}
	return nil, fmt.Errorf("value of type %T is not a gNMI scalar (want int64, uint64, float64, string, bool, []byte or gnmi.JSON)", v)
}

// equalValues compares two normalized values. Floats compare by bits so
// that the comparison is exact.
func equalValues(a, b any) bool {
	switch x := a.(type) {
	case []byte:
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	case JSON:
		y, ok := b.(JSON)
		return ok && bytes.Equal(x, y)
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	}
	return a == b
}

// encodeValue turns a normalized value into a TypedValue of encoding enc
// (one of JSON, JSON_IETF, PROTO). PROTO gives typed scalars and
// json_ietf_val for JSON documents; JSON and JSON_IETF give JSON text for
// every value, bare for scalars (gNMI spec 2.3.1), with 64-bit integers as
// strings under JSON_IETF (RFC 7951 §6.1).
func encodeValue(v any, enc gpb.Encoding) *gpb.TypedValue {
	if enc == gpb.Encoding_PROTO {
		switch x := v.(type) {
		case int64:
			return &gpb.TypedValue{Value: &gpb.TypedValue_IntVal{IntVal: x}}
		case uint64:
			return &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: x}}
		case float64:
			return &gpb.TypedValue{Value: &gpb.TypedValue_DoubleVal{DoubleVal: x}}
		case string:
			return &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: x}}
		case bool:
			return &gpb.TypedValue{Value: &gpb.TypedValue_BoolVal{BoolVal: x}}
		case []byte:
			return &gpb.TypedValue{Value: &gpb.TypedValue_BytesVal{BytesVal: x}}
		case JSON:
			return &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: x}}
		}
		return nil
	}
	var text []byte
	switch x := v.(type) {
	case JSON:
		text = x
	case int64:
		text = strconv.AppendInt(nil, x, 10)
		if enc == gpb.Encoding_JSON_IETF {
			text = strconv.AppendQuote(nil, string(text))
		}
	case uint64:
		text = strconv.AppendUint(nil, x, 10)
		if enc == gpb.Encoding_JSON_IETF {
			text = strconv.AppendQuote(nil, string(text))
		}
	default:
		// Strings, bools, finite floats and byte slices (base64, as RFC 7951
		// encodes binary) cannot fail to marshal.
		text, _ = json.Marshal(x)
	}
	if enc == gpb.Encoding_JSON {
		return &gpb.TypedValue{Value: &gpb.TypedValue_JsonVal{JsonVal: text}}
	}
	return &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: text}}
}

// errUnsupportedEncoding marks values whose encoding the target does not
// implement (gNMI spec 3.4.7: UNIMPLEMENTED), as opposed to bad values.
var errUnsupportedEncoding = errors.New("encoding not supported")

// DecodeValue turns a TypedValue into a Go value of the types of Leaf:
// int_val → int64, uint_val → uint64, double_val, float_val and the
// deprecated decimal_val → float64, string_val and ascii_val → string,
// bool_val → bool, bytes_val → []byte, json_val and json_ietf_val → JSON
// (checked to be valid JSON). Leaf-lists, any_val and proto_bytes are refused.
func DecodeValue(tv *gpb.TypedValue) (any, error) {
	switch x := tv.GetValue().(type) {
	case *gpb.TypedValue_IntVal:
		return x.IntVal, nil
	case *gpb.TypedValue_UintVal:
		return x.UintVal, nil
	case *gpb.TypedValue_DoubleVal:
		return x.DoubleVal, nil
	case *gpb.TypedValue_FloatVal: //nolint:staticcheck // deprecated, still sent by old clients
		return float64(x.FloatVal), nil
	case *gpb.TypedValue_DecimalVal: //nolint:staticcheck // deprecated, still sent by old clients
		d := x.DecimalVal
		return float64(d.GetDigits()) / math.Pow10(int(d.GetPrecision())), nil
	case *gpb.TypedValue_StringVal:
		return x.StringVal, nil
	case *gpb.TypedValue_AsciiVal:
		return x.AsciiVal, nil
	case *gpb.TypedValue_BoolVal:
		return x.BoolVal, nil
	case *gpb.TypedValue_BytesVal:
		return x.BytesVal, nil
	case *gpb.TypedValue_JsonVal:
		return decodeJSON(x.JsonVal)
	case *gpb.TypedValue_JsonIetfVal:
		return decodeJSON(x.JsonIetfVal)
	case *gpb.TypedValue_LeaflistVal:
		return nil, errors.New("leaf-list values are not supported")
	case *gpb.TypedValue_AnyVal, *gpb.TypedValue_ProtoBytes:
		return nil, fmt.Errorf("%w: protobuf-encoded values", errUnsupportedEncoding)
	case nil:
		return nil, errors.New("no value")
	}
	return nil, fmt.Errorf("unknown value kind %T", tv.GetValue())
}

func decodeJSON(b []byte) (any, error) {
	if !json.Valid(b) {
		return nil, fmt.Errorf("JSON value is not valid JSON: %.40q", b)
	}
	return JSON(b), nil
}

// decodeUpdate reads the value of an Update: val, or the deprecated value
// field that some clients still send.
func decodeUpdate(u *gpb.Update) (any, error) {
	if u.GetVal() != nil {
		return DecodeValue(u.GetVal())
	}
	old := u.GetValue() //nolint:staticcheck // deprecated field, read for old clients
	if old == nil {
		return nil, errors.New("update carries no value")
	}
	switch old.GetType() {
	case gpb.Encoding_JSON, gpb.Encoding_JSON_IETF:
		return decodeJSON(old.GetValue())
	case gpb.Encoding_BYTES:
		return old.GetValue(), nil
	}
	return nil, fmt.Errorf("%w: %v in the deprecated value field", errUnsupportedEncoding, old.GetType())
}

// Decode turns a notification into Readings: its updates, then its deletes,
// each with the prefix joined to its path and the notification's time.
func Decode(n *gpb.Notification) ([]Reading, error) {
	ts := time.Unix(0, n.GetTimestamp())
	out := make([]Reading, 0, len(n.GetUpdate())+len(n.GetDelete()))
	for _, u := range n.GetUpdate() {
		v, err := decodeUpdate(u)
		if err != nil {
			return nil, fmt.Errorf("gnmi: %s: %w", PathString(JoinPath(n.GetPrefix(), u.GetPath())), err)
		}
		out = append(out, Reading{Path: JoinPath(n.GetPrefix(), u.GetPath()), Value: v, Time: ts})
	}
	for _, d := range n.GetDelete() {
		out = append(out, Reading{Path: JoinPath(n.GetPrefix(), d), Time: ts, Deleted: true})
	}
	return out, nil
}

// FormatValue prints a decoded value for people: JSON as its text, bytes in
// hex, the rest as Go prints it.
func FormatValue(v any) string {
	switch x := v.(type) {
	case JSON:
		return string(x)
	case []byte:
		return fmt.Sprintf("0x%x", x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case nil:
		return "(none)"
	}
	return fmt.Sprint(v)
}
