// Package shoppb is the generated Go code of shop.proto. Regenerate with
// `go generate ./api/...` (see api/README.md for the tools and versions).
package shoppb

//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative shop.proto
