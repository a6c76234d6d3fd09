// Package spapb is the generated Go code of spa.proto, the SPA service
// (DESIGN §7, signaling type 3). Regenerate with `go generate ./api/...`
// (see api/README.md for the tools and versions).
package spapb

//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative spa.proto
