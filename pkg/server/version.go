package server

// Version and GitHash identify the build; the Makefile sets them with
// -ldflags "-X github.com/switchyard-db/switchyard/pkg/server.Version=...".
var (
	Version = "dev"
	GitHash = "unknown"
)
